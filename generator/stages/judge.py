"""Optional seed filter: the base model judges whether each docstring describes its function.

The question is the original pipeline's (bigcode-project/starcoder2-self-align,
`seed_gathering/filter_dataset.py`): does the description alone hold enough information to
re-implement the function, and does it match it. As there, the answer is read greedily from a few
tokens by counting "yes" against "no", and a tie counts as No. With `judge_samples > 1` the
samples vote and a majority of Yes keeps the seed. The positive shots are the example library's
snippets; the negative shots pair a snippet's code with another snippet's docstring, so the
model sees what a mismatch looks like.
"""

from __future__ import annotations

import ast
import random
from typing import TYPE_CHECKING

from generator.prompts import EXAMPLE_HEADER, Malformed, load_examples
from generator.stage import BatchResult
from generator.stages.generation import GenerationConfig, GenerationStage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig

PREAMBLE = ("For each function below, answer \"Yes\" or \"No\" depending on if its docstring has enough "
            "information alone to re-implement the function. Also answer \"No\" if the docstring does not "
            "match the function. Do not attempt to execute the function or to judge its correctness.\n\n")


def _swap_docstring(code: str, other: str) -> str | None:
    try:
        tree, donor = ast.parse(code), ast.parse(other)
    except SyntaxError:
        return None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    donors = [n for n in donor.body if isinstance(n, ast.FunctionDef)]
    if not funcs or not donors or ast.get_docstring(funcs[0]) is None or ast.get_docstring(donors[0]) is None:
        return None
    old, new = ast.get_docstring(funcs[0], clean=False), ast.get_docstring(donors[0], clean=False)
    return code.replace(old, new, 1) if old is not None and new is not None and old != new else None


class JudgeSeeds(GenerationStage):
    name = "seeds.judge"
    output_field = "judge"
    keep_cut_off = True   # the answer is read from the first few tokens; being cut there is expected
    distributable = False

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> JudgeSeeds:
        s = cfg.seeds
        gen = GenerationConfig(k=s.judge_k, n=s.judge_samples, temperature=s.judge_temperature,
                               max_new_tokens=s.judge_max_new_tokens)
        return cls(output, gen, cfg.backend, cfg.seed, cfg.progress)

    def preamble(self) -> str:
        return PREAMBLE

    def make_rows(self, row: dict, parsed: list) -> list[dict]:
        """One vote per sample, each naming its seed (votes are counted per seed below)."""
        return [{"seed_id": row["id"], "judge": vote} for vote in parsed]

    def _shots(self, row: dict) -> list[tuple[str, str]]:
        rng = random.Random(self.row_seed(row, "examples"))
        snippets = [e.snippet for e in load_examples() if "\"\"\"" in e.snippet]
        rng.shuffle(snippets)
        shots = []
        for i, snippet in enumerate(snippets[: self.gen.k]):
            if i % 2:
                swapped = _swap_docstring(snippet, snippets[(i + 1) % len(snippets)])
                if swapped:
                    shots.append((swapped, "No"))
                    continue
            shots.append((snippet, "Yes"))
        return shots

    def prompt(self, row: dict) -> str:
        parts = [PREAMBLE]
        shots = self._shots(row)
        for i, (code, answer) in enumerate(shots, 1):
            parts.append(f"{EXAMPLE_HEADER} {i}\n### Function\n```python\n{code}\n```\n\n### Answer\n{answer}\n\n")
        parts.append(f"{EXAMPLE_HEADER} {len(shots) + 1}\n### Function\n```python\n{row['seed'].strip()}\n```\n\n"
                     "### Answer\n")
        return "".join(parts)

    def parse(self, text: str) -> bool:
        lower = text.lower()
        yes, no = lower.count("yes"), lower.count("no")
        if not yes and not no:
            raise Malformed("not_yes_or_no")
        return yes > no   # a tie is a No

    def process_batch(self, rows: list[dict]) -> BatchResult:
        voted = super().process_batch(rows)
        result = BatchResult(rejected=voted.rejected, extra=voted.extra)
        votes: dict[str, list[bool]] = {}
        for r in voted.kept:
            votes.setdefault(r["seed_id"], []).append(r["judge"])
        for row in rows:
            ballot = votes.get(row["id"])
            if not ballot:
                continue  # no usable answer: already rejected above
            yes = sum(ballot)
            if yes * 2 > self.gen.n:
                result.kept.append({**row, "judge_yes": yes, "judge_votes": len(ballot)})
            else:
                result.rejected.append({"id": row["id"], "reason": "docstring_mismatch", "judge_yes": yes,
                                        "judge_votes": len(ballot)})
        return result
