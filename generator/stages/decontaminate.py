"""Drop rows whose instruction or response shares a token n-gram with a benchmark prompt or
solution (HumanEval from the wheel; MBPP, HumanEval+, MBPP+ and others from files)."""

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
            for fieldname in ("instruction", "response"):
                match = self.index.match(row.get(fieldname, ""))
                if match:
                    result.rejected.append({"id": row["id"], "reason": f"benchmark_in_{fieldname}", "match": match})
                    break
            else:
                result.kept.append(row)
        return result
