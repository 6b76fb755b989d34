"""Few-shot prompts for the three generation steps, and parsers for what the model writes.

Layout of every prompt (completion style, for a base model):

    <task preamble: the same text for every prompt of a step>
    ## Example 1
    <fields of a worked example>
    ...
    ## Example k
    <fields>
    ## Example k+1
    <the query's input fields, then the header of the field to write>

Generation stops at the next "## Example" header. The preamble is identical across a step's
prompts, so vLLM's prefix cache reuses it for every prompt; the examples that follow are drawn
per prompt (for diversity, as the reference does), so beyond the preamble the cache hits come
from the `n` samples of one prompt, which share the whole prompt.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from importlib import resources

from generator.response_format import python_blocks

EXAMPLE_HEADER = "## Example"
STOP = ("\n## Example",)
CATEGORIES = ("function", "class", "program")
DIFFICULTIES = ("easy", "medium", "hard")

PREAMBLE = {
    "concepts": (
        "Extract the key programming concepts of each code snippet. List them as a short, "
        "comma-separated line, from the most specific to the most general.\n\n"
    ),
    "instructions": (
        "Write a self-contained Python programming task that exercises the given concepts and "
        "has the given properties. The task must be precise enough that a solution can be "
        "checked by tests.\n\n"
    ),
    "responses": (
        "Answer each instruction with: [Reasoning] how to approach it, [Implementation] the "
        "code, [Explanation] why it works, and [Tests] assertions that check it and are run.\n\n"
    ),
}


@dataclass(frozen=True)
class Example:
    category: str
    difficulty: str
    snippet: str
    concepts: str
    instruction: str
    response: str


def load_examples() -> list[Example]:
    data = tomllib.loads((resources.files("generator.prompts") / "examples.toml").read_text())
    return [Example(**{k: v.strip() if isinstance(v, str) else v for k, v in e.items()})
            for e in data["example"]]


def _properties(category: str, difficulty: str) -> str:
    return f"category: {category}\nlanguage: Python\ndifficulty: {difficulty}"


def _block(index: int, fields: list[tuple[str, str]], open_field: str | None = None) -> str:
    parts = [f"{EXAMPLE_HEADER} {index}\n"]
    for name, value in fields:
        parts.append(f"### {name}\n{value}\n\n")
    if open_field:
        parts.append(f"### {open_field}\n")
    return "".join(parts)


def concepts_prompt(seed: str, examples: list[Example]) -> str:
    shots = [_block(i, [("Snippet", f"```python\n{e.snippet}\n```"), ("Concepts", e.concepts)])
             for i, e in enumerate(examples, 1)]
    query = _block(len(examples) + 1, [("Snippet", f"```python\n{seed.strip()}\n```")], "Concepts")
    return PREAMBLE["concepts"] + "".join(shots) + query


def instructions_prompt(concepts: str, category: str, difficulty: str, examples: list[Example]) -> str:
    shots = [_block(i, [("Concepts", e.concepts), ("Properties", _properties(e.category, e.difficulty)),
                        ("Instruction", e.instruction)]) for i, e in enumerate(examples, 1)]
    query = _block(len(examples) + 1, [("Concepts", concepts), ("Properties", _properties(category, difficulty))],
                   "Instruction")
    return PREAMBLE["instructions"] + "".join(shots) + query


def responses_prompt(instruction: str, examples: list[Example]) -> str:
    shots = [_block(i, [("Instruction", e.instruction), ("Response", e.response)])
             for i, e in enumerate(examples, 1)]
    query = _block(len(examples) + 1, [("Instruction", instruction)], "Response")
    return PREAMBLE["responses"] + "".join(shots) + query


def sample_examples(examples: list[Example], k: int, seed: int) -> list[Example]:
    return random.Random(seed).sample(examples, min(k, len(examples)))


def draw_properties(seed: int, categories: dict[str, float] | None = None,
                    difficulties: dict[str, float] | None = None) -> tuple[str, str]:
    """A task category and difficulty, each drawn by weight (uniform when not given)."""
    rng = random.Random(seed)
    categories = categories or dict.fromkeys(CATEGORIES, 1.0)
    difficulties = difficulties or dict.fromkeys(DIFFICULTIES, 1.0)
    category = rng.choices(list(categories), weights=list(categories.values()))[0]
    difficulty = rng.choices(list(difficulties), weights=list(difficulties.values()))[0]
    return category, difficulty


# -- parsing --------------------------------------------------------------------------------

class Malformed(ValueError):
    """The model's output does not have the expected shape; the message is the reason key."""


def parse_concepts(text: str) -> list[str]:
    line = text.strip().split("\n\n")[0].replace("\n", " ")
    concepts = [c.strip(" .;`*-") for c in line.split(",")]
    concepts = [c for c in concepts if c and len(c) <= 120]
    if not concepts:
        raise Malformed("empty_concepts")
    if len(concepts) > 20:
        raise Malformed("too_many_concepts")
    return concepts


def parse_instruction(text: str) -> str:
    instruction = text.strip()
    if instruction.startswith("### "):
        raise Malformed("missing_instruction")
    instruction = instruction.split("\n### ")[0].strip()
    if len(instruction) < 20:
        raise Malformed("instruction_too_short")
    if len(instruction) > 4000:
        raise Malformed("instruction_too_long")
    return instruction


def parse_response(text: str) -> str:
    response = text.strip()
    if "```" not in response:
        raise Malformed("no_code_block")
    if response.count("```") % 2:
        raise Malformed("unclosed_code_block")
    if not python_blocks(response):
        raise Malformed("no_parsable_code")
    return response
