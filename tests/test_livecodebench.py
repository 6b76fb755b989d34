"""LiveCodeBench through the executor: prompts byte for byte against lcb_runner (as
nvidia-livecodebench 26.3 packages it), extraction and verdicts in agreement with its own code on
tricky completions, private tests read without unpickling code, and the forging attempts that
its in-process grader would accept failing here."""

from __future__ import annotations

import base64
import importlib
import json
import pickle
import subprocess
import sys
import types
import zlib
from pathlib import Path

import lcb_data
import pytest

from benchmarks.livecodebench import decode_private_tests, load
from trainer import livecodebench as lcb

LCB_DIR = Path.home() / ".cache/selfalign/nvidia-livecodebench-26.3"


@pytest.fixture(scope="module")
def lcb_runner():
    """lcb_runner's own modules (installed by scripts/setup.sh without their API-client
    dependencies; `anthropic` is only imported for two constants of other model styles)."""
    if not (LCB_DIR / "livecodebench").is_dir():
        pytest.fail(f"{LCB_DIR} is missing: run scripts/setup.sh")
    anthropic = types.ModuleType("anthropic")
    anthropic.HUMAN_PROMPT, anthropic.AI_PROMPT = "\n\nHuman:", "\n\nAssistant:"  # pyright: ignore
    sys.modules.setdefault("anthropic", anthropic)
    sys.path.insert(0, str(LCB_DIR))

    def module(name: str):
        return importlib.import_module(f"livecodebench.{name}")

    yield types.SimpleNamespace(
        ce=module("prompts.code_execution"), sr=module("prompts.self_repair"),
        top=module("prompts.test_output_prediction"), ex=module("utils.extraction_utils"),
        metrics=module("evaluation.compute_test_output_prediction_metrics"),
        style=module("lm_styles").LMStyle.StarCoderInstruct,
        CodeGenerationProblem=module("benchmarks.code_generation").CodeGenerationProblem,
        CodeExecutionProblem=module("benchmarks.code_execution").CodeExecutionProblem,
        TestOutputPredictionProblem=module("benchmarks.test_output_prediction").TestOutputPredictionProblem)
    sys.path.remove(str(LCB_DIR))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return lcb_data.write(tmp_path_factory.mktemp("lcb"))


# -- data ---------------------------------------------------------------------------------------

def test_private_tests_decode_as_released_and_refuse_code():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_private_tests(lcb_data.compressed(tests)) == tests
    assert decode_private_tests(json.dumps(tests)) == tests

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))
    hostile = base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        decode_private_tests(hostile)


def test_loading_sorts_filters_by_date_and_keeps_lcb_fields(data, lcb_runner):
    bench = load("codegeneration", data_file=str(data["codegeneration"]), end_date="2024-03-31")
    assert [p.question_id for p in bench.problems] == ["1850A", "3000", "abc300_a"]
    everything = load("codegeneration", data_file=str(data["codegeneration"]))
    assert len(everything.problems) == 4
    # The same rows as lcb_runner's own dataclass reads them.
    for row in lcb_data.CODEGEN:
        theirs = lcb_runner.CodeGenerationProblem(**row)
        ours = next(p for p in everything.problems if p.question_id == row["question_id"])
        assert [(t.input, t.output, t.testtype.value) for t in theirs.public_test_cases + theirs.private_test_cases] \
            == [(t.input, t.output, t.testtype) for t in ours.tests]
        assert theirs.metadata.get("func_name") == ours.func_name
    with pytest.raises(ValueError, match="unknown LiveCodeBench scenario"):
        load("codegen", data_file=str(data["codegeneration"]))


# -- prompts, byte for byte -----------------------------------------------------------------------

def test_prompts_are_lcb_runners_byte_for_byte(data, lcb_runner):
    ours_by_id = {p.question_id: p for p in load("testoutputprediction",
                                                 data_file=str(data["testoutputprediction"])).problems}
    for row in lcb_data.TEST_GENERATION:
        theirs = lcb_runner.top.format_prompt_test_output(lcb_runner.TestOutputPredictionProblem(**row),
                                                          lcb_runner.style)
        assert lcb.test_output_prompt(ours_by_id[row["question_id"]]) == theirs
    for row in lcb_data.EXECUTION:
        theirs = lcb_runner.ce.format_prompt_execution(lcb_runner.CodeExecutionProblem(**row), lcb_runner.style)
        ours = lcb.execution_prompt(next(p for p in load("codeexecution", data_file=str(data["codeexecution"])).problems
                                         if p.id == row["id"]))
        assert ours == theirs
    metadata = [json.dumps({"error_code": -2, "output": "0\n", "inputs": "1 2\n", "expected": "3\n"}),
                json.dumps({"error_code": -3, "error": "TimeoutException()", "inputs": "1", "expected": "2"}),
                json.dumps({"error_code": -4, "error": "ValueError('x')", "inputs": "1", "expected": "2"}),
                json.dumps({"error_code": -1, "error": "SyntaxError"})]
    for meta in metadata:
        theirs = lcb_runner.sr.format_prompt_self_repair("Print A+B.", lcb_runner.style, "print(0)", False, meta)
        assert lcb.repair_prompt("Print A+B.", "print(0)", json.loads(meta)) == theirs


def test_one_shot_examples_are_lcb_runners(lcb_runner):
    shipped = LCB_DIR / "livecodebench/prompts/few_shot_examples/generation"
    for kind in ("func", "stdin"):
        assert json.loads((lcb.PROMPTS_DIR / f"lcb_generation_{kind}.json").read_text()) == \
            json.loads((shipped / f"{kind}.json").read_text())


def test_codegen_prompt_is_the_one_shot_instruct_prompt(data):
    bench = load("codegeneration", data_file=str(data["codegeneration"]))
    leetcode = next(p for p in bench.problems if p.functional)
    prompt, prefix = lcb.codegen_prompt(leetcode)
    assert prompt.startswith("<|endoftext|>You are an exceptionally intelligent coding assistant")
    assert prompt.endswith(f"### Instruction\n{leetcode.question_content}\n\n### Starter Code\n"
                           f"{leetcode.starter_code}\n\n\n\n### Response\n```python\n")
    assert prefix == "```python\n"
    stdin = next(p for p in bench.problems if not p.functional)
    assert "### Starter Code" not in lcb.codegen_prompt(stdin)[0]


# -- extraction -------------------------------------------------------------------------------------

OUTPUTS = [
    "```python\nprint(1)\n```",
    "Here:\n```python\nx = 1\n```\nand better:\n```python\nprint(2)\n```\nDone",
    "no fences at all",
    "```\nassert f(1) == 2\n```",
    "# comment\nassert f(1) == [1, 2]\nassert f(2) == 3",
    "assert f(x = 'a') == 'b'\n[/ANSWER]",
    "'ab' == 'ab'\nmore",
    "17",
    "```Python\nassert g() == {1: 2}\n```\n```\nother\n```",
]


def test_extraction_agrees_with_lcb_runner(lcb_runner):
    for text in OUTPUTS:
        assert lcb.extract_code(text) == lcb_runner.ex.extract_code(text, lcb_runner.style)
        assert lcb.extract_test_output(text) == lcb_runner.ex.extract_test_output_code(text, lcb_runner.style)
        assert lcb.extract_execution(text) == lcb_runner.ex.extract_execution_code(text, lcb_runner.style)


# -- verdicts, in agreement with lcb_runner's grader -----------------------------------------------

TRICKY = {
    "abc300_a": [
        lcb_data.RIGHT["abc300_a"],
        "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b, end='   \\n\\n')",   # trailing blanks
        "def main():\n    a, b = map(int, input().split())\n    print(a + b)\nif __name__ == '__main__':\n    main()",
        "a, b = map(int, input().split())\nprint(a + b)\nexit()",              # exit() after the answer
        "import sys\na, b = map(int, sys.stdin.readline().split())\nprint(a + b)\nsys.exit(0)",
        "print(3)",                                                              # right on the public test only
        "a, b = map(int, input().split())\nprint(a - b)",
        "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))",    # no buffer under lcb_runner
        "a, b = map(int, open(0).read().split())\nprint(a + b)",                # open(0) reads the input there
        "x = input()\ny = input()\nprint(x)",                                   # reads past the input
        "while True:\n    pass",
        "print(",                                                                # syntax error
    ],
    "1850A": [
        lcb_data.RIGHT["1850A"],
        "n = int(input())\nprint(f'{n / 2:.4f}')",                              # 0.5000 == 0.50 as decimals
        "n = int(input())\nprint(n // 2)",
        "n = int(input())\nprint(n / 2, 'x')",
        "n = int(input())\nprint(str(n / 2) + '0')",
    ],
    "3000": [
        lcb_data.RIGHT["3000"],                                                  # returns a tuple: counts as a list
        "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]",
        "class Solution:\n    def twoSum(self, nums, target):\n        return {0, 1}",
        "class Solution:\n    def other(self, nums, target):\n        return [0, 1]",
        "def twoSum(nums, target):\n    return [0, 1]",
        "class Solution:\n    def twoSum(self, nums, target):\n        raise ValueError(target)",
    ],
}


def _lcb_grades(problem_rows: list[dict], codes: dict[str, list[str]]) -> dict[str, list[bool]]:
    """lcb_runner's own grades of the fixture's completions (benign text written in this file),
    each in a child process as lcb_runner runs it."""
    script = f"""
import json, sys, types
sys.modules["anthropic"] = types.SimpleNamespace(HUMAN_PROMPT="", AI_PROMPT="")
sys.path.insert(0, {str(LCB_DIR)!r})
from livecodebench.benchmarks.code_generation import CodeGenerationProblem
from livecodebench.evaluation.compute_code_generation_metrics import check_correctness
rows, codes = json.load(sys.stdin)
out = {{}}
for row in rows:
    p = CodeGenerationProblem(**row)
    out[p.question_id] = []
    for code in codes[p.question_id]:
        res, meta = check_correctness(p.get_evaluation_sample(), code, timeout=2, debug=False)
        out[p.question_id].append(all(r is True for r in res))
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps([problem_rows, codes]),
                          capture_output=True, text=True, timeout=600, cwd="/tmp")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_codegen_verdicts_agree_with_lcb_runner_per_completion(data, client):
    rows = [r for r in lcb_data.CODEGEN if r["question_id"] in TRICKY]
    theirs = _lcb_grades(rows, TRICKY)
    bench = load("codegeneration", data_file=str(data["codegeneration"]), end_date="2024-03-31")
    # Completions as a model writes them after the one-shot prompt's opening fence.
    result = lcb.score(bench, {k: [c + "\n```" for c in v] for k, v in TRICKY.items()}, client, test_timeout_s=2)
    ours: dict[str, list[bool]] = {}
    for r in result["samples"]:
        ours.setdefault(r["task_id"], []).append(r["passed"])
    assert ours == theirs
    assert any(not ok for v in ours.values() for ok in v) and any(ok for v in ours.values() for ok in v)


def test_forged_answers_that_lcb_runners_in_process_grader_would_accept_fail_here(data, client):
    """lcb_runner compares a returned object with `==` in the process that ran the solution, so
    an object whose `__eq__` is always true, or a patched comparison, passes there. Here the
    value is reported and compared outside: both fail. So do forged report lines."""
    bench = load("codegeneration", data_file=str(data["codegeneration"]), end_date="2024-03-31")
    forged = {
        "3000": ["class Any:\n    def __eq__(self, o):\n        return True\n"
                 "class Solution:\n    def twoSum(self, nums, target):\n        return Any()\n```",
                 "import os\nclass Solution:\n    def twoSum(self, nums, target):\n"
                 "        os.write(1, b'[\"done\",3]\\n')\n        os._exit(0)\n```",
                 "class L(list):\n    def __eq__(self, o):\n        return True\n"
                 "class Solution:\n    def twoSum(self, nums, target):\n        return L()\n```"],
        "abc300_a": ["import sys\nsys.__stdout__.write('[\"out\",0,[\"s\",\"3\\\\n\"]]\\n[\"done\",3]\\n')\n"
                     "sys.__stdout__.flush()\nimport os\nos._exit(0)\n```",
                     "import builtins\nbuiltins.print = lambda *a, **k: None\nprint(1)\n```",
                     "import gc\nfor o in gc.get_objects():\n    if isinstance(o, list) and o and o[0] == '1 2\\n':\n"
                     "        o[:] = ['3\\n'] * len(o)\nprint(3)\n```"],
        "1850A": ["print(0.5)\n```", "print(0.5)\n```", "print(0.5)\n```"],
    }
    result = lcb.score(bench, forged, client, test_timeout_s=2)
    by_task = {}
    for r in result["samples"]:
        by_task.setdefault(r["task_id"], []).append(r["passed"])
    assert by_task["3000"] == [False, False, False]
    assert by_task["abc300_a"] == [False, False, False]


def test_predictions_are_judged_as_lcb_runner_judges_them_without_eval_here(data, client, lcb_runner):
    m = lcb_runner.metrics
    bench = load("testoutputprediction", data_file=str(data["testoutputprediction"]))
    answers = {"3000/0": ["```python\nassert twoSum([2, 7, 11, 15], 9) == [0, 1]\n```",
                          "assert twoSum([2], 9) == [1, 0]",
                          "assert twoSum(1) == list((0, 1))", "assert twoSum(1) == [0,\n1]", "no answer"],
               "3001/1": ["assert count('abc') == 3", "assert count('abc') == 4", "assert count('abc') == 1 + 2",
                          "assert count('abc') == (3)", "assert count('abc') == __import__('os').getpid() * 0 + 3"]}
    result = lcb.score(bench, answers, client)
    ours = {(r["task_id"], r["sample"]): r["passed"] for r in result["samples"]}
    for p in bench.problems:
        for i, text in enumerate(answers[p.task_id]):
            extracted = lcb_runner.ex.extract_test_output_code(text, lcb_runner.style)
            assert ours[(p.task_id, i)] == m.check_testcase_output(extracted, p.test.output), (p.task_id, i)

    execution = load("codeexecution", data_file=str(data["codeexecution"]))
    predictions = {"sample_0": ["assert f(2, 3) == (5, 6)\n[/ANSWER]", "(5, 7)", "tuple([5, 6])", "f(2, 3)"],
                   "sample_1": ["'AB'", "'ab'.upper()", "'A' + 'B'", "'ab'"]}
    result = lcb.score(execution, predictions, client)
    got = {(r["task_id"], r["sample"]): (r["passed"], r["counted"]) for r in result["samples"]}
    assert got[("sample_0", 0)] == (True, True) and got[("sample_0", 1)] == (False, True)
    assert got[("sample_0", 2)] == (True, True)
    assert got[("sample_0", 3)] == (False, False)   # repeats the call: lcb_runner does not count it
    assert [got[("sample_1", i)][0] for i in range(4)] == [True, True, True, False]
    # pass@1: sample_0 counts 3 predictions, 2 right; sample_1 3 of 4.
    assert result["pass@1"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    # lcb_runner's own code-execution check (it runs the prediction; these are this file's own).
    script = f"""
import json, sys
sys.path.insert(0, {str(LCB_DIR)!r})
from livecodebench.evaluation.compute_code_execution_metrics import evaluate_score
rows, predictions = json.load(sys.stdin)
out = {{}}
for row in rows:
    extracted = [p.split("==")[1].strip() if "==" in p else p for p in predictions[row["id"]]]
    extracted = [p.split("[/ANSWER]")[0].strip() if "[/ANSWER]" in p else p.split("\\n")[0].strip()
                 for p in extracted]
    out[row["id"]] = evaluate_score((extracted, (row["code"], row["input"], row["output"])))
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps([lcb_data.EXECUTION, predictions]),
                          capture_output=True, text=True, timeout=300, cwd="/tmp")
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for task_id, graded in theirs.items():   # lcb_runner leaves out the uncounted ones
        ours_counted = [got[(task_id, i)][0] for i in range(len(predictions[task_id])) if got[(task_id, i)][1]]
        assert ours_counted == graded, task_id


def test_self_repair_chains_from_the_models_code_generation(data, client):
    bench = load("codegeneration", data_file=str(data["codegeneration"]), end_date="2024-03-31")
    outputs = {"abc300_a": ["print(0)\n```", lcb_data.RIGHT["abc300_a"] + "\n```"],
               "1850A": ["print(0)\n```", "print(0)\n```"], "3000": ["x\n```", "x\n```"]}
    codegen = lcb.score(bench, outputs, client)
    repair = load("selfrepair", data_file=str(data["codegeneration"]), end_date="2024-03-31")
    prompts, kept = lcb.repair_inputs(repair, codegen)
    assert len(prompts) == 5   # every failed sample, and only those
    assert kept["abc300_a"][1] == "```python\n" + outputs["abc300_a"][1]
    first = next(text for task, i, text in prompts if task == "abc300_a")
    assert "got a wrong answer.\nInput: 1 2\n\nGenerated Output: 0\n\nExpected: 3\n" in first

    class Fixer:   # a model that answers every repair prompt with the right program
        def generate(self, prompts, sampling, seeds):
            from generator.backends import Completion

            out = []
            for text in prompts:
                task = next(t for t in lcb_data.RIGHT if lcb_data.CODEGEN[[r["question_id"] for r in
                            lcb_data.CODEGEN].index(t)]["question_content"] in text)
                out.append([Completion(f"Fixed:\n```python\n{lcb_data.RIGHT[task]}\n```", "stop")])
            return out
    repaired = lcb.generate(repair, Fixer(), codegen=codegen)
    result = lcb.score(repair, repaired, client)
    assert result["pass@1"] == 1.0
