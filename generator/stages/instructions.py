"""C->I: a task built on the concepts, with properties (category, difficulty) drawn per row."""

from __future__ import annotations

from generator.prompts import draw_properties, instructions_prompt, parse_instruction, sample_examples
from generator.stages.generation import GenerationStage


class Instructions(GenerationStage):
    name = "instructions"
    output_field = "instruction"

    def prompt(self, row: dict) -> str:
        category, difficulty = self.properties(row)
        shots = sample_examples(self.examples, self.gen.k, self.row_seed(row, "examples"))
        return instructions_prompt(", ".join(row["concepts"]), category, difficulty, shots)

    def properties(self, row: dict) -> tuple[str, str]:
        return draw_properties(self.row_seed(row, "properties"))

    def parse(self, text: str) -> str:
        return parse_instruction(text)

    def make_rows(self, row: dict, parsed: list) -> list[dict]:
        category, difficulty = self.properties(row)
        return [{**row, "id": f"{row['id']}-{i}", "instruction": text, "category": category,
                 "difficulty": difficulty} for i, text in enumerate(parsed)]
