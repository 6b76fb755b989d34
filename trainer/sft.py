"""Supervised fine-tuning with the StarCoder2-Instruct recipe, read top to bottom.

Defaults are the model card's: Adafactor, learning rate 1e-5, 4 epochs, effective batch 64
(per-device batch x gradient accumulation x devices, 64 however the job is launched), micro-batch
1, warmup 5% of the steps, linear decay, sequence length 1280, no dropout anywhere, no weight
decay, no gradient clipping, bf16 where the hardware supports it. The loss covers response
tokens only (see `trainer.template`).

**Loss weighting.** The original trained with micro-batch 1 and 64 accumulation steps on
transformers 4.39, whose loss is each example's mean token loss, averaged over the examples:
every example weighs the same, however long. That is the default here (`loss_weighting =
"example"`), with any micro-batch size. `"token"` averages over all response tokens of the
batch instead (transformers' current default), so long responses weigh more.

**Warmup** is computed here as `ceil(warmup_ratio x total steps)`, the same on every
transformers version (a fractional `warmup_steps` means a ratio only from transformers 5 on).

Batches are padding-free (examples concatenated, attention kept within each example through
position ids) when FlashAttention 2 is available, the only attention that keeps packed examples
apart in training; packing is refused without it. Plain right-padding otherwise. Checkpoints
carry the optimizer, scheduler, RNG and data position, so `resume` continues exactly.
Multi-GPU and multi-node: launch this same command with `accelerate launch` or `torchrun`
(DDP by default; FSDP and DeepSpeed configs in `trainer/configs/`). Started with plain `python`
on a machine with several GPUs, transformers uses them all through DataParallel; the
accumulation accounts for that, so the effective batch stays 64.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainer.template import IGNORE, install_chat_template, save_tokenizer, tokenize_example

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    data: str
    model: str
    output: str
    epochs: float = 4.0
    learning_rate: float = 1e-5
    effective_batch_size: int = 64
    per_device_batch_size: int = 1     # the recipe's micro-batch (15B at micro-batch 8 does not fit an A100 80GB)
    warmup_ratio: float = 0.05
    loss_weighting: str = "example"    # example | token (see the module doc)
    max_length: int = 1280
    max_steps: int = -1
    seed: int = 0
    save_steps: int = 500
    save_total_limit: int | None = 3   # checkpoints kept (None: all)
    logging_steps: int = 1
    report_to: str = "none"            # none | tensorboard | wandb | all
    bf16: str = "auto"                 # auto | true | false
    gradient_checkpointing: bool = False
    lora_r: int = 0                    # 0: full fine-tuning
    lora_alpha: int = 16
    packing: str = "auto"              # auto | true | false
    resume: bool = False
    stop_after_step: int | None = None  # checkpoint at this step and exit (for job-time limits)


def load_training_data(cfg: SFTConfig, tokenizer) -> datasets.Dataset:
    """A `prepare` output directory (its `tokenized` dataset) or raw instruction/response rows."""
    import datasets

    prepared = Path(cfg.data) / "tokenized"
    if prepared.is_dir():
        saved = datasets.load_from_disk(str(prepared))
        if not isinstance(saved, datasets.Dataset):
            raise ValueError(f"{prepared}: expected one tokenized dataset (what `trainer prepare` writes)")
        ds = saved.select_columns(["input_ids", "labels"])
        longest = max((len(ids) for ids in ds["input_ids"]), default=0)
        if longest > cfg.max_length:
            # Prepared with a larger limit: cut to this run's, as tokenizing anew would.
            log.warning("prepared examples up to %d tokens are cut to --max-length %d", longest, cfg.max_length)
            ds = ds.map(lambda e: {"input_ids": e["input_ids"][: cfg.max_length],
                                   "labels": e["labels"][: cfg.max_length]})
        return ds
    from trainer.data import load_rows

    examples = [tokenize_example(tokenizer, r["instruction"], r["response"], cfg.max_length)
                for r in load_rows(cfg.data)]
    truncated = sum(e.truncated for e in examples)
    if truncated:
        log.warning("%d of %d examples truncated to %d tokens", truncated, len(examples), cfg.max_length)
    return datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                                       "labels": [e.labels for e in examples]})


def disable_dropout(config) -> None:
    """The recipe trains without dropout: attention, residual, embedding, whatever the model calls it."""
    for key, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in key or key.endswith("pdrop")):
            setattr(config, key, 0.0)


def flash_attention_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401  # pyright: ignore[reportMissingImports]  (optional, GPU only)
    except ImportError:
        return False
    return True


class PaddingCollator:
    """Right-pads a batch; padding is masked by position (attention 0, label -100), never by id."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad] * (width - n))
            labels.append(list(f["labels"]) + [IGNORE] * (width - n))
            mask.append([1] * n + [0] * (width - n))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}


def data_parallel_devices() -> int:
    """Devices that each take a micro-batch per step: the processes of a distributed launch, or,
    for a plain `python` start, every visible GPU (transformers then uses DataParallel)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    return max(1, torch.cuda.device_count())


def gradient_accumulation(cfg: SFTConfig, world_size: int) -> int:
    per_step = cfg.per_device_batch_size * world_size
    if cfg.effective_batch_size % per_step:
        raise ValueError(f"effective batch {cfg.effective_batch_size} is not a multiple of per-device batch "
                         f"{cfg.per_device_batch_size} x {world_size} device(s)")
    return cfg.effective_batch_size // per_step


def total_steps(cfg: SFTConfig, examples: int, world_size: int, accumulation: int) -> int:
    """Optimizer steps of the run, as the Trainer will count them."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    micro_batches = math.ceil(examples / (cfg.per_device_batch_size * world_size))
    per_epoch = max(micro_batches // accumulation + int(micro_batches % accumulation > 0), 1)
    return math.ceil(cfg.epochs * per_epoch)


def warmup_steps(cfg: SFTConfig, steps: int) -> int:
    return math.ceil(cfg.warmup_ratio * steps)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Each example's mean token loss, averaged over the examples of the batch.

    An example is a row of a padded batch, or, in a packed row, a run of positions that starts
    where `position_ids` returns to 0. Tokens labelled -100 (the prompt, padding, the boundary
    between packed examples) do not count; an example with no response token left is skipped.
    """
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                                               ignore_index=IGNORE, reduction="none")
    rows, width = targets.shape
    if position_ids is not None:
        segment = torch.cumsum((position_ids == 0).long(), dim=1)[:, 1:]
    else:
        segment = torch.zeros_like(targets)
    segments = int(segment.max().item()) + 1
    index = (torch.arange(rows, device=targets.device).unsqueeze(1) * segments + segment).reshape(-1)
    valid = (targets != IGNORE).reshape(-1).float()
    sums = torch.zeros(rows * segments, device=logits.device).index_add(0, index, losses.reshape(-1) * valid)
    counts = torch.zeros(rows * segments, device=logits.device).index_add(0, index, valid)
    present = counts > 0
    if not present.any():
        return logits.sum() * 0.0
    return (sums[present] / counts[present]).mean()


def make_trainer_class():
    from transformers import Trainer

    class RecipeTrainer(Trainer):
        """The Trainer with the recipe's per-example loss weighting (see the module doc)."""

        loss_weighting = "example"

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.loss_weighting == "token":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = per_example_loss(outputs.logits, labels, inputs.get("position_ids"))
            return (loss, outputs) if return_outputs else loss

    return RecipeTrainer


def train(cfg: SFTConfig) -> dict:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorWithFlattening,
        TrainerCallback,
        TrainingArguments,
    )

    from generator.backends import check_model_name

    check_model_name(cfg.model)
    out = Path(cfg.output)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    install_chat_template(tokenizer)

    if cfg.loss_weighting not in ("example", "token"):
        raise ValueError(f"loss_weighting must be 'example' or 'token', not {cfg.loss_weighting!r}")
    packing = flash_attention_available() if cfg.packing == "auto" else cfg.packing == "true"
    if packing and not flash_attention_available():
        raise ValueError("packing needs FlashAttention 2 on a GPU: with any other attention, packed examples "
                         "would attend to each other (use --packing false or auto)")
    bf16 = (torch.cuda.is_available() and torch.cuda.is_bf16_supported()) if cfg.bf16 == "auto" \
        else cfg.bf16 == "true"
    model_config = AutoConfig.from_pretrained(cfg.model)
    disable_dropout(model_config)
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model, config=model_config, dtype=torch.bfloat16 if bf16 else torch.float32,
        attn_implementation="flash_attention_2" if packing else None)
    if cfg.lora_r:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))

    dataset = load_training_data(cfg, tokenizer)
    world_size = data_parallel_devices()
    accumulation = gradient_accumulation(cfg, world_size)
    steps = total_steps(cfg, len(dataset), world_size, accumulation)
    warmup = warmup_steps(cfg, steps)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        optim="adafactor",
        lr_scheduler_type="linear",
        warmup_steps=warmup,
        weight_decay=0.0,
        max_grad_norm=0.0,                  # 0 disables clipping
        bf16=bf16,
        **_checkpointing_arg(TrainingArguments, cfg.gradient_checkpointing),
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[] if cfg.report_to == "none" else cfg.report_to,
        # per-example weighting averages per device; token weighting counts tokens across devices
        average_tokens_across_devices=cfg.loss_weighting == "token",
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )
    collator = (DataCollatorWithFlattening(return_position_ids=True) if packing
                else PaddingCollator(tokenizer.pad_token_id))

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cfg.stop_after_step is not None and state.global_step >= cfg.stop_after_step:
                control.should_save = True
                control.should_training_stop = True

    trainer_class = make_trainer_class()
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, data_collator=collator,
                            processing_class=tokenizer, callbacks=[StopAfter()])
    trainer.loss_weighting = cfg.loss_weighting
    if cfg.loss_weighting == "example":
        # The per-example mean is not normalized by a token count, so the Trainer must divide it by
        # the accumulation steps (both flags, for transformers 4.x and 5.x).
        trainer.loss_is_scaled_for_ga = False
        trainer.model_accepts_loss_kwargs = False
    log.info("training %d examples, %d device(s), accumulation %d, packing %s, bf16 %s", len(dataset),
             world_size, accumulation, packing, bf16)
    result = trainer.train(resume_from_checkpoint=_last_checkpoint(out) if cfg.resume else None)
    stopped_early = cfg.stop_after_step is not None and trainer.state.global_step < trainer.state.max_steps
    if not stopped_early:
        fsdp_plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
        if fsdp_plugin is not None:
            # Checkpoints may be sharded; the final weights must be one loadable model.
            fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.config.use_cache = True   # for generation; training turned it off
        trainer.save_model(str(out))
        if trainer.is_world_process_zero():
            save_tokenizer(tokenizer, out)
        trainer.save_state()
    summary = {
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "train_loss": result.training_loss,
        "examples": len(dataset),
        "gradient_accumulation_steps": accumulation,
        "devices": world_size,
        "warmup_steps": warmup,
        "loss_weighting": cfg.loss_weighting,
        "packing": packing,
        "bf16": bf16,
        "finished": not stopped_early,
        "config": asdict(cfg),
    }
    (out / "sft_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _checkpointing_arg(arguments_class, enabled: bool) -> dict:
    """Activation (gradient) checkpointing; transformers renamed the argument in v5."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(arguments_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}


def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not out.is_dir():
        return None
    last = get_last_checkpoint(str(out))
    if last is None:
        log.warning("--resume: no checkpoint in %s; starting from the beginning", out)
    return last
