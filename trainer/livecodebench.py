"""LiveCodeBench's four scenarios as the model card ran them: prompts, answer extraction and
grading in lcb_runner's `StarCoderInstruct` style, with every program run in the executor.

Pinned: lcb_runner as `nvidia-livecodebench` 26.3 packages it, for self repair, test output
prediction and code execution (their StarCoderInstruct prompts are tested byte for byte against
that package). Its code generation has no StarCoderInstruct prompt any more; the one used here is
the one-shot prompt that the StarCoder2-Instruct authors' lcb_runner fork uses for "StarCoderInstruct
(v0.1)" (which that fork runs in one-shot mode only), with lcb_runner's own one-shot examples.

Grading follows lcb_runner's testing_util, split where a completion cannot reach the verdict:
- the sandbox (`trainer.harness`, modes `stdio`, `functional`, `values`) runs the program on each
  test input and reports what it printed or returned; the expected outputs never enter it;
- the trainer compares, here, with lcb_runner's rules: stdout by stripped lines, each line equal
  or equal as a list of Decimals; LeetCode return values by `==` against the JSON output, a tuple
  counting as a list; the first failing test decides, and its details become the self-repair
  feedback, shaped as lcb_runner's metadata.
- Predicted outputs (test output prediction, code execution) are parsed as literals here
  (`ast.literal_eval`); a prediction that is an expression is evaluated in the sandbox and its
  value compared here. Model text is never `eval`ed in this process.
Stricter than lcb_runner in one way: a returned object of a class the solution defined equals
nothing (lcb_runner would call its `__eq__`).
"""

from __future__ import annotations

import ast
import base64
import json
import pickle
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from benchmarks.livecodebench import (
    CodeExecutionProblem,
    CodeGenerationProblem,
    LiveCodeBench,
    TestOutputProblem,
)
from executor import Limits, Program
from trainer import harness
from trainer.values import Undecodable, decode, read_lines

PROMPTS_DIR = Path(__file__).parent / "prompts"
TEST_TIMEOUT_S = 6         # lcb_runner's per-test timeout (evaluation_timeout)
VALUE_TIMEOUT_S = 3        # lcb_runner's code-execution check timeout
MAX_PROGRAM_S = 120.0      # the executor's ceiling; lcb_runner's global one is (6 + 1) * tests + 5
CHECK_OUTPUT_BYTES = 16 << 20
STOP = ("###",)            # lcb_runner's default stop
# The card's sampling: n=10, temperature 0.2, top_p 0.95 (lcb_runner's defaults), 1,200 new tokens.
N_SAMPLES, TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 10, 0.2, 0.95, 1200

# -- prompts ------------------------------------------------------------------------------------

ONE_SHOT_SYSTEM = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate "
                   "and reliable responses to user instructions.")

REPAIR_SYSTEM = (
    "You are a helpful programming assistant and an expert Python programmer. You are helping a user write a "
    "program to solve a problem. The user has written some code, but it has some errors and is not passing the "
    "tests. You will help the user by first giving a concise (at most 2-3 sentences) textual explanation of what "
    "is wrong with the code. After you have pointed out what is wrong with the code, you will then generate a "
    "fixed version of the program. You must put the entired fixed program within code delimiters only for once.")
REPAIR_FORMAT = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                 "test on the sample inputs). Enclose your code within delimiters as follows.")

TEST_OUTPUT_SYSTEM = (
    "You are a helpful programming assistant and an expert Python programmer. You are helping a user to write a "
    "test case to help to check the correctness of the function. The user has written a input for the testcase. "
    "You will calculate the output of the testcase and write the whole assertion statement in the markdown code "
    "block with the correct output.")

EXECUTION_PROMPT = '''You are given a Python function and an assertion containing an input to the function. \
Complete the assertion with a literal (no unsimplified expressions, no function calls) containing the output when \
executing the provided code on the given input, even if the function is incorrect or incomplete. Do NOT output any \
extra information. Provide the full assertion with the correct output in [ANSWER] and [/ANSWER] tags, following the \
examples.

[PYTHON]
def repeatNumber(number : int) -> int:
    return number
assert repeatNumber(number = 17) == ??
[/PYTHON]
[ANSWER]
assert repeatNumber(number = 17) == 17
[/ANSWER]

[PYTHON]
def addCharacterA(string : str) -> str:
    return string + "a"
assert addCharacterA(string = "x9j") == ??
[/PYTHON]
[ANSWER]
assert addCharacterA(string = "x9j") == "x9ja"
[/ANSWER]

[PYTHON]
{code}
assert {input} == ??
[/PYTHON]
[ANSWER]
'''

# lcb_runner's code-execution imports (BASE_IMPORTS); numpy and pandas only where installed.
EXECUTION_IMPORTS = """\
from itertools import accumulate, chain, combinations, count, permutations, product, groupby, islice, \
repeat
from copy import deepcopy
from string import ascii_lowercase
from math import floor, log2, log10, sqrt, comb, gcd, ceil, inf, isqrt
from collections import defaultdict, deque, Counter
from bisect import bisect, bisect_left, bisect_right, insort
from heapq import heappush, heappop, heapify, merge
from functools import reduce, cache, lru_cache
from random import randrange, shuffle
from operator import itemgetter, sub
from re import search as re_search
from os.path import commonprefix
from typing import List, Tuple, Dict, Set, Optional, Union, Any, Callable, Iterable, Iterator, Generator
import copy
import string
import math
import collections
import bisect
import heapq
import functools
import random
import itertools
import operator
import re
try:
    import numpy as np
    import pandas as pd
except ImportError:
    pass
from math import log, prod
from collections import deque, defaultdict, Counter, OrderedDict
from itertools import accumulate, permutations, combinations, product, groupby, islice, chain, repeat, \
zip_longest, cycle
from functools import lru_cache, reduce, partial
from operator import iand
import sys
"""

_SHOTS: dict[str, list] = {}


def _shots(kind: str) -> list:
    if kind not in _SHOTS:
        _SHOTS[kind] = json.loads((PROMPTS_DIR / f"lcb_generation_{kind}.json").read_text())
    return _SHOTS[kind]


def codegen_prompt(problem: CodeGenerationProblem) -> tuple[str, str]:
    """(prompt, the answer's start the prompt holds): the StarCoderInstruct one-shot prompt."""
    starter = bool(problem.starter_code)
    example = _shots("func" if starter else "stdin")[0]

    def shot(question: str, sample_code: str) -> str:
        text = question + "\n\n"
        if starter:
            text += "### Starter Code\n" + sample_code + "\n\n"
        return text

    example_prompt = shot(example["question"], example.get("sample_code", ""))
    example_output = f"```python\n{example['answer']}\n```"
    prefix = "```python\n"
    prompt = (f"<|endoftext|>{ONE_SHOT_SYSTEM}\n\n### Instruction\n{example_prompt}\n\n### Response\n{example_output}"
              f"\n\n### Instruction\n{shot(problem.question_content, problem.starter_code)}\n\n### Response\n{prefix}")
    return prompt, prefix


def repair_feedback(metadata: dict) -> str:
    """lcb_runner's get_check_prompt, from the code-generation grade's metadata."""
    code = metadata.get("error_code")
    if code is None:
        return ""
    if code == -1:
        return f"The above code is incorrect and got the following compilation error.\n{metadata.get('error', '')}"
    if code == -2:
        return (f"The above code is incorrect and got a wrong answer.\nInput: {metadata.get('inputs', '')}\n"
                f"Generated Output: {metadata.get('output', '')}\nExpected: {metadata.get('expected', '')}")
    if code == -3:
        return (f"The above code is incorrect and got time limit exceeded.\n{metadata.get('error', '')}\n"
                f"Input: {metadata.get('inputs', '')}\nExpected: {metadata.get('expected', '')}")
    return (f"The above code is incorrect and got a runtime error.\nInput: {metadata.get('inputs', '')}\n"
            f"Expected: {metadata.get('expected', '')}\n{metadata.get('error', '')}")


def repair_prompt(question_content: str, code: str, metadata: dict) -> str:
    body = f"### Question:\n{question_content}\n\n### Answer:\n```python\n{code}\n```\n\n"
    body += repair_feedback(metadata) + "\n"
    body += f"### Format: {REPAIR_FORMAT}\n```python\n# YOUR CODE HERE\n```\n\n"
    body += "### Answer: (use the provided format with backticks)\n\n"
    return f"{REPAIR_SYSTEM}\n{body}"


def _function_name(starter_code: str) -> str | None:
    names = [n.name for n in ast.walk(ast.parse(starter_code)) if isinstance(n, ast.FunctionDef)]
    if len(names) > 1:
        raise ValueError(f"starter code defines {len(names)} functions; lcb_runner expects one")
    return names[0] if names else None


def test_output_prompt(problem: TestOutputProblem) -> str:
    call = ", ".join(problem.test.input.split("\n"))
    body = f"Problem:\n{problem.question_content}"
    body += f"Function:\n```\n{problem.starter_code}\n```\n"
    body += "Please complete the following test case:\n\n"
    body += f"```\nassert {_function_name(problem.starter_code)}({call}) == # TODO\n```\n"
    return f"{TEST_OUTPUT_SYSTEM}\n{body}"


def execution_prompt(problem: CodeExecutionProblem) -> str:
    return EXECUTION_PROMPT.format(code=problem.code, input=problem.input)


# -- extraction (lcb_runner's extraction_utils) -------------------------------------------------

def extract_code(output: str) -> str:
    """The code between the last two lines holding a fence; "" when there are fewer than two."""
    lines = output.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1:fences[-1]])


def extract_test_output(output: str) -> str:
    lines = output.split("\n")
    asserts = [i for i, line in enumerate(lines) if line.startswith("assert")]
    if asserts:
        return lines[asserts[-1]]
    opens = [i for i, line in enumerate(lines) if "```python" in line or "```Python" in line]
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if opens:
        fences = [opens[0]] + [i for i in fences if i > opens[0]]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[0] + 1:fences[1]])


def extract_execution(output: str) -> str:
    if "==" in output:
        output = output.split("==")[1].strip()
    if "[/ANSWER]" in output:
        output = output.split("[/ANSWER]")[0].strip()
    else:
        output = output.split("\n")[0].strip()
    return output.strip()


def predicted_expression(testcase: str) -> str | None:
    """Test output prediction: the right side of the answer's `assert ... == X` (lcb_runner's
    check_testcase_output), or the answer itself; None when it is not one it can judge."""
    if len(testcase.splitlines()) > 1:
        for line in testcase.splitlines():
            if line.startswith("#"):
                continue
            if "assert" in line:
                testcase = line
                break
    testcase = testcase.strip()
    if "assert" not in testcase:
        return testcase
    try:
        tree = ast.parse(testcase, mode="exec")
    except SyntaxError:
        return None
    if not tree.body or not isinstance(tree.body[0], ast.Assert):
        return None
    test = tree.body[0].test
    if not isinstance(test, ast.Compare) or not isinstance(test.ops[0], ast.Eq):
        return None
    return ast.get_source_segment(testcase, test.comparators[0])


# -- comparing (lcb_runner's rules, on reported outputs) ----------------------------------------

def _truncate(s, length: int = 300) -> str:
    s = s if isinstance(s, str) else str(s)
    return s if len(s) <= length else s[:length // 2] + "...(truncated) ..." + s[-length // 2:]


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(x) for x in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_matches(prediction: str, expected: str) -> tuple[bool, str]:
    got, want = _stripped_lines(prediction), _stripped_lines(expected)
    if len(got) != len(want):
        return False, "Wrong answer: mismatched output length"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        if da is None or db is None or da != db:
            return False, f"Wrong answer at output_line_idx={i}: {_truncate(a)} != {_truncate(b)}"
    return True, ""


def values_equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def literal(text: str):
    """(True, value) when `text` is a Python literal, else (False, None). Never evaluates code."""
    try:
        return True, ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


# -- programs and verdicts ------------------------------------------------------------------------

def _program(case: dict, key: str, timeout_s: float) -> Program:
    stdin = base64.b64encode(pickle.dumps(case))
    return Program(harness.source(), id=key, stdin=stdin,
                   limits=Limits(timeout_s=min(timeout_s, MAX_PROGRAM_S), memory_mb=4096,
                                 max_output_bytes=CHECK_OUTPUT_BYTES))


def codegen_program(problem: CodeGenerationProblem, code: str, key: str, test_timeout_s: float = TEST_TIMEOUT_S
                    ) -> Program:
    """The program that reports `code`'s output on each test input; no expected output in it."""
    tests = problem.tests
    if problem.functional:
        inputs = [[json.loads(line) for line in t.input.split("\n")] for t in tests]
        case = {"mode": "functional", "solution": code, "fn_name": problem.func_name, "inputs": inputs,
                "time_limit": test_timeout_s}
    else:
        case = {"mode": "stdio", "solution": code, "inputs": [t.input for t in tests], "time_limit": test_timeout_s}
    return _program(case, key, (test_timeout_s + 1) * len(tests) + 5)


@dataclass(frozen=True)
class Grade:
    passed: bool
    metadata: dict   # lcb_runner's shape: error_code -2 wrong answer, -3 timeout, -4 runtime error


def _failed(error_code: int, error: str, message: str, inputs="", expected="", **more) -> Grade:
    """A failed grade with lcb_runner's metadata."""
    return Grade(False, {"error_code": error_code, "error": error, "error_message": message, "inputs": inputs,
                         "expected": expected, **more})


def _shown(problem: CodeGenerationProblem, test) -> tuple[str, str]:
    """A test's input and expected output as lcb_runner's metadata shows them."""
    if problem.functional:
        return (_truncate([json.loads(line) for line in test.input.split("\n")]),
                _truncate(json.loads(test.output)))
    return _truncate(test.input), _truncate(test.output)


def codegen_verdict(problem: CodeGenerationProblem, stdout: bytes, truncated: bool, timed_out: bool) -> Grade:
    """lcb_runner's grade of one program, from the outputs it reported: the first test that
    fails decides, with its details."""
    tests = problem.tests
    report = read_lines(stdout, truncated)
    if report.problem:
        return _failed(-4, report.problem, "Runtime Error")
    for i, event in enumerate(report.events):
        if i >= len(tests):
            if event == ["done", len(tests)] and len(report.events) == len(tests) + 1:
                return Grade(True, {"execution time": 0})
            return _failed(-4, "lines after the last test", "Runtime Error")
        test = tests[i]
        if event[0] == "error" and len(event) == 4:
            where, name, text = event[1], event[2], event[3]
            if where == "load":
                return _failed(-4, text, f"Error during testing: {text}")
            if name == "timeout":
                return _failed(-3, "TimeoutException()", "Time Limit Exceeded", *_shown(problem, test))
            return _failed(-4, text, "Runtime Error", *_shown(problem, test))
        if event[0] != "out" or len(event) != 3 or event[1] != i:
            return _failed(-4, f"line {i + 1} is not test {i}'s output", "Runtime Error")
        try:
            out = decode(event[2])
        except Undecodable as exc:
            return _failed(-4, f"undecodable output ({exc})", "Runtime Error")
        if problem.functional:
            if isinstance(out, tuple):
                out = list(out)
            if not (_plain(out) and values_equal(out, json.loads(test.output))):
                inputs, expected = _shown(problem, test)
                return Grade(False, {"output": _truncate(out), "inputs": inputs, "expected": expected,
                                     "error_code": -2, "error_message": "Wrong Answer"})
        else:
            if not isinstance(out, str):
                return _failed(-4, "stdout is not text", "Runtime Error")
            ok, why = stdout_matches(out, test.output)
            if not ok:
                return Grade(False, {"output": _truncate(out), "inputs": _truncate(test.input),
                                     "expected": _truncate(test.output), "error_code": -2, "error_message": why})
    done = sum(1 for e in report.events if e and e[0] == "out")
    if timed_out:
        test = tests[min(done, len(tests) - 1)]
        return _failed(-3, "TimeoutException()", "Time Limit Exceeded", _truncate(test.input), _truncate(test.output))
    return _failed(-4, f"it stopped after {done} of {len(tests)} tests", "Runtime Error")


def _plain(x) -> bool:
    """A value made of builtin types only (decoded subclasses and opaque objects are not)."""
    if type(x) in (list, tuple, set, frozenset):
        return all(_plain(i) for i in x)
    if type(x) is dict:
        return all(_plain(k) and _plain(v) for k, v in x.items())
    if type(x).__module__ == "numpy" and getattr(x, "shape", None) == ():
        return True   # a numpy scalar compares as lcb_runner's `==` compares it
    return type(x) in (bool, int, float, complex, str, bytes, type(None))


def values_program(prelude: str, expressions: list[str], key: str) -> Program:
    """The values of `expressions` (model-written predictions) after `prelude`, reported."""
    case = {"mode": "values", "prelude": prelude, "expressions": expressions, "time_limit": VALUE_TIMEOUT_S}
    return _program(case, key, VALUE_TIMEOUT_S * (len(expressions) + 1) + 5)


def read_values(stdout: bytes, truncated: bool, n: int) -> list[tuple[bool, object]]:
    """(evaluated, value) per expression, from a values program's report."""
    out: list[tuple[bool, object]] = [(False, None)] * n
    report = read_lines(stdout, truncated)
    if report.problem:
        return out
    for event in report.events:
        if event[0] == "out" and len(event) == 3 and isinstance(event[1], int) and 0 <= event[1] < n:
            try:
                out[event[1]] = (True, decode(event[2]))
            except Undecodable:
                pass
    if not report.events or report.events[-1] != ["done", n]:
        return [(False, None)] * n   # cut short: nothing it claimed is trusted
    return out


# -- scoring ------------------------------------------------------------------------------------

CODEGEN_PREFIX = "```python\n"   # the one-shot prompt opens the answer's code block


def _key(task_id: str, index: int) -> str:
    return f"{task_id}\x1f{index}"


def score(bench: LiveCodeBench, samples: dict[str, list[str]], client, concurrency: int = 64,
          progress: bool = False, test_timeout_s: float = TEST_TIMEOUT_S) -> dict:
    """pass@k of `samples` (raw model outputs, lcb_runner's output_list) on one scenario."""
    from tqdm import tqdm

    from trainer.evaluate import check_coverage, run_programs

    problems = bench.problems
    check_coverage([p.task_id for p in problems], samples)
    records: list[dict] = []
    bar = tqdm(desc=f"eval {bench.scenario}", unit="program", disable=not progress, total=0)
    if bench.scenario in ("codegeneration", "selfrepair"):
        prefix = CODEGEN_PREFIX if bench.scenario == "codegeneration" else ""
        programs, codes = [], {}
        for p in problems:
            for i, out in enumerate(samples[p.task_id]):
                codes[_key(p.task_id, i)] = code = extract_code(prefix + out)
                programs.append(codegen_program(p, code, _key(p.task_id, i), test_timeout_s))
        bar.total = len(programs)
        results = run_programs(programs, client, concurrency, bar)
        for p in problems:
            for i, out in enumerate(samples[p.task_id]):
                r = results[_key(p.task_id, i)]
                grade = codegen_verdict(p, r.stdout, r.stdout_truncated, r.status.value == "TIMEOUT")
                records.append({"task_id": p.task_id, "sample": i, "passed": grade.passed, "counted": True,
                                "difficulty": p.difficulty, "completion": out, "code": codes[_key(p.task_id, i)],
                                "metadata": json.dumps(grade.metadata)})
    else:
        records = _score_predictions(bench, samples, client, concurrency, bar)
    bar.close()
    return {**summary(bench, records), "samples": records}


def _score_predictions(bench: LiveCodeBench, samples: dict[str, list[str]], client, concurrency: int, bar
                       ) -> list[dict]:
    """Test output prediction and code execution: literal predictions are compared here; the
    others are evaluated in the sandbox (one program per problem) and their values compared here."""
    from trainer.evaluate import run_programs

    records: list[dict] = []
    pending: dict[str, tuple[str, list[str], list[int]]] = {}   # task -> (prelude, expressions, sample indexes)
    expected: dict[str, tuple[bool, object]] = {}
    for p in bench.problems:
        if isinstance(p, TestOutputProblem):
            try:
                expected[p.task_id] = (True, json.loads(p.test.output))
            except ValueError:
                expected[p.task_id] = (False, None)
            prelude, first = "import ast\nimport json\nimport copy\n", []
        else:
            assert isinstance(p, CodeExecutionProblem)
            expected[p.task_id] = literal(p.output)
            prelude = f"{EXECUTION_IMPORTS}\n{p.code}\n"
            first = [] if expected[p.task_id][0] else [p.output]   # the dataset's output, evaluated first
        for i, out in enumerate(samples[p.task_id]):
            if isinstance(p, TestOutputProblem):
                prediction = predicted_expression(extract_test_output(out))
                counted = True
            else:
                prediction = extract_execution(out)
                counted = p.input not in prediction   # lcb_runner skips a prediction that repeats the call
            record = {"task_id": p.task_id, "sample": i, "passed": False, "counted": counted,
                      "difficulty": p.difficulty, "completion": out, "prediction": prediction}
            records.append(record)
            if prediction is None or not counted:
                continue
            is_literal, value = literal(prediction)
            if is_literal and expected[p.task_id][0]:
                record["passed"] = values_equal(value, expected[p.task_id][1])
            else:
                prelude_, expressions, indexes = pending.setdefault(p.task_id, (prelude, list(first), []))
                expressions.append(prediction)
                indexes.append(len(records) - 1)
    programs = [values_program(prelude, expressions, task_id)
                for task_id, (prelude, expressions, _) in pending.items()]
    bar.total = len(programs)
    results = run_programs(programs, client, concurrency, bar) if programs else {}
    for task_id, (_, expressions, indexes) in pending.items():
        r = results[task_id]
        values = read_values(r.stdout, r.stdout_truncated, len(expressions))
        offset = len(expressions) - len(indexes)
        want = expected[task_id] if not offset else values[0]
        for n, index in enumerate(indexes):
            ok, value = values[offset + n]
            records[index]["passed"] = bool(ok and want[0] and values_equal(value, want[1]))
            records[index]["evaluated_in_sandbox"] = True
    return records


def summary(bench: LiveCodeBench, records: list[dict]) -> dict:
    """pass@1 (and pass@5 with five samples or more) as lcb_runner computes it: per problem over
    its counted samples, then the mean over problems; also per difficulty."""
    from trainer.evaluate import pass_at_k

    per_task: dict[str, list[bool]] = {}
    difficulty: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for r in records:
        sizes[r["task_id"]] = sizes.get(r["task_id"], 0) + 1
        per_task.setdefault(r["task_id"], [])
        difficulty[r["task_id"]] = r["difficulty"]
        if r["counted"]:
            per_task[r["task_id"]].append(r["passed"])
    for task_id, graded in per_task.items():
        if not graded:   # every prediction skipped: lcb_runner grades them all False
            per_task[task_id] = [False] * sizes[task_id]
    n_min = min((len(v) for v in per_task.values()), default=0)
    ks = [k for k in (1, 5) if k <= n_min]

    def mean(tasks: list[str]) -> dict[str, float]:
        return {f"pass@{k}": sum(pass_at_k(len(per_task[t]), sum(per_task[t]), k) for t in tasks) / len(tasks)
                for k in ks} if tasks else {}

    tasks = [p.task_id for p in bench.problems]
    by_difficulty = {d: mean([t for t in tasks if difficulty[t] == d])
                     for d in sorted(set(difficulty.values()))}
    return {"benchmark": "livecodebench", "scenario": bench.scenario, "release": bench.release,
            "data": {"source": bench.source, "sha256_16": bench.data_hash},
            "grader": "lcb_runner's rules (nvidia-livecodebench 26.3), outputs reported by the sandbox",
            "verdicts": "decided outside the sandbox, from the outputs the program reported",
            "problems": len(tasks), "samples_per_problem": max(sizes.values(), default=0), **mean(tasks),
            "by_difficulty": by_difficulty}


# -- generation ---------------------------------------------------------------------------------

def repair_inputs(bench: LiveCodeBench, codegen: dict) -> tuple[list[tuple[str, int, str]], dict[str, list]]:
    """Self repair's prompts from a code-generation result (this module's `score` output): one
    per failed sample, as lcb_runner builds them; a sample that passed keeps its answer."""
    by_task: dict[str, list[dict]] = {}
    for r in codegen.get("samples", []):
        by_task.setdefault(r["task_id"], []).append(r)
    prompts: list[tuple[str, int, str]] = []
    outputs: dict[str, list] = {}
    for p in bench.problems:
        rows = sorted(by_task.get(p.task_id, []), key=lambda r: r["sample"])
        if not rows:
            raise ValueError(f"the code-generation results have no samples for {p.task_id}")
        outputs[p.task_id] = [None] * len(rows)
        for r in rows:
            if r["passed"]:
                outputs[p.task_id][r["sample"]] = CODEGEN_PREFIX + r["completion"]
            else:
                prompts.append((p.task_id, r["sample"],
                                repair_prompt(p.question_content, r["code"], json.loads(r["metadata"]))))
    return prompts, outputs


def prompt_for(problem) -> tuple[str, str]:
    """(prompt, what it holds of the answer) for the scenarios with one prompt per problem."""
    if isinstance(problem, CodeGenerationProblem):
        return codegen_prompt(problem)
    if isinstance(problem, TestOutputProblem):
        return test_output_prompt(problem), ""
    return execution_prompt(problem), ""


def generate(bench: LiveCodeBench, engine, n: int = N_SAMPLES, temperature: float = TEMPERATURE,
             top_p: float = TOP_P, max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0,
             codegen: dict | None = None, problems: list | None = None) -> dict[str, list[str]]:
    """Raw outputs per task. Self repair makes one repair per failed code-generation sample
    (lcb_runner: n=1 per prompt) and needs `codegen`."""
    from generator.backends import Sampling
    from generator.stage import stable_seed

    problems = bench.problems if problems is None else problems
    if bench.scenario == "selfrepair":
        if codegen is None:
            raise ValueError("self repair needs the code-generation results (--codegen-results)")
        sub = LiveCodeBench(bench.scenario, bench.release, problems, bench.source, bench.data_hash)
        prompts, outputs = repair_inputs(sub, codegen)
        made = engine.generate([text for _, _, text in prompts],
                               Sampling(n=1, temperature=temperature, max_new_tokens=max_new_tokens, stop=STOP,
                                        top_p=top_p),
                               [stable_seed(seed, "lcb-repair", f"{t}/{i}") for t, i, _ in prompts])
        for (task_id, index, _), out in zip(prompts, made, strict=True):
            outputs[task_id][index] = out[0].text
        return outputs
    texts = [prompt_for(p)[0] for p in problems]
    made = engine.generate(texts, Sampling(n=n, temperature=temperature, max_new_tokens=max_new_tokens, stop=STOP,
                                           top_p=top_p),
                           [stable_seed(seed, f"lcb-{bench.scenario}", p.task_id) for p in problems])
    return {p.task_id: [c.text for c in out] for p, out in zip(problems, made, strict=True)}
