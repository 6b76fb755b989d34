"""Answers from a file of recorded model outputs instead of a model.

Two uses: demonstrating the pipeline on CPU with outputs a real model would write (the
quickstart's recordings, `generator/quickstart/replay.jsonl`, written for this project), and
running any generation step from recorded outputs, such as the authors' released intermediate
datasets, so the steps after it (our execution filter, selection, dedup) can be run on them.

A recording is one JSON line: `{"field": F, "input": TEXT, "outputs": [...]}`. `field` is the
query's first field in the prompt (`Snippet` for concepts, `Concepts` for instructions,
`Instruction` for responses, `Function` for the seed judge) and `input` its value: the seed's
code, the concepts line, the instruction. Prompts are matched on that value with white space
folded, so the few-shot examples around it do not matter. A prompt with no recording gets no
sample (the step counts it as malformed) and is logged.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from generator.backends import Completion, Sampling, cut_at_stop
from generator.prompts import EXAMPLE_HEADER

log = logging.getLogger(__name__)
_FIELD = re.compile(r"^### (\w+)\n(.*?)(?=\n\n### |\n### |\Z)", re.S | re.M)


def fold(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return " ".join(text.split())


def query_key(prompt: str) -> tuple[str, str] | None:
    """(field, folded value) of the first field of the prompt's last example (the query)."""
    query = prompt.rsplit(EXAMPLE_HEADER, 1)[-1]
    match = _FIELD.search(query)
    return (match.group(1), fold(match.group(2))) if match else None


class ReplayBackend:
    def __init__(self, model: str) -> None:
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"replay backend: no recording file at {model!r}")
        self.recorded: dict[tuple[str, str], list[str]] = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    key = (row["field"], fold(row["input"]))
                    outputs = [str(o) for o in row["outputs"]]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{model}:{lineno}: expected {{\"field\", \"input\", \"outputs\"}}: {exc}") \
                        from None
                self.recorded.setdefault(key, []).extend(outputs)
        self.misses = 0

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        out, missed = [], 0
        for prompt in prompts:
            key = query_key(prompt)
            outputs = self.recorded.get(key) if key else None
            if not outputs:
                missed += 1
                out.append([])
                continue
            out.append([Completion(cut_at_stop(text, sampling.stop)[0], "stop") for text in outputs[: sampling.n]])
        if missed:
            self.misses += missed
            log.warning("replay: %d of %d prompts have no recording", missed, len(prompts))
        return out
