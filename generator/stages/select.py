"""One passing response per instruction, chosen with a seed (reproducible, unbiased by order)."""

from __future__ import annotations

import random
from collections import defaultdict

from generator.stage import WHOLE_INPUT, BatchResult, Stage, stable_seed


class Select(Stage):
    name = "select"
    batch_size = WHOLE_INPUT

    def __init__(self, output, run_seed: int, config: dict | None = None, progress: bool = True) -> None:
        super().__init__(output, config, progress)
        self.run_seed = run_seed

    def process_batch(self, rows: list[dict]) -> BatchResult:
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            groups[row.get("instruction_id", row["id"])].append(row)
        result = BatchResult()
        for instruction_id in sorted(groups):
            group = sorted(groups[instruction_id], key=lambda r: r["id"])
            chosen = random.Random(stable_seed(self.run_seed, self.name, instruction_id)).choice(group)
            result.kept.append({**chosen, "id": instruction_id, "passing_samples": len(group)})
            result.rejected += [{"id": r["id"], "reason": "not_selected", "selected": chosen["id"]}
                                for r in group if r is not chosen]
        return result
