"""Choose the training samples among the passing ones: the original pipeline's rule.

All passing samples are shuffled with a fixed seed and visited in that order; a sample is kept
only if its instruction and its response (whitespace removed) have not been seen yet and,
with `diversify_function_names`, neither has the list of function names its first code block
defines. So each instruction keeps at most one sample, and when the first sample drawn for an
instruction repeats a response (or a set of function names) kept earlier, a later passing
sample of that instruction can still be used. Keys of all three kinds share one set, as in
the original (bigcode-project/starcoder2-self-align, `clean_data.py`).
"""

from __future__ import annotations

import ast
import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from generator.response_format import fences, program_of
from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig


@dataclass
class SelectConfig:
    seed: int = 0
    diversify_function_names: bool = True
    # "first_block": the names in the response's first fenced block, whatever its language (the
    # original: a response whose first block is shell or output is dropped); "python": the names
    # in all its Python blocks.
    names_from: str = "first_block"

    def __post_init__(self) -> None:
        if self.names_from not in ("first_block", "python"):
            raise ValueError(f"[select] names_from must be 'first_block' or 'python', not {self.names_from!r}")


def _key(text: str) -> str:
    return "".join(text.split())


def defined_function_names(code: str) -> str:
    """Names of every function the code defines, nested ones included, in source order."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(code))
    return " ".join(names)


class Select(Stage):
    name = "select"
    batch_size = WHOLE_INPUT

    def __init__(self, output, cfg: SelectConfig, progress: bool = True) -> None:
        super().__init__(output, progress)
        self.cfg = cfg

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Select:
        return cls(output, cfg.select, cfg.progress)

    def settings(self) -> dict:
        return dataclasses.asdict(self.cfg)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        order = list(rows)
        random.Random(self.cfg.seed).shuffle(order)
        seen: dict[str, str] = {}   # key -> id of the sample that claimed it
        result = BatchResult()
        for row in order:
            key_i, key_r = _key(row["instruction"]), _key(row["response"])
            if key_i in seen or key_r in seen:
                which = "instruction" if key_i in seen else "response"
                result.rejected.append({"id": row["id"], "reason": f"{which}_already_chosen",
                                        "chosen": seen[key_i if key_i in seen else key_r]})
                continue
            if self.cfg.diversify_function_names:
                if self.cfg.names_from == "python":
                    code = program_of(row["response"])
                else:
                    blocks = fences(row["response"])
                    code = blocks[0].code if blocks else ""
                try:
                    names = defined_function_names(code)
                except (SyntaxError, ValueError):
                    result.rejected.append({"id": row["id"], "reason": "first_code_block_does_not_parse"})
                    continue
                if names in seen:
                    result.rejected.append({"id": row["id"], "reason": "function_names_already_chosen",
                                            "names": names, "chosen": seen[names]})
                    continue
                seen[names] = row["id"]
            instruction_id = row.get("instruction_id", row["id"])
            result.kept.append({**row, "id": instruction_id, "sample_id": row["id"]})
            seen[key_i] = row["id"]
            seen[key_r] = row["id"]
        return result
