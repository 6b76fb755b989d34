"""The bench's baseline: the original SelfCodeAlign filter's way of running a program
(executor/original_filter.py), run as the bench runs it. It must keep the original's behaviour,
defects included, or the bench's ratios would compare against something else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAMS = {
    "plain": "assert sum([1, 2, 3]) == 6\n",
    "wrong": "assert sum([1, 2, 3]) == 7\n",
    # exec() inside a function: the helper is a local of that call, invisible to the function
    # that uses it, so this correct program fails (the defect our executor does not have).
    "helper": "def double(x):\n    return 2 * x\n\ndef quadruple(x):\n    return double(double(x))\n\n"
              "assert quadruple(3) == 12\n",
    "module_import": "import math\n\ndef area(r):\n    return math.pi * r * r\n\nassert area(1) > 3\n",
    # EvalPlus's reliability_guard: destructive functions are None
    "guarded": "import os\nos.system('true')\n",
    "noisy": "for i in range(1000):\n    print('x' * 100)\nassert True\n",
}


def test_the_original_filters_runner_keeps_its_semantics_and_its_defect():
    request = {"concurrency": 2, "programs": [[name, code] for name, code in PROGRAMS.items()]}
    proc = subprocess.run([sys.executable, "-m", "executor.original_filter"], input=json.dumps(request),
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    passed = {name: ok for name, ok, _ in answer["results"]}
    assert passed == {"plain": True, "wrong": False, "helper": False, "module_import": False,
                      "guarded": False, "noisy": True}
    assert answer["seconds"] > 0 and all(latency > 0 for _, _, latency in answer["results"])
