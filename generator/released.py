"""The authors' released intermediate datasets, read into this pipeline's row shapes.

StarCoder2-15B-Instruct's data pipeline published every step (see the model card):
`self-oss-instruct-sc2-responses-unfiltered` (I->R output: an instruction with its sampled
responses in `parsing_result`) and `self-oss-instruct-sc2-exec-filter-500k-raw` (the samples that
passed their execution filter, one row each, in the final dataset's columns). Both map onto the
execute step's input: one row per instruction, `{"id", "instruction", "samples": [...]}`.

Every column the authors wrote is mapped (their `self_ossinstruct.py` writes `prompt`,
`fingerprint`, the seed set's `seed`, `sha1` and `id`, the S->C `concepts` and the C->I
`instruction`, then `response` or `parsing_result`):

| their column | ours |
| --- | --- |
| `instruction` | `instruction` (rows of one instruction are grouped) |
| `response`, or each `parsing_result[].response` | one entry of `samples` (repeats dropped) |
| `seed` | `seed` |
| `concepts` (a list of strings) | `concepts`, the same list; a comma-separated string is split as their parser did |
| `sha1` | `sha1` |
| `id` (the seed's int64 index in the seed set) | `seed_index` (our `id` is the row key) |
| `prompt` (the I->R prompt) | `prompt` |
| `fingerprint` (the API's `system_fingerprint`, null from vLLM) | not kept: the export writes null, as theirs |

The export writes these back under the released names, so a re-filtered row keeps its seed's
`id`, `sha1` and `prompt`. Columns not in this table are reported, not silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from generator.rows import concepts_list, read_jsonl

KNOWN_COLUMNS = {"instruction", "response", "parsing_result", "seed", "concepts", "sha1", "id", "prompt",
                 "fingerprint"}


@dataclass
class ImportReport:
    instructions: int = 0
    rows: int = 0
    unknown_columns: list[str] = field(default_factory=list)


def _rows(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
        return
    yield from read_jsonl(path)


def _samples(row: dict, where: str) -> list[str]:
    if isinstance(row.get("parsing_result"), list):
        return [r["response"] for r in row["parsing_result"] if isinstance(r, dict) and r.get("response")]
    if isinstance(row.get("response"), str):
        return [row["response"]]
    raise ValueError(f"{where} has neither 'response' nor 'parsing_result'")


def import_released(input_path: str | Path, output_path: str | Path) -> ImportReport:
    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    report = ImportReport()
    unknown: set[str] = set()
    grouped: dict[str, dict] = {}
    for i, row in enumerate(_rows(path), 1):
        where = f"{path}: row {i}"
        instruction = row.get("instruction")
        if not isinstance(instruction, str):
            raise ValueError(f"{where} has no 'instruction' text")
        samples = _samples(row, where)
        unknown |= set(row) - KNOWN_COLUMNS
        key = hashlib.sha256(instruction.encode()).hexdigest()[:16]
        entry = grouped.setdefault(key, {"id": f"released-{key}", "instruction": instruction, "samples": []})
        try:
            if "concepts" in row and row["concepts"] is not None and "concepts" not in entry:
                entry["concepts"] = concepts_list(row["concepts"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for theirs, ours, kind in (("seed", "seed", str), ("sha1", "sha1", str), ("prompt", "prompt", str),
                                   ("id", "seed_index", int)):
            value = row.get(theirs)
            if value is None or ours in entry:
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{where}: '{theirs}' must be {kind.__name__}, not {type(value).__name__}")
            entry[ours] = value
        entry["samples"].extend(s for s in samples if s not in entry["samples"])
        report.rows += 1
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as f:
        for entry in grouped.values():
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    report.instructions = len(grouped)
    report.unknown_columns = sorted(unknown)
    return report
