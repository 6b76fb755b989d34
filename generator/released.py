"""The authors' released intermediate datasets, read into this pipeline's row shapes.

StarCoder2-15B-Instruct's data pipeline published every step (see the model card):
`self-oss-instruct-sc2-responses-unfiltered` (I->R output: an instruction with its sampled
responses) and `self-oss-instruct-sc2-exec-filter-500k-raw` (the samples that passed their
execution filter, one row each). Both map onto the execute step's input: one row per
instruction, `{"id", "instruction", "samples": [...]}`. The columns read:

| their column | ours |
| --- | --- |
| `instruction` | `instruction` |
| `response`, or each `parsing_result[].response` | one entry of `samples` |
| `seed`, `concepts` (when present) | `seed`, `concepts` |

Rows of the same instruction are grouped (the 500k-raw file has one row per passing sample).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from generator.rows import read_jsonl


def _rows(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
        return
    yield from read_jsonl(path)


def import_released(input_path: str | Path, output_path: str | Path) -> int:
    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    grouped: dict[str, dict] = {}
    for i, row in enumerate(_rows(path), 1):
        instruction = row.get("instruction")
        if not isinstance(instruction, str):
            raise ValueError(f"{path}: row {i} has no 'instruction' text")
        if isinstance(row.get("parsing_result"), list):
            samples = [r["response"] for r in row["parsing_result"] if isinstance(r, dict) and r.get("response")]
        elif isinstance(row.get("response"), str):
            samples = [row["response"]]
        else:
            raise ValueError(f"{path}: row {i} has neither 'response' nor 'parsing_result'")
        key = hashlib.sha256(instruction.encode()).hexdigest()[:16]
        entry = grouped.setdefault(key, {"id": f"released-{key}", "instruction": instruction, "samples": []})
        for name in ("seed", "concepts"):
            if name in row and name not in entry:
                entry[name] = row[name]
        entry["samples"].extend(s for s in samples if s not in entry["samples"])
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as f:
        for entry in grouped.values():
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return len(grouped)
