"""A newcomer's first mistakes get one clear line and a non-zero exit, never a made-up result."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, free_port


def _run(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_eval_against_an_unreachable_executor_scores_nothing(tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = _run("trainer", "eval", "--canonical", "--output", tmp_path / "r.json", "--executor", dead, "--limit", 3)
    assert proc.returncode == 1 and f"executor {dead} is not reachable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "pass@1" not in proc.stdout
    assert not (tmp_path / "r.json").exists()
    assert time.monotonic() - started < 60   # fails fast, not after the client's retry window


def test_run_batch_against_an_unreachable_executor_writes_no_row(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "code": "print(1)"}) + "\n")
    proc = _run("executor", "run-batch", inp, "--output", tmp_path / "out.jsonl", "--target",
                f"127.0.0.1:{free_port()}", "--no-progress")
    assert proc.returncode == 1 and "is not reachable" in proc.stderr and "nothing was run" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""


def test_run_batch_resume_runs_sandbox_errors_again(tmp_path, target):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "code": f"print({i!r})"}) + "\n" for i in ("a", "b", "c")))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "a", "status": "PASSED", "stdout": "a\n"}) + "\n"
                   + json.dumps({"id": "b", "status": "SANDBOX_ERROR", "reason": "the engine went away"}) + "\n")
    proc = _run("executor", "run-batch", inp, "--output", out, "--target", target, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["a", "b", "c"]            # one row per id
    assert {r["id"]: r["status"] for r in rows} == {"a": "PASSED", "b": "PASSED", "c": "PASSED"}


def test_execute_stage_against_an_unreachable_executor(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "x", "instruction": "i", "samples": ["```python\nassert 1\n```"]}) + "\n")
    proc = _run("generator", "execute", "--input", inp, "--output", tmp_path / "out.jsonl", "--executor",
                f"127.0.0.1:{free_port()}", "--no-progress")
    assert proc.returncode == 1 and "is not reachable" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("stage", ["select", "dedup", "export"])
def test_shard_is_refused_where_a_stage_needs_the_whole_input(tmp_path, stage):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "x", "instruction": "i", "response": "r"}) + "\n")
    proc = _run("generator", stage, "--input", inp, "--output", tmp_path / "out.jsonl", "--shard", "0/2",
                "--no-progress")
    assert proc.returncode == 2 and "needs its whole input" in proc.stderr, proc.stderr
