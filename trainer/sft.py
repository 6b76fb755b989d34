"""Supervised fine-tuning with the StarCoder2-Instruct recipe, read top to bottom.

Defaults are the model card's: Adafactor, learning rate 1e-5, 4 epochs, effective batch 64
(per-device batch x gradient accumulation x devices), warmup 5% of the steps, linear decay,
sequence length 1280, no dropout anywhere, no weight decay, no gradient clipping, bf16 where
the hardware supports it. The loss covers response tokens only (see `trainer.template`).

Batches are padding-free (examples concatenated, attention kept within each example through
position ids) when FlashAttention 2 is available; plain right-padding otherwise. Checkpoints
carry the optimizer, scheduler, RNG and data position, so `resume` continues exactly.
Multi-GPU and multi-node: launch this same command with `accelerate launch` or `torchrun`
(DDP by default; FSDP and DeepSpeed configs in `trainer/configs/`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from trainer.template import IGNORE, install_chat_template, tokenize_example

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    data: str
    model: str
    output: str
    epochs: float = 4.0
    learning_rate: float = 1e-5
    effective_batch_size: int = 64
    per_device_batch_size: int = 8
    warmup_ratio: float = 0.05
    max_length: int = 1280
    max_steps: int = -1
    seed: int = 0
    save_steps: int = 500
    logging_steps: int = 1
    bf16: str = "auto"                 # auto | true | false
    gradient_checkpointing: bool = False
    lora_r: int = 0                    # 0: full fine-tuning
    lora_alpha: int = 16
    packing: str = "auto"              # auto | true | false
    resume: bool = False
    stop_after_step: int | None = None  # checkpoint at this step and exit (for job-time limits)


def load_training_data(cfg: SFTConfig, tokenizer):
    """A `prepare` output directory (its `tokenized` dataset) or raw instruction/response rows."""
    import datasets

    prepared = Path(cfg.data) / "tokenized"
    if prepared.is_dir():
        return datasets.load_from_disk(str(prepared)).select_columns(["input_ids", "labels"])
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
        import flash_attn  # noqa: F401
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


def gradient_accumulation(cfg: SFTConfig, world_size: int) -> int:
    per_step = cfg.per_device_batch_size * world_size
    if cfg.effective_batch_size % per_step:
        raise ValueError(f"effective batch {cfg.effective_batch_size} is not a multiple of per-device batch "
                         f"{cfg.per_device_batch_size} x {world_size} device(s)")
    return cfg.effective_batch_size // per_step


def train(cfg: SFTConfig) -> dict:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    out = Path(cfg.output)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    install_chat_template(tokenizer)

    packing = flash_attention_available() if cfg.packing == "auto" else cfg.packing == "true"
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
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = gradient_accumulation(cfg, world_size)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        optim="adafactor",
        lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_ratio,      # a float below 1 is a ratio of the total steps
        weight_decay=0.0,
        max_grad_norm=0.0,                  # 0 disables clipping
        bf16=bf16,
        **_checkpointing_arg(TrainingArguments, cfg.gradient_checkpointing),
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
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

    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      processing_class=tokenizer, callbacks=[StopAfter()])
    log.info("training %d examples, %d device(s), accumulation %d, packing %s, bf16 %s", len(dataset),
             world_size, accumulation, packing, bf16)
    result = trainer.train(resume_from_checkpoint=_last_checkpoint(out) if cfg.resume else None)
    stopped_early = cfg.stop_after_step is not None and trainer.state.global_step < trainer.state.max_steps
    if not stopped_early:
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        trainer.save_state()
    summary = {
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "train_loss": result.training_loss,
        "examples": len(dataset),
        "gradient_accumulation_steps": accumulation,
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
