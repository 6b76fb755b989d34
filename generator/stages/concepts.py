"""S->C: the concepts a seed function embodies."""

from __future__ import annotations

from generator.prompts import concepts_prompt, parse_concepts, sample_examples
from generator.stages.generation import GenerationStage


class Concepts(GenerationStage):
    name = "concepts"
    output_field = "concepts"

    def prompt(self, row: dict) -> str:
        shots = sample_examples(self.examples, self.gen.k, self.row_seed(row, "examples"))
        return concepts_prompt(row["seed"], shots)

    def parse(self, text: str) -> list[str]:
        return parse_concepts(text)
