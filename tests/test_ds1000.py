"""DS-1000 through the executor: the authors' completion prompts, DS-1000's own postprocess and
test programs, verdicts in agreement with DS-1000's harness on tricky answers, problems of a
library the image lacks skipped and said so, per-library and per-perturbation scores."""

from __future__ import annotations

import json
import subprocess
import sys

import ds1000_data
import pytest

from benchmarks.ds1000 import load
from trainer import ds1000


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return load(str(ds1000_data.write(tmp_path_factory.mktemp("ds") / "ds1000.jsonl")))


def test_completion_prompts_follow_the_authors_shapes(bench):
    by_id = {p.problem_id: p for p in bench.problems}
    instruction, response = ds1000.completion_prompt(by_id[291].prompt)
    assert instruction == "I have a 2D numpy array\na = np.array([[1, 2], [3, 4]])\nHow do I sum each column?"
    # The response opens the setup code's block and stays in it: the answer continues the code.
    assert response == ("```python\nimport numpy as np\na = np.array([[1, 2], [3, 4]])\n"
                        "# result = ... # put solution in this variable\n# Solution\n")
    instruction, response = ds1000.completion_prompt(by_id[292].prompt)
    assert response.endswith("def f(a = example_a):\n    # Solution\n")   # the three hint lines give way
    assert "### BEGIN" not in response
    instruction, response = ds1000.completion_prompt(by_id[510].prompt)
    assert instruction.startswith("Write a solution to the following problem:\n```python\nimport numpy")
    assert response.endswith("# plot x\n# Solution\n")
    prompt = ds1000.prompt_for(by_id[291])
    assert "### Instruction\nI have a 2D" in prompt and prompt.endswith("# Solution\n")
    with pytest.raises(ValueError):
        ds1000.completion_prompt("Problem:\nno answer marker")


def test_postprocess_is_ds1000s():
    assert ds1000.postprocess("result = 1\n</code>\nmore") == "result = 1\n"
    assert ds1000.postprocess("```python\nresult = 1\n```\ntext") == "\nresult = 1\n"
    assert ds1000.postprocess("<code>result = 1\nEND SOLUTION\nx") == "result = 1"
    assert ds1000.cut_at_fence("result = 2\n```\nexplanation") == "result = 2\n"


ANSWERS = {
    "291": ["result = a.sum(axis=0)\n", "result = a.sum()\n", "result = np.array([4, 6])\n",
            "i = 0\nwhile i < 0:\n    i += 1\nresult = a.sum(axis=0)\n",        # test_string forbids while
            "result = a.sum(axis=0)\nexit()\n",                                 # exit() is disabled there
            "import sys\nresult = a.sum(axis=0)\nsys.exit(0)\n",                # leaving early is not passing
            "result = a.sum(axis=0)</code>\nignored", "```python\nresult = a.sum(axis=0)\n```",
            "result = undefined_name\n"],
    "292": ["    return np.sort(a)\n", "    return a\n", "    return sorted(a)\n"],
    "510": ["plt.plot(x)\n"],
}


def _ds1000_harness(programs: list[str]) -> list[bool]:
    """DS-1000's own harness semantics (its execution.py, from human-eval): the program is
    exec'd with `exit` and `quit` disabled, and passes when it raises nothing. Run in a child
    process on the fixture's own benign answers."""
    script = """
import builtins, json, sys
programs = json.load(sys.stdin)
out = []
for program in programs:
    saved = builtins.exit, builtins.quit
    builtins.exit = builtins.quit = None
    try:
        exec(program, {"__name__": "__main__"})
        out.append(True)
    except BaseException:
        out.append(False)
    finally:
        builtins.exit, builtins.quit = saved
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(programs), capture_output=True,
                          text=True, timeout=300, cwd="/tmp")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_verdicts_agree_with_ds1000s_harness_and_skips_are_reported(bench, client):
    result = ds1000.score(bench, {**ANSWERS, "0": ["result = pd.DataFrame()\n"]}, client)
    assert "0" in result["skipped"] and "pandas" in result["skipped"]["0"]   # the image has no pandas
    assert all(r["task_id"] != "0" for r in result["samples"])
    by_id = {p.task_id: p for p in bench.problems}
    ran = result["samples"]
    theirs = _ds1000_harness([by_id[r["task_id"]].test_program(ds1000.postprocess(r["completion"])) for r in ran])
    assert [r["passed"] for r in ran] == theirs
    assert [r["passed"] for r in result["samples"] if r["task_id"] == "291"] == \
        [True, False, False, False, False, False, True, True, False]   # [4, 6] is right on the first test only
    assert result["by_library"]["Numpy"]["problems"] == 2
    assert set(result["by_perturbation"]) >= {"Origin", "Surface"}
    assert result["judged_in_sandbox"]
