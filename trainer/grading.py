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

The reference outputs are computed by running the reference solution in a separate process on
this machine (as EvalPlus does, and never inside the candidate's process, which could tamper
with it), and cached by the data file's hash.
"""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


# -- the check program ------------------------------------------------------------------------

_CHECK = r'''
import base64 as _b64, pickle as _pickle, sys as _sys
_CASE = _pickle.loads(_b64.b64decode(_sys.stdin.buffer.read()))


def _check():
    import builtins, contextlib, faulthandler, io, math, os, shutil, signal, subprocess
    try:
        import numpy as np
    except ImportError:
        np = None

    class _WriteOnly(io.StringIO):
        def read(self, *a, **k):
            raise IOError
        readline = readlines = read

        def readable(self, *a, **k):
            return False

    @contextlib.contextmanager
    def swallowed():
        stream = _WriteOnly()
        old_in = _sys.stdin
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            _sys.stdin = stream
            try:
                yield
            finally:
                _sys.stdin = old_in

    class _Timeout(Exception):
        pass

    @contextlib.contextmanager
    def limit(seconds):
        def on_alarm(signum, frame):
            raise _Timeout()
        signal.setitimer(signal.ITIMER_REAL, seconds)
        signal.signal(signal.SIGALRM, on_alarm)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def is_floats(x):
        if isinstance(x, float):
            return True
        if isinstance(x, (list, tuple)) and x:
            return all(isinstance(i, float) for i in x)
        if np is not None and isinstance(x, np.ndarray):
            return x.dtype == np.float64 or x.dtype == np.float32
        return False

    def poly(xs, x):
        return sum(c * math.pow(x, i) for i, c in enumerate(xs))

    def surface_area(base_edge, height):
        slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
        return round(base_edge ** 2 + 4 * (base_edge * slant) / 2)

    def digit_distance(a, b):
        sa, sb = str(a), str(b)
        width = max(len(sa), len(sb))
        return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(width), sb.zfill(width)))

    case = _CASE
    dataset, entry, atol, rules = case["dataset"], case["entry_point"], case["atol"], case["rules"]
    # The same functions EvalPlus's reliability guard disables.
    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod",
                 "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    builtins.open = None
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        _sys.modules[name] = None

    namespace = {}
    with swallowed():
        exec(compile(case["solution"], "<solution>", "exec"), namespace)
        fn = namespace[entry]
    for i, inp in enumerate(case["inputs"]):
        with limit(case["time_limits"][i]):
            with swallowed():
                out = fn(*inp)
        exp = case["expected"][i]
        exact = out == exp
        if rules == "0.2":
            if dataset == "mbpp":
                if entry == "are_equivalent":
                    exact = True
                elif entry == "sum_div":
                    exact = exact or out == 0
                elif entry in case["not_none"]:
                    exact = out == exp if isinstance(out, bool) else exp == (out is not None)
            if dataset == "humaneval" and entry == "find_zero":
                assert poly(*inp, out) <= atol
            if atol == 0 and is_floats(exp):
                atol = 1e-6
            if not exact and atol != 0:
                np.testing.assert_allclose(out, exp, atol=atol)
            else:
                assert exact
            continue
        if dataset == "mbpp":
            if entry == "are_equivalent":
                exact = True
            elif entry == "sum_div":
                exact = exact or out == 0
            elif entry == "surface_Area":
                exact = exact or abs(out - surface_area(*inp)) <= atol
            elif entry == "digit_distance_nums":
                exact = exact or out == digit_distance(*inp)
            elif entry in case["set_eq"]:
                exact = set(out) == set(exp)
            elif entry in case["not_none"]:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry == "find_zero":
            # 0.3.x checks the zero and skips the input's bookkeeping, so such a task never
            # passes there; reproduced as such.
            assert abs(poly(*inp, out)) <= atol
            raise AssertionError("evalplus 0.3 counts no find_zero input as passed")
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            assert type(out) == type(exp)
            if isinstance(exp, (list, tuple)):
                assert len(out) == len(exp)
            assert np.allclose(out, exp, rtol=1e-07, atol=atol)
        else:
            assert exact


try:
    _check()
except BaseException:
    import os as _os
    _os._exit(1)
'''


@dataclass(frozen=True)
class CheckProgram:
    code: str
    stdin: bytes
    timeout_s: float


def differential_program(problem, solution: str, oracle: Oracle, rules: str = "0.2") -> CheckProgram:
    """The program that judges `solution` on one oracle (base or plus) as EvalPlus `rules` would."""
    if rules not in RULES:
        raise ValueError(f"unknown EvalPlus rules {rules!r}: {', '.join(RULES)}")
    limits = time_limits(oracle.ref_times, rules)
    case = {"dataset": problem.dataset, "entry_point": problem.entry_point, "atol": problem.atol, "rules": rules,
            "solution": solution, "inputs": oracle.inputs, "expected": oracle.expected,
            "time_limits": limits, "set_eq": MBPP_SET_EQ, "not_none": MBPP_NOT_NONE}
    return CheckProgram(_CHECK, base64.b64encode(pickle.dumps(case)), total_timeout(limits))
