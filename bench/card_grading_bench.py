"""Grading benchmark for the card's sampled benchmarks: programs/s and wall time of LiveCodeBench
code generation at the card's scale (release_v1: 400 problems, n=10), and of DS-1000's judge
(test and answer in two processes) against running DS-1000's program whole, on this machine's
executor.

LiveCodeBench's data is on the hub only, so the problems are made here in its released format
with the shape of release_v1: about half stdin (AtCoder, Codeforces) and half LeetCode, ~15 tests
each (its private tests vary from a handful to over a hundred). The answers are a mix like a
model's: right, wrong (wrong output on every test), a runtime error on the first test, and a few
that loop until lcb_runner's 6 s per-test timeout.

    python bench/card_grading_bench.py [--problems 400] [--n 10] [--tests 15] [--pool-size 2]

This is a benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def lcb_problems(n_problems: int, n_tests: int, rng: random.Random) -> list[dict]:
    from lcb_data import compressed

    rows = []
    for i in range(n_problems):
        tests = []
        functional = i % 2 == 1
        for _ in range(n_tests):
            a, b = rng.randint(-10**9, 10**9), rng.randint(-10**9, 10**9)
            if functional:
                tests.append({"input": f"{a}\n{b}", "output": json.dumps(a + b), "testtype": "functional"})
            else:
                tests.append({"input": f"{a} {b}\n", "output": f"{a + b}\n", "testtype": "stdin"})
        rows.append({
            "question_title": f"p{i}", "question_content": "Add two numbers.", "platform": "leetcode" if functional
            else "atcoder", "question_id": f"q{i:04d}", "contest_id": "c", "contest_date": "2023-06-01T00:00:00",
            "starter_code": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        "
            if functional else "",
            "difficulty": "easy", "public_test_cases": json.dumps(tests[:2]),
            "private_test_cases": compressed(tests[2:]),
            "metadata": json.dumps({"func_name": "add"} if functional else {})})
    return rows


ANSWERS = {
    "stdin": {"right": "a, b = map(int, input().split())\nprint(a + b)",
              "wrong": "a, b = map(int, input().split())\nprint(a - b)",
              "error": "raise ValueError('no')", "loop": "while True:\n    pass"},
    "functional": {"right": "class Solution:\n    def add(self, a, b):\n        return a + b",
                   "wrong": "class Solution:\n    def add(self, a, b):\n        return a - b",
                   "error": "class Solution:\n    def add(self, a, b):\n        raise ValueError('no')",
                   "loop": "class Solution:\n    def add(self, a, b):\n        while True:\n            pass"},
}
MIX = ["right"] * 60 + ["wrong"] * 30 + ["error"] * 8 + ["loop"] * 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--tests", type=int, default=15)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--ds1000-answers", type=int, default=40)
    args = parser.parse_args()

    from benchmarks.ds1000 import load as load_ds1000
    from benchmarks.livecodebench import load
    from executor.embedded import connect
    from executor.server import ServerConfig
    from trainer import ds1000
    from trainer import livecodebench as lcb

    rng = random.Random(0)
    work = Path(tempfile.mkdtemp(prefix="card-bench-"))
    data = work / "codegeneration.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lcb_problems(args.problems, args.tests, rng)))
    bench = load("codegeneration", data_file=str(data))
    samples = {p.task_id: [ANSWERS["functional" if p.functional else "stdin"][rng.choice(MIX)] + "\n```"
                           for _ in range(args.n)] for p in bench.problems}
    report: dict = {"machine": {"cpus": __import__("os").cpu_count()}, "pool_size": args.pool_size}
    with connect(None, server_config=ServerConfig(port=0, instance=None, pool_size=args.pool_size,
                                                 sandbox_profile="ds1000")) as client:
        start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        result = lcb.score(bench, samples, client)
        wall = time.perf_counter() - start
        programs = args.problems * args.n
        report["livecodebench_codegeneration"] = {
            "problems": args.problems, "n": args.n, "tests_per_problem": args.tests, "programs": programs,
            "wall_s": round(wall, 1), "programs_per_s": round(programs / wall, 1), "pass@1": round(result["pass@1"], 3),
            "trainer_cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu.ru_utime, 1)}
        print(json.dumps(report["livecodebench_codegeneration"]), file=sys.stderr)

        import ds1000_data

        ds = load_ds1000(str(ds1000_data.write(work / "ds1000.jsonl")))
        numpy_problem = next(p for p in ds.problems if p.task_id == "291")
        answers = {"291": ["result = a.sum(axis=0)\n"] * args.ds1000_answers}
        timings = {}
        for name, whole in (("judge_and_child", False), ("whole_program", True)):
            programs = [ds1000.test_program(numpy_problem, a, f"291\x1f{i}", whole=whole)
                        for i, a in enumerate(answers["291"])]
            start = time.perf_counter()
            results = list(client.execute_many(programs))
            wall = time.perf_counter() - start
            passed = sum(ds1000.verdict(r.stdout, r.stdout_truncated, r.exit_code == 0)[0] for r in results)
            timings[name] = {"wall_s": round(wall, 2), "passed": passed,
                             "programs_per_s": round(args.ds1000_answers / wall, 2)}
        report["ds1000_numpy_problem"] = {"answers": args.ds1000_answers, **timings}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
