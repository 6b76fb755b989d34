"""`prepare`: verify, deduplicate, decontaminate and tokenize an instruction dataset.

Verification, dedup and decontamination are the generator's own stages (one implementation):
with `--verify` each response's program, built exactly as the execution filter builds it, runs
in the executor, and failing rows are dropped, each with its reason in `01-verify.rejects.jsonl`.
A response that has tests must pass them; one that has none (the pipeline's rewrite step makes
training targets without their tests) must run to its end, and is counted as
`ran_without_tests` in the report. (Requiring tests there dropped 5 of the quickstart's 6
exported rows, all of which had passed the filter with their tests.)
Every step writes its kept and dropped rows into the output directory, and the tokenized
dataset (input_ids, labels) is saved with `datasets`, with a report of counts and truncation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from generator.resources import Resources
from generator.rows import read_jsonl, read_rows
from generator.runner import Input, run_stages
from generator.stage import Stage
from trainer.template import tokenize_example


def load_rows(data: str) -> list[dict]:
    """Instruction/response rows from any source `generator.rows.read_rows` reads, checked."""
    rows = list(read_rows(data))
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
    """The generator's own stages over a dataset, through the same runner as the pipeline."""
    from benchmarks.texts import load_benchmarks
    from generator.contamination import ContaminationIndex
    from generator.stages.decontaminate import Decontaminate
    from generator.stages.dedup import Dedup, DedupConfig
    from generator.stages.execute import Execute

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(data)
    first = out / "00-input.jsonl"
    with open(first, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    stages: list[Stage] = []
    if options.verify:
        from generator.stages.execute import ExecuteConfig

        stages.append(Execute(out / "01-verify.jsonl", ExecuteConfig(require_tests=False), progress=progress))
    if options.dedup:
        stages.append(Dedup(out / "02-dedup.jsonl", DedupConfig(), progress=progress))
    if options.decontaminate:
        index = ContaminationIndex(load_benchmarks(("humaneval",), options.benchmark_files))  # case-insensitive
        stages.append(Decontaminate(out / "03-decontaminate.jsonl", index, progress=progress))
    steps = run_stages(stages, Input.jsonl(first), Resources(executor=list(options.executor or [])))
    current = stages[-1].output if stages else first

    import datasets

    final = list(read_jsonl(current))
    examples = [tokenize_example(tokenizer, r["instruction"], r["response"], options.max_length) for r in final]
    columns = {
        # A verified row is named by its sample (`id#0`); the dataset keeps the row's own id.
        "id": [r.get("instruction_id", r["id"]) for r in final],
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
