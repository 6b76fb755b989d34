"""The SFT dataset: JSONL and a `datasets` dataset on disk, with a fingerprint per row."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from generator.stage import WHOLE_INPUT, BatchResult, Stage

FIELDS = ("id", "instruction", "response", "seed", "concepts", "category", "difficulty", "fingerprint")


def fingerprint(instruction: str, response: str) -> str:
    return hashlib.sha256(f"{instruction}\x1f{response}".encode()).hexdigest()[:16]


class Export(Stage):
    name = "export"
    batch_size = WHOLE_INPUT

    def __init__(self, output, dataset_dir: str | Path, config: dict | None = None, progress: bool = True):
        super().__init__(output, config, progress)
        self.dataset_dir = Path(dataset_dir)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        import datasets

        out = []
        for row in sorted(rows, key=lambda r: r["id"]):
            rec = {k: row.get(k) for k in FIELDS if k != "fingerprint"}
            rec["concepts"] = list(rec.get("concepts") or [])
            rec["fingerprint"] = fingerprint(row["instruction"], row["response"])
            out.append(rec)
        if self.dataset_dir.exists():
            shutil.rmtree(self.dataset_dir)
        features = datasets.Features({k: datasets.Sequence(datasets.Value("string")) if k == "concepts"
                                      else datasets.Value("string") for k in FIELDS})
        columns = {k: [row[k] for row in out] for k in FIELDS}  # also right for zero rows
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(self.dataset_dir))
        return BatchResult(kept=out)
