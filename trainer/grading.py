"""How a solution is judged: HumanEval's own check, or EvalPlus's differential testing.

EvalPlus (HumanEval+, MBPP+) judges a solution by calling its entry point on every base and
plus input and comparing with the reference solution's outputs. Its rules changed between
releases, so the check program follows one release's rules exactly, named by `rules`:

- `"0.2"` (evalplus 0.2.x, the releases of the model card's time; the original pinned a git
  commit of April 2024): per-input limit `max(0.1, 2 x the reference's time)`; a float answer
  passes with `numpy.testing.assert_allclose(out, expected, atol=atol)` (atol 1e-6 when the task
  has none); MBPP's not-None and Mbpp/164, 295 oracles; `find_zero` must bring the polynomial
  to at most atol and match the reference's zero.
- `"0.3"` (evalplus 0.3.x, current): the rules below.

The rules of 0.3.x:

- The solution is `exec`ed in a fresh namespace (so `if __name__ == "__main__":` blocks do not
  run), with output swallowed and standard input unreadable, after the same destructive
  functions are disabled (`os.kill`, `os.system`, `open`, `shutil.rmtree`, `subprocess.Popen`,
  `exit`, ...), so a solution that needs them fails here as it fails there.
- Each input gets `max(1.0, 4.0 x the reference's time)` seconds; the whole check gets their sum
  (at most 60 s) plus two seconds. The first failing input ends the check (EvalPlus's default).
- An output is right if it equals the expected one; otherwise, when the task has an `atol` or the
  expected value is a float or a list of floats (then atol 1e-6), if it has the same type and
  length and `numpy.allclose(out, expected, rtol=1e-07, atol=atol)`. Special oracles: MBPP tasks
  whose answer is compared as a set or only as "not None", Mbpp/164, 295, 558 and 581, and
  HumanEval/32 (`find_zero`: the polynomial at the answer must be within atol of zero).
- MBPP+ inputs are stored in JSON; the tasks whose inputs are tuples, sets or complex numbers
  get them back (`mbpp_deserialize`).

Where the verdict is decided: not in the sandbox. The check program (`trainer.harness`) only
calls the solution on each input and reports the outputs in an exact, type-strict encoding; the
expected outputs never enter its process. The comparison above runs here, in the trainer, on
decoded plain data (`trainer.values`), so nothing the solution does in its own process (patching
`os._exit` or `numpy.allclose`, emptying the input list, an `__eq__` that is always true, reading
or overwriting the expected value from a caller's frame, a trace function) reaches it. Fewer
outputs than inputs, or no closing line, is a failure. EvalPlus itself compares in the
solution's process and is fooled by the last four; on honest samples the verdicts are the same
(tests/test_evalplus_equivalence.py).

The reference outputs are computed by running the reference solution in a separate process on
this machine (as EvalPlus does, and never inside the candidate's process, which could tamper
with it), and cached by the data file's hash.
"""

from __future__ import annotations

import base64
import math
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import harness
from trainer.values import Undecodable, decode, read_lines

MIN_TIME_LIMIT = 1.0
TIME_LIMIT_FACTOR = 4.0
MAX_TOTAL_TIME = 60.0

MBPP_SET_EQ = ("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
               "intersection_array", "find_dissimilar", "Diff")
MBPP_NOT_NONE = ("check_str", "text_match_three", "text_starta_endb")

@dataclass(frozen=True)
class Oracle:
    """What a differential check needs: inputs, the reference's outputs and run times."""
    inputs: list
    expected: list
    ref_times: list[float]


RULES = {"0.2": (0.1, 2.0), "0.3": (MIN_TIME_LIMIT, TIME_LIMIT_FACTOR)}   # (minimum limit, factor)


def time_limits(ref_times: list[float], rules: str = "0.3") -> list[float]:
    minimum, factor = RULES[rules]
    return [max(minimum, factor * t) for t in ref_times]


def total_timeout(limits: list[float]) -> float:
    """The wall-clock limit of one check program (EvalPlus's join timeout)."""
    return min(MAX_TOTAL_TIME, sum(limits)) + 2.0


# -- reference outputs ------------------------------------------------------------------------

_REFERENCE_RUNNER = r'''
import copy, pickle, sys, time
tasks = pickle.load(sys.stdin.buffer)
out = {}
for task_id, code, entry, inputs, not_none in tasks:
    g = {}
    exec(compile(code, "<reference " + task_id + ">", "exec"), g)
    fn = g[entry]
    values, times = [], []
    for inp in inputs:
        inp = copy.deepcopy(inp)
        start = time.time()
        value = fn(*inp)
        times.append(time.time() - start)
        values.append(value is not None if not_none else value)
    out[task_id] = (values, times)
pickle.dump(out, sys.stdout.buffer)
'''


def reference_outputs(problems, dataset_hash: str, cache_dir: str | Path | None = None) -> dict[str, dict]:
    """{task_id: {"base": Oracle, "plus": Oracle}} from the reference solutions, run in a separate
    Python process on this machine and cached under the data file's hash."""
    cache_dir = Path(cache_dir or os.environ.get("SELFALIGN_CACHE", Path.home() / ".cache" / "selfalign"))
    cache = cache_dir / "evalplus" / f"{dataset_hash}-v2.pkl"
    if cache.exists():
        with open(cache, "rb") as f:
            return pickle.load(f)
    tasks = []
    for p in problems:
        not_none = p.dataset == "mbpp" and p.entry_point in MBPP_NOT_NONE
        for part in ("base", "plus"):
            tasks.append((f"{p.task_id}\x1f{part}", p.prompt + p.canonical_solution, p.entry_point,
                          getattr(p, f"{part}_input"), not_none))
    proc = subprocess.run([sys.executable, "-c", _REFERENCE_RUNNER], input=pickle.dumps(tasks),
                          capture_output=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference solutions failed to run: {proc.stderr.decode()[-2000:]}")
    raw = pickle.loads(proc.stdout)
    result: dict[str, dict] = {}
    for p in problems:
        result[p.task_id] = {}
        for part in ("base", "plus"):
            values, times = raw[f"{p.task_id}\x1f{part}"]
            result[p.task_id][part] = Oracle(getattr(p, f"{part}_input"), values, times)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, cache)
    return result


# -- the check program: outputs only --------------------------------------------------------------

# Room for the outputs of a thousand plus inputs; the server's own maximum.
CHECK_OUTPUT_BYTES = 16 << 20


@dataclass(frozen=True)
class CheckProgram:
    code: str
    stdin: bytes
    timeout_s: float


def differential_program(problem, solution: str, oracle: Oracle, rules: str = "0.2") -> CheckProgram:
    """The program that reports `solution`'s outputs on one oracle's inputs (base or plus). It
    carries the inputs and time limits, never the expected outputs."""
    if rules not in RULES:
        raise ValueError(f"unknown EvalPlus rules {rules!r}: {', '.join(RULES)}")
    limits = time_limits(oracle.ref_times, rules)
    case = {"mode": "differential", "entry_point": problem.entry_point, "solution": solution,
            "inputs": oracle.inputs, "time_limits": limits}
    return CheckProgram(harness.source(), base64.b64encode(pickle.dumps(case)), total_timeout(limits))


def differential_verdict(problem, oracle: Oracle, rules: str, stdout: bytes, truncated: bool = False
                         ) -> tuple[bool, str]:
    """(passed, why not) of one check program, from what it wrote: every input's output, in
    order, each right by `rules`, then the closing line."""
    report = read_lines(stdout, truncated)
    if report.problem:
        return False, f"the check's output is not the harness's: {report.problem}"
    n = len(oracle.inputs)
    events = report.events
    for i, event in enumerate(events):
        if event[0] == "error" and len(event) == 3:
            where = "loading the solution" if event[1] == "load" else f"input {event[1]}"
            return False, f"{event[2]} on {where}"
        if i == n:
            if event != ["done", n]:
                return False, f"line {i + 1}: expected the closing line after {n} outputs"
            if len(events) > n + 1:
                return False, "lines after the closing line"
            return True, ""
        if event[0] == "done":
            break   # a closing line before the last output: the input list was tampered with
        if event[0] != "out" or len(event) != 3 or event[1] != i:
            return False, f"line {i + 1}: expected the output of input {i}"
        try:
            out = decode(event[2])
        except Undecodable as exc:
            return False, f"input {i}: undecodable output ({exc})"
        if not outputs_match(problem, rules, oracle.inputs[i], out, oracle.expected[i]):
            return False, f"wrong output on input {i}"
    outputs = sum(1 for event in events if event[0] == "out")
    return False, f"it stopped after {min(outputs, n)} of {n} outputs"


def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _surface_area(base_edge, height):
    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 4 * (base_edge * slant) / 2)


def _digit_distance(a, b):
    sa, sb = str(a), str(b)
    width = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(width), sb.zfill(width), strict=True))


def _is_floats(x) -> bool:
    import numpy as np

    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    if isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


def outputs_match(problem, rules: str, inp: Any, out: Any, exp: Any) -> bool:
    """One output against the reference's, by EvalPlus `rules` (see the module doc). `out` is
    decoded data; any exception while comparing is a failure, as in EvalPlus."""
    try:
        _compare(problem.dataset, problem.entry_point, problem.atol, rules, inp, out, exp)
        return True
    except Exception:
        return False


def _compare(dataset: str, entry: str, atol: float, rules: str, inp: Any, out: Any, exp: Any) -> None:
    import numpy as np

    exact = out == exp
    if rules == "0.2":
        if dataset == "mbpp":
            if entry == "are_equivalent":
                exact = True
            elif entry == "sum_div":
                exact = exact or out == 0
            elif entry in MBPP_NOT_NONE:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry == "find_zero":
            assert _poly(inp[0], out) <= atol
        if atol == 0 and _is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            np.testing.assert_allclose(out, exp, atol=atol)
        else:
            assert exact
        return
    if dataset == "mbpp":
        if entry == "are_equivalent":
            exact = True
        elif entry == "sum_div":
            exact = exact or out == 0
        elif entry == "surface_Area":
            exact = exact or abs(out - _surface_area(*inp)) <= atol
        elif entry == "digit_distance_nums":
            exact = exact or out == _digit_distance(*inp)
        elif entry in MBPP_SET_EQ:
            exact = set(out) == set(exp)
        elif entry in MBPP_NOT_NONE:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if dataset == "humaneval" and entry == "find_zero":
        # 0.3.x checks the zero and skips the input's bookkeeping, so such a task never passes
        # there; reproduced as such.
        assert abs(_poly(inp[0], out)) <= atol
        raise AssertionError("evalplus 0.3 counts no find_zero input as passed")
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        assert type(out) is type(exp)
        if isinstance(exp, (list, tuple)):
            assert len(out) == len(exp)  # pyright: ignore[reportArgumentType]  (out may be anything)
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact
