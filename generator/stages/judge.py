"""Optional seed filter: the base model judges whether each docstring describes its function.

Two prompts (`[seeds] judge_prompt`):
- `original` (the faithful config's): the original's own, word for word
  (`seed_gathering/filter_dataset.py`): a GitHub-issue exchange, its seven examples (code with the
  docstring shown apart, "Yes"/"No" and a rationale; `generator/prompts/judge_original.json`),
  shuffled per prompt, then the seed; greedy, up to 5 tokens, cut at the first newline. The
  original shuffled one list in place for every prompt from `random.seed(42)`, so its order
  depended on the dataset's order; here each row's order comes from its own seed, so a row is
  judged the same wherever it stands.
- `ours`: the question below with the example library's snippets as shots.

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


ORIGINAL_ASK = ("<issue_start>username_0: I have a function in Python and I'd like someone to check my description "
                "of this function.\nI'm doing this so that I can write a good docstring for this function.\n\n"
                "Here is the code for the function:\n```py\n{code}\n```\n\nHere is my description of this program:\n"
                "```\n{doc}\n```\n\nDo not attempt to execute the function or to judge its correctness.\nAnswer with "
                "\"Yes\" or \"No\" depending on if my description has enough information alone to re-implement the "
                "function.\nAlso, answer with \"No\" if the description does not match the function.")
ORIGINAL_REPLY = "<issue_comment>username_1: Sure, no problem. I will be able to help.\nMy answer is:"


_SHOTS: list[dict] = []


def original_shots() -> list[dict]:
    """The original's seven examples, a fresh list each call (a prompt shuffles its own)."""
    if not _SHOTS:
        import json
        from importlib import resources

        _SHOTS.extend(json.loads((resources.files("generator.prompts") / "judge_original.json")
                                 .read_text(encoding="utf-8")))
    return list(_SHOTS)


def _unindent(text: str) -> str:
    lines = text.splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(line[cut:] if len(line) >= cut else line for line in lines)


def split_docstring(code: str) -> tuple[str, str]:
    """(docstring, code without it), as the original cut them: from the first triple quote to the
    next one, unindented and stripped."""
    first = code.find('"""')
    if first < 0:
        return "", code
    first += 3
    second = code[first + 1:].find('"""')
    if second < 0:
        return "", code
    second += first + 1
    return _unindent(code[first:second]).strip(), code[:first - 3] + code[second + 3:]


def original_prompt(code: str, rng: random.Random) -> str:
    shots = original_shots()
    rng.shuffle(shots)
    parts = []
    for shot in shots:
        doc, body = split_docstring(shot["code"])
        parts.append(ORIGINAL_ASK.format(code=body, doc=doc) + ORIGINAL_REPLY + f" {shot['answer']}\n\n"
                     f"{shot['rationale']}\n\nUpvotes: 200")
    doc, body = split_docstring(code)
    parts.append(ORIGINAL_ASK.format(code=body, doc=doc) + "\nUpvotes: 100" + ORIGINAL_REPLY)
    return "".join(parts)


class JudgeSeeds(GenerationStage):
    name = "seeds.judge"
    output_field = "judge"
    keep_cut_off = True   # the answer is read from the first few tokens; being cut there is expected
    distributable = False

    def __init__(self, *args, style: str = "ours", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if style not in ("original", "ours"):
            raise ValueError(f"[seeds] judge_prompt must be 'original' or 'ours', not {style!r}")
        self.style = style
        if style == "original":
            self.stop = ("\n",)

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> JudgeSeeds:
        s = cfg.seeds
        gen = GenerationConfig(k=s.judge_k, n=s.judge_samples, temperature=s.judge_temperature,
                               max_new_tokens=s.judge_max_new_tokens)
        return cls(output, gen, cfg.backend, cfg.seed, cfg.progress, style=s.judge_prompt)

    def preamble(self) -> str:
        return original_prompt("", random.Random(0)) if self.style == "original" else PREAMBLE

    def make_rows(self, row: dict, parsed: list, prompt: str) -> list[dict]:
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
        if self.style == "original":
            return original_prompt(row["seed"].strip(), random.Random(self.row_seed(row, "examples")))
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
