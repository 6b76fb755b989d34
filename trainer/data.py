"""`prepare`: verify, deduplicate, decontaminate and tokenize an instruction dataset.

Verification, dedup and decontamination are the generator's own stages (one implementation):
with `--verify` each response's code runs in the executor and failing rows are dropped.
Every step writes its kept and dropped rows into the output directory, and the tokenized
dataset (input_ids, labels) is saved with `datasets`, with a report of counts and truncation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from generator.pipeline import ExecuteConfig, run_stage
from generator.stage import StageStats, file_fingerprint, read_jsonl
from trainer.template import tokenize_example


def load_rows(data: str) -> list[dict]:
    """JSONL, Parquet, a `datasets` dataset saved on disk, or a Hugging Face dataset name."""
    path = Path(data)
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        rows = list(read_jsonl(path))
    elif path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif path.is_dir():
        import datasets

        # An exported dataset folder (Parquet and a card), or one saved with save_to_disk.
        rows = list(datasets.load_from_disk(str(path)) if (path / "state.json").exists()
                    else datasets.load_dataset(str(path), split="train"))
    elif not path.exists() and "/" in data and not data.startswith(("/", ".", "~")):
        import datasets

        rows = list(datasets.load_dataset(data, split="train"))
    else:
        raise FileNotFoundError(f"{data}: not a .jsonl/.parquet file, a saved dataset or a dataset name")
    for i, row in enumerate(rows):
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("response"), str):
            raise ValueError(f"{data}: row {i + 1} needs string fields 'instruction' and 'response'")
        row.setdefault("id", str(row.get("id") or i))
        row["id"] = str(row["id"])
    return rows


@dataclass
class PrepareOptions:
    verify: bool = False
    dedup: bool = False
    decontaminate: bool = True
    executor: list[str] | None = None
    max_length: int = 1280
    benchmark_files: tuple[str, ...] = ()


def prepare(data: str, out_dir: str | Path, tokenizer, options: PrepareOptions, progress: bool = True) -> dict:
    from generator.benchmarks import ContaminationIndex, load_benchmarks
    from generator.stages.decontaminate import Decontaminate
    from generator.stages.dedup import Dedup, DedupConfig
    from generator.stages.execute import Execute

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(data)
    current = out / "00-input.jsonl"
    with open(current, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    steps: list[StageStats] = []

    execute = ExecuteConfig(executor=list(options.executor or []))

    def step(stage) -> None:
        nonlocal current
        rows_in = list(read_jsonl(current))
        steps.append(run_stage(stage, rows_in, file_fingerprint(current), execute))
        current = stage.output

    if options.verify:
        step(Execute(out / "01-verify.jsonl", None, progress=progress))
        current = _restore_ids(current, out / "01-verified.jsonl")
    if options.dedup:
        step(Dedup(out / "02-dedup.jsonl", DedupConfig(), progress=progress))
    if options.decontaminate:
        index = ContaminationIndex(load_benchmarks(("humaneval",), options.benchmark_files))  # case-insensitive
        step(Decontaminate(out / "03-decontaminate.jsonl", index, progress=progress))

    import datasets

    final = list(read_jsonl(current))
    examples = [tokenize_example(tokenizer, r["instruction"], r["response"], options.max_length) for r in final]
    columns = {
        "id": [r["id"] for r in final],
        "input_ids": [e.input_ids for e in examples],
        "labels": [e.labels for e in examples],
    }
    datasets.Dataset.from_dict(columns).save_to_disk(str(out / "tokenized"))
    lengths = [len(e.input_ids) for e in examples]
    report = {
        "rows_in": len(rows),
        "rows_out": len(final),
        "steps": [s.to_dict() for s in steps],
        "truncated": sum(e.truncated for e in examples),
        "max_length": options.max_length,
        "tokens": sum(lengths),
        "response_tokens": sum(sum(1 for t in e.labels if t != -100) for e in examples),
        "mean_length": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "padding_overhead": {str(b): padding_overhead(lengths, b) for b in (4, 8, 16)},
    }
    (out / "prepare.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def padding_overhead(lengths: list[int], batch: int, seed: int = 0) -> float:
    """Extra tokens plain padding computes over padding-free batching, as a fraction of the real
    tokens, for shuffled batches of `batch` examples (what the trainer's sampler does)."""
    import random

    if not lengths:
        return 0.0
    order = lengths[:]
    random.Random(seed).shuffle(order)
    padded = sum(max(order[i:i + batch]) * len(order[i:i + batch]) for i in range(0, len(order), batch))
    return round(padded / sum(order) - 1, 4)


def _restore_ids(path: Path, out: Path) -> Path:
    """The execute stage names a kept row `id#sample`; a dataset row has one sample: keep its id."""
    with open(out, "w", encoding="utf-8") as f:
        for row in read_jsonl(path):
            row["id"] = row.get("instruction_id", row["id"])
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
