"""Our HumanEval+/MBPP+ verdicts equal EvalPlus's own, sample by sample.

Crafted tasks in the published `HumanEvalPlus.jsonl` / `MbppPlus.jsonl` schema cover every rule
where a hand-written grader tends to differ: a tuple where a list is expected, per-task atol and
the float default, an int where a float is expected, the `find_zero` oracle, MBPP's set and
not-None oracles, MBPP+ inputs stored as JSON that must become tuples again, `__main__` blocks,
per-input time limits, and the disabled functions. EvalPlus's `untrusted_check` judges each
sample on this machine; ours runs through the executor; the verdicts must match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.problems import load_benchmark
from trainer.evaluate import Sample, score

# EvalPlus releases to compare with, each installed on its own by scripts/setup.sh (no deps).
EVALPLUS_TARGETS = {"0.3": "0.3.1", "0.2": "0.2.1"}


def evalplus_path(release: str) -> Path:
    return Path.home() / ".cache" / "selfalign" / f"evalplus-{release}"


HUMANEVAL_TASKS = [
    {"task_id": "HumanEval/900", "entry_point": "pair",
     "prompt": 'def pair(a, b):\n    """Return [a, b] as a list."""\n',
     "canonical_solution": "    return [a, b]\n", "base_input": [[1, 2]], "plus_input": [[3, 4], [0, 0]], "atol": 0},
    {"task_id": "HumanEval/901", "entry_point": "half",
     "prompt": 'def half(x):\n    """Half of x."""\n',
     "canonical_solution": "    return x / 2\n", "base_input": [[3]], "plus_input": [[1e-7], [10]], "atol": 0},
    {"task_id": "HumanEval/902", "entry_point": "third",
     "prompt": 'def third(x):\n    """A third of x, to 1e-3."""\n',
     "canonical_solution": "    return x / 3\n", "base_input": [[1]], "plus_input": [[2]], "atol": 1e-3},
    {"task_id": "HumanEval/903", "entry_point": "find_zero",
     "prompt": 'import math\n\n\ndef poly(xs, x):\n    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n\n'
               'def find_zero(xs):\n    """A zero of the polynomial xs."""\n',
     "canonical_solution": "    lo, hi = -100.0, 100.0\n    while hi - lo > 1e-10:\n        mid = (lo + hi) / 2\n"
                           "        if poly(xs, lo) * poly(xs, mid) > 0:\n            lo = mid\n        else:\n"
                           "            hi = mid\n    return lo\n",
     "base_input": [[[-2, 1]]], "plus_input": [[[-6, 11, -6, 1]]], "atol": 1e-6},
    {"task_id": "HumanEval/904", "entry_point": "halve",
     "prompt": 'def halve(x):\n    """Half of x."""\n',
     "canonical_solution": "    return x / 2\n", "base_input": [[10.0000002]], "plus_input": [[4.0000000002]],
     "atol": 0},
]

MBPP_TASKS = [
    {"task_id": "Mbpp/2", "entry_point": "similar_elements",
     "prompt": '"""\nWrite a function to find the shared elements from the given two lists.\n'
               'assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"""\n',
     "canonical_solution": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n",
     "base_input": [[[3, 4, 5, 6], [5, 7, 4, 10]]], "plus_input": [[[1, 2], [2, 1]]], "atol": 0},
    {"task_id": "Mbpp/900", "entry_point": "check_str",
     "prompt": '"""\nWrite a function to check whether the string starts with a vowel.\n'
               'assert check_str("annie")\n"""\n',
     "canonical_solution": "import re\ndef check_str(s):\n    return re.search('^[aeiouAEIOU]', s)\n",
     "base_input": [["annie"]], "plus_input": [["dawood"], ["Else"]], "atol": 0},
]

CANDIDATES = {
    "HumanEval/900": {
        "right": "    return [a, b]\n",
        "tuple": "    return (a, b)\n",                       # EvalPlus: a tuple is not a list
        "main_block": "    return [a, b]\n\nif __name__ == '__main__':\n    raise SystemExit(1)\n",
        "reads_stdin": "    input()\n    return [a, b]\n",
        "opens_file": "    open('x', 'w')\n    return [a, b]\n",
        "exits": "    exit(0)\n",
        "slow": "    import time\n    time.sleep(1.5)\n    return [a, b]\n",
        # a list subclass: EvalPlus compares it as a list
        "list_subclass": "    class L(list):\n        pass\n    return L([a, b])\n",
        "namedtuple": "    import collections\n    return collections.namedtuple('P', 'a b')(a, b)\n",
    },
    "HumanEval/901": {
        "right": "    return x / 2\n",
        "close": "    return x / 2 + 5e-7\n",                   # within the default 1e-6 for floats
        "far": "    return x / 2 + 1e-4\n",
        "int": "    return x // 2 if x % 2 == 0 else x / 2\n",   # an int where a float is expected
        "numpy_equal": "    import numpy\n    return numpy.float64(x) / 2\n",
        "numpy_close": "    import numpy\n    return numpy.float64(x) / 2 + 5e-7\n",   # 0.3: not a float
        "huge_int": "    return x / 2 if x != 10 else 10 ** 5000\n",
    },
    "HumanEval/902": {
        "right": "    return x / 3\n",
        "within_atol": "    return round(x / 3, 4)\n",
        "outside_atol": "    return round(x / 3, 1)\n",
    },
    "HumanEval/903": {
        "right": "    return 2.0 if xs == [-2, 1] else 1.0\n",  # any zero will do
        "other_zero": "    return 2.0 if xs == [-2, 1] else 3.0\n",
        "wrong": "    return 0.5\n",
    },
    "HumanEval/904": {
        "right": "    return x / 2\n",
        "int_close": "    return round(x / 2)\n",                  # 0.2: close enough; 0.3: not a float
    },
    "Mbpp/2": {
        "right": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n",
        "as_list": "def similar_elements(a, b):\n    return [x for x in b if x in a]\n",  # compared as a set
        # right only when the JSON lists came back as tuples
        "needs_tuples": "def similar_elements(a, b):\n    return tuple(set(a) & set(b)) if type(a) is tuple else ()\n",
        "wrong": "def similar_elements(a, b):\n    return (a[0],)\n",
    },
    "Mbpp/900": {
        "right": "import re\ndef check_str(s):\n    return re.search('^[aeiouAEIOU]', s)\n",
        "bool": "def check_str(s):\n    return s[:1].lower() in 'aeiou'\n",
        "always": "def check_str(s):\n    return 'yes'\n",
    },
}


# Runs in a separate Python with one EvalPlus release importable: its own ground truth and checker.
_THEIR_CHECK = r'''
import json, sys
from evalplus.data.mbpp import mbpp_deserialize_inputs
from evalplus.eval import untrusted_check
from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
from evalplus.gen.util import trusted_exec
rows, candidates, dataset = json.load(sys.stdin)
verdicts = []
for row in rows:
    task_id, entry = row["task_id"], row["entry_point"]
    inputs = {part: row[part + "_input"] for part in ("base", "plus")}
    if dataset == "mbpp":
        inputs = {part: mbpp_deserialize_inputs(task_id, v) for part, v in inputs.items()}
    expected = {part: trusted_exec(row["prompt"] + row["canonical_solution"], inputs[part], entry, record_time=True,
                                   output_not_none=entry in MBPP_OUTPUT_NOT_NONE_TASKS) for part in inputs}
    for name, text in candidates[task_id].items():
        solution = text if dataset == "mbpp" else row["prompt"] + text
        ok = {}
        for part in ("base", "plus"):
            stat, _ = untrusted_check(dataset, solution, inputs[part], entry, expected[part][0], row["atol"],
                                      expected[part][1], fast_check=True)
            ok[part] = stat in ("pass", "success")
        verdicts.append([task_id, name, ok["base"], ok["base"] and ok["plus"]])
print(json.dumps(verdicts))
'''


def _evalplus_verdicts(rows: list[dict], dataset: str, release: str) -> dict[tuple[str, str], tuple[bool, bool]]:
    path = evalplus_path(EVALPLUS_TARGETS[release])
    assert (path / "evalplus").is_dir(), f"evalplus {EVALPLUS_TARGETS[release]} is not in {path}: run scripts/setup.sh"
    env = {**os.environ, "PYTHONPATH": str(path)}
    proc = subprocess.run([sys.executable, "-c", _THEIR_CHECK], input=json.dumps([rows, CANDIDATES, dataset]),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {(t, n): (b, p) for t, n, b, p in json.loads(proc.stdout)}


def _our_verdicts(path: Path, name: str, client, tmp_path, rules: str) -> dict[tuple[str, str], tuple[bool, bool]]:
    benchmark = load_benchmark(name, str(path))
    samples, names = {}, {}
    for p in benchmark.problems:
        cands = CANDIDATES[p.task_id]
        samples[p.task_id] = [Sample(text, whole=p.dataset == "mbpp") for text in cands.values()]
        names[p.task_id] = list(cands)
    os.environ["SELFALIGN_CACHE"] = str(tmp_path / "cache")
    result = score(benchmark, samples, client, rules=rules)
    assert result["grader"] == f"evalplus-{rules} rules"
    return {(r["task_id"], names[r["task_id"]][r["sample"]]): (r["passed"], r["plus_passed"])
            for r in result["samples"]}


@pytest.mark.parametrize("rules", ["0.2", "0.3"])
@pytest.mark.parametrize("name,rows,dataset", [("humaneval+", HUMANEVAL_TASKS, "humaneval"),
                                               ("mbpp+", MBPP_TASKS, "mbpp")])
def test_verdicts_equal_evalplus(name, rows, dataset, rules, client, tmp_path):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    theirs = _evalplus_verdicts(rows, dataset, rules)
    ours = _our_verdicts(path, name, client, tmp_path, rules)
    assert ours == theirs
    # The cases must exercise both verdicts, or the comparison proves little.
    assert set(theirs.values()) >= {(True, True), (False, False)}
