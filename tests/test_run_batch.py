"""`python -m executor run-batch`: real files, a real embedded or remote executor, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from tests.conftest import ROOT, wait_for

FIELDS = {"id", "status", "exit_code", "signal", "stdout", "stderr", "stdout_truncated",
          "stderr_truncated", "wall_time_s", "cpu_time_s", "peak_memory_mb"}


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def run_batch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "executor", "run-batch", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_embedded_executor_runs_a_file(tmp_path, sandbox_image):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, [
        {"id": "ok", "code": "print(input())", "stdin": "hi", "extra": "ignored"},
        {"id": "fail", "code": "1/0"},
        {"id": "slow", "code": "while True: pass", "timeout_s": 0.5},
        {"id": "mem", "code": "b = bytearray(400 << 20); b[::4096] = b'1' * len(b[::4096])", "memory_mb": 128},
        {"id": "bin", "code": "import sys; sys.stdout.buffer.write(b'\\xff')"},
    ])
    proc = run_batch(inp, "--output", out, "--pool-size", "2")
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert set(rows) == {"ok", "fail", "slow", "mem", "bin"}
    assert all(FIELDS <= set(r) for r in rows.values())
    assert {k: r["status"] for k, r in rows.items()} == {
        "ok": "PASSED", "fail": "FAILED", "slow": "TIMEOUT", "mem": "MEMORY_LIMIT", "bin": "PASSED"}
    assert rows["ok"]["stdout"] == "hi\n"
    assert rows["bin"]["stdout"] == "\\xff"
    assert "embedded executor" in proc.stderr
    assert "PASSED" in proc.stderr and "TIMEOUT" in proc.stderr  # summary by status


def test_bad_lines_are_reported_with_line_numbers_and_the_rest_runs(tmp_path, target):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, [
        {"id": "a", "code": "print(1)"},
        "{not json",
        {"id": "a", "code": "print(2)"},
        {"code": "print(3)"},
        {"id": "b", "code": ""},
        {"id": "c", "code": "print(4)", "timeout_s": "soon"},
        {"id": "d", "code": "print(5)", "timeout_s": 9999},
        {"id": "e", "code": "print(6)"},
    ])
    with open(inp, "ab") as f:
        f.write(b'{"id": "f", "code": "print(\xff)"}\n')   # not UTF-8: reported, not a crash
    proc = run_batch(inp, "--output", out, "--target", target)
    assert proc.returncode == 2
    rows = read_jsonl(out)
    assert {r["id"] for r in rows if r["status"] == "PASSED"} == {"a", "e"}
    for expected in ("line 2: not valid JSON", "line 3: duplicate id 'a'", "line 4: 'id' must be",
                     "line 5: id 'b' rejected (INVALID_ARGUMENT): code is empty",
                     "line 6: 'timeout_s' must be a number", "line 7: id 'd' rejected",
                     "line 9: not valid JSON ('utf-8' codec can't decode"):
        assert expected in proc.stderr, expected
    # Every input row has exactly one output row, so the output lines up with the input.
    assert len(rows) == 9
    answered = {r["line"]: (r["status"], r["id"]) for r in rows if "line" in r}
    assert answered == {2: ("INVALID_INPUT", None), 3: ("INVALID_INPUT", "a"), 4: ("INVALID_INPUT", None),
                        5: ("REJECTED", "b"), 6: ("INVALID_INPUT", "c"), 7: ("REJECTED", "d"),
                        9: ("INVALID_INPUT", None)}
    assert "100%" in proc.stderr.replace(" ", "") or "9/9" in proc.stderr
    # A run again answers nothing twice.
    proc = run_batch(inp, "--output", out, "--target", target)
    assert len(read_jsonl(out)) == 9, read_jsonl(out)


def test_output_to_dev_null_is_fine(tmp_path, target):
    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [{"id": "a", "code": "print(1)"}])
    proc = run_batch(inp, "--output", "/dev/null", "--target", target)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_missing_input_is_a_clear_error(tmp_path):
    proc = run_batch(tmp_path / "nope.jsonl", "--output", tmp_path / "out.jsonl")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_interrupted_batch_resumes_without_loss_or_duplicates(tmp_path, target):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    n = 120
    write_jsonl(inp, [{"id": str(i), "code": f"import time\ntime.sleep(0.05)\nprint({i})"} for i in range(n)])
    proc = subprocess.Popen([sys.executable, "-m", "executor", "run-batch", str(inp), "--output", str(out),
                             "--target", target, "--concurrency", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 10, timeout=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err, err
    partial = read_jsonl(out)
    assert 10 <= len(partial) < n
    with open(out, "a") as f:
        f.write('{"id": "cut-off-by-a-cra')  # a line cut short by a crash
    proc = run_batch(inp, "--output", out, "--target", target)
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(out)
    assert sorted(int(r["id"]) for r in rows) == list(range(n))
    assert all(r["status"] == "PASSED" and r["stdout"] == f"{r['id']}\n" for r in rows)
    assert f"{len(partial)} already done" in proc.stderr


def test_killed_batch_resumes(tmp_path, target):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    n = 60
    write_jsonl(inp, [{"id": str(i), "code": f"import time\ntime.sleep(0.05)\nprint({i})"} for i in range(n)])
    proc = subprocess.Popen([sys.executable, "-m", "executor", "run-batch", str(inp), "--output", str(out),
                             "--target", target, "--concurrency", "2", "--no-progress"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 5, timeout=120)
    proc.kill()
    proc.wait()
    assert run_batch(inp, "--output", out, "--target", target).returncode == 0
    assert sorted(int(r["id"]) for r in read_jsonl(out)) == list(range(n))


def test_ctrl_c_while_a_step_is_being_scheduled_stops_cleanly(target):
    """A Ctrl-C can land while the client's thread waits for the task that pumps results to be
    scheduled on its loop, before the task is known to the caller. It must still be cancelled
    before the stream is closed: closing it under a running step raised RuntimeError (seen in CI
    as a traceback instead of "run the same command again to resume")."""
    import pytest

    from executor.client import Client, Program

    with Client(target) as client:
        real_call = client._call
        calls = {"steps": 0}

        def interrupted(coro):
            result = real_call(coro)
            if getattr(coro, "__name__", "") == "_as_task":
                calls["steps"] += 1
                if calls["steps"] == 1:   # the pump is scheduled, then the user presses Ctrl-C
                    raise KeyboardInterrupt
            return result

        client._call = interrupted   # type: ignore[method-assign]
        programs = [Program(f"import time\ntime.sleep(0.2)\nprint({i})") for i in range(6)]
        with pytest.raises(KeyboardInterrupt):
            for _ in client.execute_many(programs, max_in_flight=2):
                pass
        client._call = real_call   # type: ignore[method-assign]
        assert client.execute(Program("print(1)")).stdout == b"1\n"   # the client still works
