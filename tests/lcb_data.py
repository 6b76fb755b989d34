"""Small LiveCodeBench files in the released formats (code_generation_lite, test_generation,
execution-v2), with the awkward cases: private tests compressed as the release ships them
(base64 of zlib of a pickle of the JSON string), float outputs compared as decimals, trailing
whitespace, `sys.stdin.read()` against `input()`, tuples against lists, LeetCode starter code."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path


def compressed(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _stdin(i: str, o: str) -> dict:
    return {"input": i, "output": o, "testtype": "stdin"}


def _functional(i: str, o: str) -> dict:
    return {"input": i, "output": o, "testtype": "functional"}


CODEGEN = [
    {   # AtCoder: read two ints, print the sum; private tests compressed
        "question_title": "A - Sum", "question_content": "Print A+B.\n\nInput\n\nA B\n", "platform": "atcoder",
        "question_id": "abc300_a", "contest_id": "abc300", "contest_date": "2023-05-06T00:00:00",
        "starter_code": "", "difficulty": "easy",
        "public_test_cases": json.dumps([_stdin("1 2\n", "3\n")]),
        "private_test_cases": compressed([_stdin("10 20\n", "30\n"), _stdin("-5 5\n", "0  \n")]),
        "metadata": "{}",
    },
    {   # Codeforces: a float answer, compared as decimals (0.50 == 0.5)
        "question_title": "Half", "question_content": "Print n/2.", "platform": "codeforces",
        "question_id": "1850A", "contest_id": "1850", "contest_date": "2023-07-21T00:00:00",
        "starter_code": "", "difficulty": "medium",
        "public_test_cases": json.dumps([_stdin("1\n", "0.50\n")]),
        "private_test_cases": json.dumps([_stdin("3\n", "1.5\n"), _stdin("4\n", "2.000\n")]),
        "metadata": "{}",
    },
    {   # LeetCode: a method of Solution, JSON arguments one per line
        "question_title": "Two sum", "question_content": "Return the indices of the two numbers that add up to target.",
        "platform": "leetcode", "question_id": "3000", "contest_id": "weekly-contest-350",
        "contest_date": "2023-06-18T00:00:00",
        "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
        "difficulty": "easy",
        "public_test_cases": json.dumps([_functional("[2, 7, 11, 15]\n9", "[0, 1]")]),
        "private_test_cases": compressed([_functional("[3, 2, 4]\n6", "[1, 2]"), _functional("[3, 3]\n6", "[0, 1]")]),
        "metadata": json.dumps({"func_name": "twoSum"}),
    },
    {   # outside release_v1's window: April 2024
        "question_title": "Later", "question_content": "Print 1.", "platform": "atcoder",
        "question_id": "abc350_a", "contest_id": "abc350", "contest_date": "2024-04-20T00:00:00",
        "starter_code": "", "difficulty": "easy",
        "public_test_cases": json.dumps([_stdin("\n", "1\n")]), "private_test_cases": json.dumps([]),
        "metadata": "{}",
    },
]

# Right answers per problem, in the shapes models write them.
RIGHT = {
    "abc300_a": "a, b = map(int, input().split())\nprint(a + b)",
    "1850A": "import sys\nn = int(sys.stdin.read())\nprint(n / 2)",
    "3000": ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
             "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
             "                return (seen[target - x], i)\n            seen[x] = i\n"),
    "abc350_a": "print(1)",
}

TEST_GENERATION = [
    {"question_title": "Two sum", "question_content": "Return the indices of the two numbers.",
     "question_id": "3000", "contest_id": "weekly-contest-350", "contest_date": "2023-06-18T00:00:00",
     "difficulty": "easy", "test": json.dumps([_functional("[2, 7, 11, 15]\n9", "[0, 1]")]),
     "starter_code": "def twoSum(nums: List[int], target: int) -> List[int]:\n    pass", "function_name": "twoSum",
     "test_id": 0},
    {"question_title": "Count", "question_content": "Count the letters.", "question_id": "3001",
     "contest_id": "weekly-contest-351", "contest_date": "2023-06-25T00:00:00", "difficulty": "medium",
     "test": json.dumps([_functional('"abc"', "3")]),
     "starter_code": "def count(s: str) -> int:\n    pass", "function_name": "count", "test_id": 1},
]

EXECUTION = [
    {"question_id": "2777", "contest_id": "weekly-contest-340", "contest_date": "2023-04-09T00:00:00",
     "difficulty": "easy", "function_name": "f", "code": "def f(a, b):\n    return (a + b, a * b)",
     "input": "f(2, 3)", "output": "(5, 6)", "id": "sample_0", "problem_id": "sample_0", "numsteps": 10},
    {"question_id": "2778", "contest_id": "weekly-contest-340", "contest_date": "2023-04-09T00:00:00",
     "difficulty": "medium", "function_name": "f", "code": "def f(s):\n    return s.upper()",
     "input": "f(s = 'ab')", "output": "'AB'", "id": "sample_1", "problem_id": "sample_1", "numsteps": 5},
]


def write(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("codegeneration", CODEGEN), ("testoutputprediction", TEST_GENERATION),
                       ("codeexecution", EXECUTION)):
        path = directory / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[name] = path
    return paths
