"""The SFT recipe's details that change results: loss weighting, warmup, micro-batch size,
packing, the saved model's config, and the prepared data's length limit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from trainer.sft import SFTConfig, load_training_data, per_example_loss, total_steps, train, warmup_steps
from trainer.template import IGNORE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from trainer.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _data(path: Path, n: int = 8) -> Path:
    rows = []
    for i in range(n):
        body = "\n".join(f"    y = y + {j}" for j in range(1 + 6 * (i % 3)))   # responses of different lengths
        response = f"```python\ndef f_{i}(y):\n{body}\n    return y\n```"
        rows.append({"instruction": f"Write f_{i}.", "response": response})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(tiny, data, out, **kw) -> SFTConfig:
    base = dict(data=str(data), model=str(tiny), output=str(out), epochs=1, learning_rate=1e-3,
                effective_batch_size=4, per_device_batch_size=1, save_steps=100, seed=3)
    base.update(kw)
    return SFTConfig(**base)


def test_per_example_loss_on_hand_built_examples():
    vocab = 5
    logits = torch.zeros(2, 5, vocab)
    logits[0, :, 1] = 3.0     # example 0 predicts token 1 well
    labels = torch.tensor([[IGNORE, 1, IGNORE, IGNORE, IGNORE],     # one response token
                           [IGNORE, 2, 2, 2, 2]])                   # four response tokens
    token_losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:],
                                                     ignore_index=IGNORE, reduction="none")
    a = token_losses[0, 0]
    b = token_losses[1, :4].mean()
    assert per_example_loss(logits, labels) == pytest.approx(float((a + b) / 2))
    token_mean = float((a + token_losses[1, :4].sum()) / 5)
    assert abs(float(per_example_loss(logits, labels)) - token_mean) > 0.1   # the two weightings differ


def test_packed_rows_give_the_padded_loss(tiny):
    """Two examples packed in one row (position ids restart at 0) have the same per-example loss
    as the same two examples padded in two rows. The logits are computed per example, as an
    attention that keeps packed examples apart (FlashAttention 2) gives them."""
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    examples = [{"input_ids": [5, 6, 7, 8, 9, 10], "labels": [IGNORE, IGNORE, IGNORE, 8, 9, 10]},
                {"input_ids": [11, 12, 13], "labels": [IGNORE, 12, 13]}]
    with torch.no_grad():
        separate = [model(torch.tensor([e["input_ids"]])).logits for e in examples]
    packed = DataCollatorWithFlattening(return_position_ids=True)(examples)
    packed_logits = torch.cat(separate, dim=1)
    padded_logits = torch.zeros(2, 6, separate[0].shape[-1])
    padded_logits[0], padded_logits[1, :3] = separate[0][0], separate[1][0]
    padded_labels = torch.tensor([examples[0]["labels"], examples[1]["labels"] + [IGNORE] * 3])
    assert packed["labels"][0, 6] == IGNORE    # the boundary token is never a target
    got = per_example_loss(packed_logits, packed["labels"], packed["position_ids"])
    assert float(got) == pytest.approx(float(per_example_loss(padded_logits, padded_labels)), rel=1e-6)


def test_packing_is_refused_where_attention_would_cross_examples(tiny, tmp_path):
    """On CPU no attention keeps packed examples apart in training (sdpa and eager let the second
    example see the first), so packing cannot be turned on here."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    a, b = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[9, 10, 11]])
    with torch.no_grad():
        alone = model(b).logits
        packed = model(torch.cat([a, b], 1), position_ids=torch.tensor([[0, 1, 2, 3, 0, 1, 2]])).logits
    assert not torch.allclose(packed[:, 4:], alone, atol=1e-5)      # what packing would do here
    with pytest.raises(ValueError, match="packing needs FlashAttention 2"):
        train(_cfg(tiny, _data(tmp_path / "d.jsonl"), tmp_path / "out", packing="true"))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_example_weighting_does_not_depend_on_the_micro_batch(tiny, tmp_path):
    """Micro-batch 1 x 4 steps, 2 x 2 and 4 x 1 train the same model: the loss is the mean over
    examples of each example's token mean, however the batch of 4 is split."""
    data = _data(tmp_path / "d.jsonl")
    runs = {}
    for per_device in (1, 2, 4):
        summary = train(_cfg(tiny, data, tmp_path / f"mb{per_device}", per_device_batch_size=per_device))
        assert summary["global_step"] == 2 and summary["loss_weighting"] == "example"
        runs[per_device] = _weights(tmp_path / f"mb{per_device}")
    for per_device in (2, 4):
        assert all(torch.allclose(runs[1][k], runs[per_device][k], rtol=1e-4, atol=1e-6) for k in runs[1]), per_device
    train(_cfg(tiny, data, tmp_path / "tok", loss_weighting="token"))
    token = _weights(tmp_path / "tok")
    assert not all(torch.allclose(runs[1][k], token[k], rtol=1e-4, atol=1e-6) for k in token)


def test_warmup_is_a_share_of_the_steps_on_every_transformers_version(tiny, tmp_path):
    data = _data(tmp_path / "d.jsonl")
    cfg = _cfg(tiny, data, tmp_path / "out", epochs=4, warmup_ratio=0.25)
    steps = total_steps(cfg, 8, 1, 4)
    assert (steps, warmup_steps(cfg, steps)) == (8, 2)
    summary = train(cfg)
    assert summary["max_steps"] == steps and summary["warmup_steps"] == 2
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    rates = [h["learning_rate"] for h in state["log_history"] if "learning_rate" in h]
    # the first step runs at the bottom of the warmup, the third at the full rate
    assert rates[:3] == pytest.approx([0.0, cfg.learning_rate / 2, cfg.learning_rate])
    assert math.ceil(0.05 * 1000) == warmup_steps(SFTConfig("d", "m", "o"), 1000) == 50


def test_saved_model_generates_with_cache_and_prepared_data_honours_max_length(tiny, tmp_path):
    data = _data(tmp_path / "d.jsonl")
    train(_cfg(tiny, data, tmp_path / "out", gradient_checkpointing=True))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["use_cache"] is True
    import datasets

    prepared = tmp_path / "prep" / "tokenized"
    datasets.Dataset.from_dict({"input_ids": [list(range(40))], "labels": [list(range(40))]}).save_to_disk(
        str(prepared))
    from transformers import AutoTokenizer

    ds = load_training_data(_cfg(tiny, tmp_path / "prep", tmp_path / "o2", max_length=16),
                            AutoTokenizer.from_pretrained(tiny))
    assert [len(x) for x in ds["input_ids"]] == [16] and [len(x) for x in ds["labels"]] == [16]


def test_sft_cli_takes_a_config_file_and_flags_override_it(tiny, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    data = _data(tmp_path / "d.jsonl")
    config = tmp_path / "sft.yaml"
    config.write_text(f"data: {data}\nmodel: {tiny}\noutput: {tmp_path / 'out'}\nepochs: 1\n"
                      "effective_batch_size: 4\nlearning_rate: 0.001\n")
    proc = subprocess.run([sys.executable, "-m", "trainer", "sft", "--config", str(config), "--lr", "0.002",
                           "--log-level", "WARNING"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "sft_summary.json").read_text())
    assert summary["config"]["learning_rate"] == 0.002 and summary["config"]["epochs"] == 1
    config.write_text("data: x\nlearning_rte: 1\n")
    proc = subprocess.run([sys.executable, "-m", "trainer", "sft", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown options learning_rte" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "trainer", "sft", "--data", "x"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "missing required options: --model, --output" in proc.stderr
