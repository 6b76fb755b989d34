"""A newcomer's first mistakes get one clear line and a non-zero exit, never a made-up result."""

from __future__ import annotations

import json
import os
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


def test_quickstart_makes_a_real_dataset(tmp_path, target):
    """The README's CPU quickstart: recorded outputs through every stage, into a non-empty dataset."""
    import tomllib

    from generator.pipeline import Pipeline, PipelineConfig, resolve_paths

    data = tomllib.loads((ROOT / "configs" / "pipeline.quickstart.toml").read_text())
    resolve_paths(data, ROOT / "configs")   # as PipelineConfig.load does for the file
    data["run"].update(dir=str(tmp_path / "run"), progress=False)
    data["execute"]["executor"] = target
    stats = {s.stage: s.to_dict() for s in Pipeline(PipelineConfig.from_dict(data)).run()}
    assert stats["seeds.extract"]["kept"] == 6 and stats["responses"]["kept"] == 6
    assert stats["execute"]["dropped"] == {"FAILED": 5}           # the recorded wrong answers
    rows = [json.loads(line) for line in (tmp_path / "run" / "11-export.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["instruction"] and "```python" in r["response"] for r in rows)
    # The card says what wrote the text: recorded outputs here, not "a base model".
    card = (tmp_path / "run" / "dataset" / "README.md").read_text()
    assert "recorded outputs replayed from" in card and "(no model ran)" in card and "a base model" not in card


def test_replay_matches_the_query_not_the_examples(tmp_path):
    from generator.backends import Sampling
    from generator.backends.replay import ReplayBackend
    from generator.prompts import instructions_prompt, load_examples

    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"field": "Concepts", "input": "recursion,  lists", "outputs": ["Write a."]}) + "\n")
    backend = ReplayBackend(str(rec))
    examples = load_examples()
    prompts = [instructions_prompt("recursion, lists", "function", "easy", examples[:2]),
               instructions_prompt("recursion, lists", "class", "hard", examples[3:6]),
               instructions_prompt("sorting", "function", "easy", examples[:2])]
    out = backend.generate(prompts, Sampling(n=1, stop=("\n## Example",)), [0, 1, 2])
    assert [[c.text for c in samples] for samples in out] == [["Write a."], ["Write a."], []]
    with pytest.raises(ValueError, match="no recording file"):
        ReplayBackend(str(tmp_path / "missing.jsonl"))


def test_released_responses_become_execute_input(tmp_path):
    released = tmp_path / "responses-unfiltered.jsonl"
    released.write_text(
        json.dumps({"instruction": "Add.", "seed": "def f(): ...", "parsing_result": [
            {"response": "A"}, {"response": "B"}, {"response": "A"}]}) + "\n"
        + json.dumps({"instruction": "Add.", "response": "C"}) + "\n"
        + json.dumps({"instruction": "Sub.", "response": "D"}) + "\n")
    proc = _run("generator", "import-released", "--input", released, "--output", tmp_path / "rows.jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(r["instruction"], r["samples"]) for r in rows] == [("Add.", ["A", "B", "C"]), ("Sub.", ["D"])]
    assert rows[0]["seed"] == "def f(): ..." and rows[0]["id"].startswith("released-")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    proc = _run("generator", "import-released", "--input", bad, "--output", tmp_path / "o.jsonl")
    assert proc.returncode == 2 and "no 'instruction'" in proc.stderr


def test_serve_on_a_port_in_use_says_so_and_leaves_no_sandbox(docker_client, server):
    proc = _run("executor", "serve", "--port", server.port, "--pool-size", "1", "--instance", "pytest-port-in-use",
                timeout=120)
    assert proc.returncode == 1 and "could not listen on" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    leftovers = docker_client.containers.list(all=True, filters={"label": "org.selfalign.instance=pytest-port-in-use"})
    assert leftovers == []


def test_info_says_whether_and_why_not_serving(server, target):
    proc = _run("executor", "info", "--target", target)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["serving"] is True and info["notServingReason"] == "" and info["pool"]["size"] >= 1
    proc = _run("executor", "info", "--target", f"127.0.0.1:{free_port()}")
    assert proc.returncode == 1 and "UNAVAILABLE" in proc.stderr and "Traceback" not in proc.stderr


def _run_into_a_closed_pipe(*args) -> subprocess.CompletedProcess:
    """As `python -m ... | head -0`: the reader of stdout is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)


def test_output_piped_into_a_reader_that_left_stops_quietly_with_the_work_kept(tmp_path, target):
    proc = _run_into_a_closed_pipe("executor", "info", "--target", target)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
    proc = _run_into_a_closed_pipe("trainer", "eval", "--canonical", "--limit", 2, "--executor", target,
                                   "--output", tmp_path / "scores.json")
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads((tmp_path / "scores.json").read_text())   # the scores were written all the same


@pytest.mark.timeout(60)
def test_a_pool_that_never_became_ready_closes_at_once(docker_client):
    """The image could not be built (offline, no registry): closing must not wait out its
    drain timeout (600 s here; the test's own limit is 60 s)."""
    from executor.pool import Pool
    from executor.sandbox import SandboxConfig

    def no_image(client):
        raise RuntimeError("sandbox image build failed: no registry")

    pool = Pool(lambda: docker_client, SandboxConfig(image=""), 2, instance="pytest-never-ready",
                image_provider=no_image)
    pool.start()
    assert not pool.engine_reachable and "no registry" in pool.state().engine_error
    time.sleep(1.5)   # the slots are retrying by now
    pool.close(drain=True, timeout_s=600)


def test_execute_stage_interrupted_keeps_what_finished(tmp_path, client, target):
    import signal
    import sqlite3

    code = "import time\ntime.sleep(0.4)\nassert {i} == {i}\n"
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "instruction": "x",
                                       "samples": [f"```python\n{code.format(i=i)}```"]}) + "\n" for i in range(10)))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "generator", "execute", "--input", inp, "--output", out, "--executor", target,
           "--concurrency", "2", "--no-progress"]
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cache = tmp_path / "out.results.sqlite"

    def cached() -> int:
        try:
            with sqlite3.connect(cache) as db:
                return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 60
    while cached() < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again" in err, err
    kept = cached()
    assert 3 <= kept < 10
    while (info := client.info().pool).busy or info.queued:   # programs the client left behind finish
        time.sleep(0.1)
    before = client.info().pool.completed
    proc = subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert client.info().pool.completed - before == 10 - kept     # the finished ones did not run again
    assert len(out.read_text().splitlines()) == 10


def test_a_step_on_rows_without_ids_says_so(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"instruction": "x", "response": "y"}) + "\n")
    proc = _run("generator", "select", "--input", inp, "--output", tmp_path / "o.jsonl")
    assert proc.returncode == 2 and "row 1 needs a non-empty string 'id'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_transformers_backend_batches_and_is_deterministic(tmp_path_factory):
    from generator.backends import Sampling
    from generator.backends.transformers import TransformersBackend
    from trainer.tiny import make_tiny_model

    model = make_tiny_model(tmp_path_factory.mktemp("tiny") / "m")
    prompts = ["def add(a, b):", "x = 1\n" * 5, "print(", "import os"]
    sampling = Sampling(n=2, temperature=0.7, max_new_tokens=8)
    batched = TransformersBackend(str(model), batch_size=4).generate(prompts, sampling, [1, 2, 3, 4])
    again = TransformersBackend(str(model), batch_size=4).generate(prompts, sampling, [1, 2, 3, 4])
    assert [len(s) for s in batched] == [2, 2, 2, 2]
    assert [[c.text for c in s] for s in batched] == [[c.text for c in s] for s in again]
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=8)
    one_by_one = TransformersBackend(str(model), batch_size=1).generate(prompts, greedy, [0] * 4)
    together = TransformersBackend(str(model), batch_size=4).generate(prompts, greedy, [0] * 4)
    # Left padding with its attention mask: a prompt's greedy answer does not depend on its batch.
    assert [s[0].text for s in together] == [s[0].text for s in one_by_one]


def test_run_batch_interrupted_is_quiet_and_resumes_to_one_row_per_id(tmp_path, target):
    import signal

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"p{i}", "code": "import time; time.sleep(0.3); print(1)"}) + "\n"
                           for i in range(40)))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "executor", "run-batch", str(inp), "--output", str(out), "--target", target,
           "--concurrency", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 4) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    for noise in ("Task was destroyed", "never retrieved", "Traceback"):
        assert noise not in err, err
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"p{i}" for i in range(40))


@pytest.mark.parametrize("model", ["./no-such-model", "runs/no/such/model", "/tmp/none-here"])
def test_a_model_path_that_does_not_exist_is_one_line(tmp_path, model):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "i", "response": "r"}) + "\n")
    proc = _run("trainer", "sft", "--data", data, "--model", model, "--output", tmp_path / "o")
    assert proc.returncode == 2 and f"model {model!r}: no such folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
