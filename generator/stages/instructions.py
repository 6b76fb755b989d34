"""C->I: a task built on the concepts, with properties (category, difficulty) drawn per row.

The category and difficulty mixes are weighted config values. StarCoder2-15B-Instruct-v0.1's
data has function-implementation tasks only (the original run had class and program tasks
switched off to match the released data); its successor selfcodealign weighted a mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.prompts import (
    CATEGORIES,
    DIFFICULTIES,
    draw_properties,
    instructions_prompt,
    parse_instruction,
    sample_examples,
)
from generator.rows import concepts_list
from generator.stages.generation import GenerationConfig, GenerationStage


@dataclass
class InstructionsConfig(GenerationConfig):
    categories: dict[str, float] = field(default_factory=lambda: {"function": 2.0, "class": 1.0, "program": 1.0})
    difficulties: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DIFFICULTIES, 1.0))

    def __post_init__(self) -> None:
        for name, known in (("categories", CATEGORIES), ("difficulties", DIFFICULTIES)):
            mix = getattr(self, name)
            if not isinstance(mix, dict) or not mix:
                raise ValueError(f"[instructions] {name} must be a table of weights, like {{ {known[0]} = 1.0 }}")
            unknown = set(mix) - set(known)
            if unknown:
                raise ValueError(f"[instructions] {name}: unknown {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(known)})")
            if any(not isinstance(w, int | float) or w < 0 for w in mix.values()) or not sum(mix.values()):
                raise ValueError(f"[instructions] {name}: weights must be non-negative numbers, not all zero")


class Instructions(GenerationStage):
    name = "instructions"
    output_field = "instruction"
    gen: InstructionsConfig

    def prompt(self, row: dict) -> str:
        category, difficulty = self.properties(row)
        shots = sample_examples(self.examples, self.gen.k, self.row_seed(row, "examples"))
        return instructions_prompt(", ".join(concepts_list(row["concepts"])), category, difficulty, shots)

    def properties(self, row: dict) -> tuple[str, str]:
        categories = getattr(self.gen, "categories", None)
        difficulties = getattr(self.gen, "difficulties", None)
        return draw_properties(self.row_seed(row, "properties"), categories, difficulties)

    def parse(self, text: str) -> str:
        return parse_instruction(text)

    def make_rows(self, row: dict, parsed: list, prompt: str) -> list[dict]:
        category, difficulty = self.properties(row)
        return [{**row, "id": f"{row['id']}-{i}", "instruction": text, "category": category,
                 "difficulty": difficulty} for i, text in enumerate(parsed)]
