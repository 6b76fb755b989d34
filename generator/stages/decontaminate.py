"""Drop rows whose instruction or response contains a benchmark problem statement or reference
solution (see `benchmarks.texts` for what is matched and why)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks.texts import load_benchmarks
from generator.contamination import ContaminationIndex
from generator.stage import BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig


class Decontaminate(Stage):
    name = "decontaminate"
    keeps_rows_as_read = True
    batch_size = 1024

    def __init__(self, output, index: ContaminationIndex, progress: bool = True):
        super().__init__(output, progress)
        self.index = index

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Decontaminate:
        b = cfg.benchmarks
        return cls(output, ContaminationIndex(load_benchmarks(b.builtin, b.files)), cfg.progress)

    def settings(self) -> dict:
        return {"benchmarks": self.index.fingerprint}

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        for row in rows:
            found = self.index.match(f"{row.get('instruction', '')}\n\n{row.get('response', '')}")
            if found:
                result.rejected.append({"id": row["id"], "reason": f"{found.benchmark}_match",
                                        "task_id": found.task_id, "match": found.text[:200]})
            else:
                result.kept.append(row)
        return result
