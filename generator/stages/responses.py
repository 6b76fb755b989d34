"""I->R: several sampled responses per instruction, each with its own tests."""

from __future__ import annotations

from generator.prompts import parse_response, responses_prompt, sample_examples
from generator.stages.generation import GenerationStage


class Responses(GenerationStage):
    name = "responses"

    def prompt(self, row: dict) -> str:
        shots = sample_examples(self.examples, self.gen.k, self.row_seed(row, "examples"))
        return responses_prompt(row["instruction"], shots)

    def parse(self, text: str) -> str:
        return parse_response(text)

    def make_rows(self, row: dict, parsed: list) -> list[dict]:
        """One row per instruction with all its usable samples: the execute stage tries each."""
        return [{**row, "samples": parsed}]
