"""The two sanitize steps of SelfCodeAlign, after execution.

`CheckFormat` keeps only responses in the exact four-part format (`[Reasoning]`,
`[Implementation]`, `[Explanation]`, `[Tests]`, each once and in that order, Python code under
`[Implementation]`, exactly one Python block under `[Tests]` holding an `assert`) and cuts
whatever the model wrote after the tests block. The format is what the later rewrite needs, and
text after the tests is where base models ramble.

`Rewrite` turns the checked responses into training targets with variety, so the model learns
to answer without always reasoning, explaining and testing: it drops incomplete responses,
drops the explanation and the reasoning each with a probability, drops the tests unless the
instruction asks for tests, removes the tags and full-line comments, and with a probability
appends "Your code should pass the following assertion(s):" and 1-5 of the response's own
asserts to the instruction. That last step is what teaches the MBPP prompt style.

Both follow the original pipeline's rules (bigcode-project/starcoder2-self-align,
`sanitize_data.py` run with RAW=1 and then SMART=1). With `random = "stream"` the rewrite draws
from one generator seeded once and walked over the rows in order, the way the original did, so
the same input in the same order gives the original's choices; `random = "row"` seeds each row
on its own, so batches can be checkpointed.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from generator.response_format import MARKDOWN, TAGS, fences
from generator.stage import WHOLE_INPUT, BatchResult, Stage, stable_seed

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig

INCOMPLETE_MARKERS = ("todo", "fixme", "write your code here", "your code here", "your code goes here",
                      "notimplemented")


@dataclass(frozen=True)
class Parts:
    reasoning: str
    implementation: str
    explanation: str
    tests: str          # the prose and the one tests block, cut after its closing fence
    tests_block: str    # the tests block's code, stripped


def split_response(response: str) -> Parts | str:
    """The four parts of a well-formed response, or the reason it is not well-formed."""
    if any(response.count(tag) != 1 for tag in TAGS):
        return "tag_missing_or_repeated"
    reasoning_at, implementation_at, explanation_at, tests_at = (response.index(tag) for tag in TAGS)
    if not reasoning_at < implementation_at < explanation_at < tests_at:
        return "tags_out_of_order"
    reasoning = response[reasoning_at + len(TAGS[0]):implementation_at].strip()
    implementation = response[implementation_at + len(TAGS[1]):explanation_at].strip()
    explanation = response[explanation_at + len(TAGS[2]):tests_at].strip()
    if not any(f.lang == "python" for f in fences(implementation)):
        return "no_python_implementation"
    tests = response[tests_at + len(TAGS[3]):].strip()
    blocks = [f for f in fences(tests) if f.lang == "python"]
    if len(blocks) != 1 or tests.count("```") != 2:
        return "tests_not_one_python_block"
    tests = tests[:tests.rindex("```") + 3]   # whatever follows the tests block is cut
    lines = tests.splitlines(keepends=True)
    slash = next((i for i, line in enumerate(lines) if line.startswith("/")), None)
    if slash is not None:  # a "// output" line, or a path: the block is over
        tests = "".join(lines[:slash]).strip()
    tests_block = blocks[0].code.strip()
    code_lines = [line for line in tests_block.splitlines() if line and line[0].isalpha()]
    if "assert" not in tests or all(line.startswith(("def", "class", "import", "from")) for line in code_lines):
        return "tests_without_assert"
    return Parts(reasoning, implementation, explanation, tests, tests_block)


def join_tagged(parts: Parts) -> str:
    return "\n\n".join(f"{tag}\n{text}" for tag, text in zip(
        TAGS, (parts.reasoning, parts.implementation, parts.explanation, parts.tests), strict=True))


def strip_comment_lines(text: str) -> str:
    """Remove full-line comments from every fenced block (and a blank line right before one);
    code after a `#` on a code line stays, since it may be a string."""
    lines = text.splitlines(keepends=True)
    drop: set[int] = set()
    for token in MARKDOWN.parse(text):
        if token.type != "fence" or token.map is None:
            continue
        first, end = token.map[0] + 1, token.map[1]
        if end - 1 > first and lines[end - 1].lstrip().startswith(token.markup):
            end -= 1   # the closing fence
        for i in range(first, end):
            if lines[i].lstrip().startswith("#"):
                drop.add(i)
                if i - 1 > first and not lines[i - 1].strip():
                    drop.add(i - 1)
    return "".join(line for i, line in enumerate(lines) if i not in drop)


class CheckFormat(Stage):
    name = "check_format"
    batch_size = 1024
    unit = "samples"

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> CheckFormat:
        return cls(output, cfg.progress)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        for row in rows:
            parts = split_response(row["response"])
            if isinstance(parts, str):
                result.rejected.append({"id": row["id"], "reason": parts})
            else:
                result.kept.append({**row, "response": join_tagged(parts)})
        return result


@dataclass
class RewriteConfig:
    drop_explanation_p: float = 0.5
    drop_reasoning_p: float = 0.5
    keep_tests_when_asked: bool = True   # keep the tests when the instruction says "test"
    drop_incomplete: bool = True
    strip_comments: bool = True
    assertion_hint_p: float = 0.5
    random: str = "stream"               # "stream" (the original's order of draws) or "row"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.random not in ("stream", "row"):
            raise ValueError(f"[rewrite] random must be 'stream' or 'row', not {self.random!r}")
        for name in ("drop_explanation_p", "drop_reasoning_p", "assertion_hint_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"[rewrite] {name} must be between 0 and 1")


def rewrite(row: dict, cfg: RewriteConfig, rng: random.Random) -> tuple[dict | None, str | None, bool]:
    """(new row, None, hinted) or (None, reason, False). The draws happen in the original's
    order, so a shared generator reproduces its choices."""
    parts = split_response(row["response"])
    if isinstance(parts, str):
        return None, parts, False
    instruction = row["instruction"]
    drop_tests = not (cfg.keep_tests_when_asked and "test" in instruction.lower())
    drop_explanation = rng.random() < cfg.drop_explanation_p
    drop_reasoning = rng.random() < cfg.drop_reasoning_p
    if cfg.drop_incomplete and any(m in row["response"].lower() for m in INCOMPLETE_MARKERS):
        return None, "incomplete", False
    contents = [parts.reasoning, parts.implementation, parts.explanation, parts.tests]
    keep = [not drop_reasoning, True, not drop_explanation, not drop_tests]
    response = "\n\n".join(c for c, k in zip(contents, keep, strict=True) if k)
    lines = parts.tests_block.splitlines()
    if all(line.startswith("assert") for line in lines):
        chosen = rng.sample(lines, k=min(rng.choice([1, 2, 3, 4, 5]), len(lines)))
        hint, term = "\n".join(chosen), "assertion" + ("s" if len(chosen) > 1 else "")
    else:
        hint, term = parts.tests_block, "test case"
    hinted = False
    if (cfg.assertion_hint_p > 0 and "assert" in hint and len(hint.splitlines()) <= 5
            and rng.random() < cfg.assertion_hint_p and "assert" not in instruction
            and "for example" not in instruction.lower() and "test" not in instruction.lower()):
        instruction = f"{instruction}\n\nYour code should pass the following {term}:\n```python\n{hint.strip()}\n```"
        hinted = True
    if cfg.strip_comments:
        response = strip_comment_lines(response)
    return {**row, "instruction": instruction, "response": response}, None, hinted


class Rewrite(Stage):
    name = "rewrite"

    def __init__(self, output, cfg: RewriteConfig, progress: bool = True) -> None:
        super().__init__(output, progress)
        self.cfg = cfg
        # One generator walked over every row in order needs every row in one batch.
        self.batch_size = WHOLE_INPUT if cfg.random == "stream" else 1024

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Rewrite:
        return cls(output, cfg.rewrite, cfg.progress)

    def settings(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self.cfg).items() if k != "enabled"}

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        stream = random.Random(self.cfg.seed)
        for row in rows:
            rng = stream if self.cfg.random == "stream" else random.Random(
                stable_seed(self.cfg.seed, self.name, row["id"]))
            new, reason, hinted = rewrite(row, self.cfg, rng)
            if new is None:
                result.rejected.append({"id": row["id"], "reason": reason})
            else:
                result.kept.append(new)
                if hinted:
                    result.notes["instruction_given_assertions"] += 1
        return result
