"""I->R: several sampled responses per instruction, each with its own tests.

The stage's notes count usable samples and distinct ones: several vLLM versions have returned
identical samples for n > 1 under some seeds and settings, which silently turns ten tries per
instruction into one. A batch where fewer than half the samples are distinct is logged as a
warning.
"""

from __future__ import annotations

import logging

from generator.prompts import parse_response, responses_prompt, sample_examples
from generator.stage import BatchResult
from generator.stages.generation import GenerationStage

log = logging.getLogger(__name__)
COLLAPSE_RATIO = 0.5


class Responses(GenerationStage):
    name = "responses"

    def prompt(self, row: dict) -> str:
        shots = sample_examples(self.examples, self.gen.k, self.row_seed(row, "examples"))
        return responses_prompt(row["instruction"], shots)

    def parse(self, text: str) -> str:
        return parse_response(text)

    def make_rows(self, row: dict, parsed: list, prompt: str) -> list[dict]:
        """One row per instruction with all its usable samples: the execute stage tries each.
        The prompt is kept, as the released dataset keeps it."""
        return [{**row, "samples": parsed, "prompt": prompt}]

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = super().process_batch(rows)
        total = sum(len(r["samples"]) for r in result.kept)
        distinct = sum(len(set(r["samples"])) for r in result.kept)
        result.notes["samples"] += total
        result.notes["distinct_samples"] += distinct
        if self.gen.n > 1 and total and distinct < COLLAPSE_RATIO * total:
            log.warning("responses: only %d of %d samples in this batch are distinct; check the backend's "
                        "seeding and sampling settings (n=%d, temperature=%s)", distinct, total, self.gen.n,
                        self.gen.temperature)
        return result
