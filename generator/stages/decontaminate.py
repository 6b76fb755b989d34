"""Drop rows whose instruction or response contains a benchmark problem statement or reference
solution (see `generator.benchmarks` for what is matched and why)."""

from __future__ import annotations

from generator.benchmarks import ContaminationIndex
from generator.stage import BatchResult, Stage


class Decontaminate(Stage):
    name = "decontaminate"
    batch_size = 1024

    def __init__(self, output, index: ContaminationIndex, config: dict | None = None, progress: bool = True):
        super().__init__(output, config, progress)
        self.index = index

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
