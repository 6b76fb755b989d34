"""The model card from one command: `trainer eval --suite card` on a tiny model, end to end on
real files, real generation (transformers on CPU) and real execution; and `trainer eval` for
LiveCodeBench and DS-1000 with completions made elsewhere, and its one-line errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import ds1000_data
import lcb_data
import pytest
from test_evalplus_equivalence import HUMANEVAL_TASKS, MBPP_TASKS

ROOT = Path(__file__).resolve().parent.parent


def _trainer(*args, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Every benchmark's file, in its released format, in one folder as `--suite card` reads it."""
    d = tmp_path_factory.mktemp("card-data")
    with gzip.open(d / "HumanEvalPlus-v0.1.9.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in HUMANEVAL_TASKS[:2])
    with gzip.open(d / "MbppPlus-v0.1.0.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in MBPP_TASKS)
    for name, path in lcb_data.write(d / "lcb").items():
        path.rename(d / f"livecodebench-{name}.jsonl")
    rows = [r for r in ds1000_data.ROWS if r["metadata"]["library"] in ("Numpy", "Pandas")]
    (d / "ds1000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from trainer.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


def test_suite_card_gives_all_nine_and_resumes(tmp_path, data_dir, tiny_model, docker_client):
    from executor.image import ensure_image

    ensure_image(docker_client, None, "ds1000")   # DS-1000's sandbox (minutes the first time)
    out = tmp_path / "card.json"
    args = ["eval", "--suite", "card", "--model", tiny_model, "--backend", "transformers", "--data-dir", data_dir,
            "--output", out, "--n-samples", 2, "--max-new-tokens", 8, "--no-progress"]
    first = _trainer(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    card = json.loads(out.read_text())
    assert [row["benchmark"] for row in card["table"]] == [
        "humaneval", "humaneval+", "mbpp", "mbpp+", "lcb-codegeneration", "lcb-selfrepair",
        "lcb-testoutputprediction", "lcb-codeexecution", "ds1000"]
    for row in card["table"]:
        assert isinstance(row["ours"], float) and 0 <= row["ours"] <= 100, row
        assert row["difference"] == pytest.approx(row["ours"] - row["card"], abs=0.11)
    assert first.stdout.splitlines()[0].split() == ["benchmark", "ours", "card", "diff"]   # the table alone
    assert "72.6" in first.stdout and "ds1000" in first.stdout
    assert any("MBPP+ has 2 tasks" in note for note in card["notes"])
    # Each benchmark kept its own result and samples, made with the card's settings (n as asked).
    repair = json.loads((tmp_path / "card.lcb-selfrepair.json").read_text())
    assert repair["scenario"] == "selfrepair" and repair["generation"]["top_p"] == 0.95
    ds = json.loads((tmp_path / "card.ds1000.json").read_text())
    assert ds["problems"] == 3 and not ds["skipped"] and ds["generation"]["temperature"] == 0.2
    # Run again: nothing is generated or scored anew.
    again = _trainer(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already scored") == 7
    assert json.loads(out.read_text())["table"] == card["table"]


def test_livecodebench_and_ds1000_grade_completions_made_elsewhere(tmp_path, data_dir):
    completions = tmp_path / "c.jsonl"
    rows = [("sample_0", "assert f(2, 3) == (5, 6)\n[/ANSWER]"), ("sample_0", "(5, 7)"),
            ("sample_1", "'AB'"), ("sample_1", "'AB'")]
    completions.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in rows))
    out = tmp_path / "exec.json"
    done = _trainer("eval", "--benchmark", "livecodebench", "--scenario", "codeexecution", "--data-file",
                    data_dir / "livecodebench-codeexecution.jsonl", "--completions", completions, "--output", out,
                    "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(out.read_text())["pass@1"] == pytest.approx(0.75)

    answers = tmp_path / "ds.jsonl"
    answers.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in
                               [("291", "result = a.sum(axis=0)\n"), ("292", "    return a\n"),
                                ("0", "result = df.sort_values('a').reset_index(drop=True)\n")]))
    out = tmp_path / "ds.json"
    done = _trainer("eval", "--benchmark", "ds1000", "--data-file", data_dir / "ds1000.jsonl", "--completions",
                    answers, "--output", out, "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["pass@1"] == pytest.approx(2 / 3)
    assert result["by_library"]["Pandas"]["pass@1"] == 1.0 and result["by_library"]["Numpy"]["pass@1"] == 0.5


@pytest.mark.parametrize("args, message", [
    (["--benchmark", "humaneval", "--scenario", "selfrepair", "--completions", "x"], "LiveCodeBench's"),
    (["--benchmark", "livecodebench", "--scenario", "selfrepair", "--model", "m", "--codegen-results",
      "/nonexistent.json", "--data-file", "DATA"], "/nonexistent.json: no such file"),
    (["--benchmark", "livecodebench", "--data-file", ROOT / "tests" / "lcb_data.py", "--completions", "x"],
     "lcb_data.py:1: not a JSON row"),
    (["--benchmark", "ds1000", "--completions", "x"], "give --data-file"),
    (["--benchmark", "livecodebench", "--data-file", "/nonexistent.jsonl", "--completions", "x"],
     "--data-file /nonexistent.jsonl: no such file"),
    (["--suite", "card", "--completions", "x"], "--suite card"),
])
def test_mistakes_are_one_line(tmp_path, data_dir, args, message):
    args = [data_dir / "livecodebench-codegeneration.jsonl" if a == "DATA" else a for a in args]
    done = _trainer("eval", *args, "--output", tmp_path / "o.json", timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_self_repair_makes_its_code_generation_first_and_samples_resume(tmp_path, data_dir, tiny_model):
    common = ["--benchmark", "livecodebench", "--data-file", data_dir / "livecodebench-codegeneration.jsonl",
              "--model", tiny_model, "--backend", "transformers", "--n-samples", 2, "--max-new-tokens", 8,
              "--no-progress"]
    out = tmp_path / "repair.json"
    first = _trainer("eval", "--scenario", "selfrepair", *common, "--output", out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "running code generation first" in first.stderr
    assert first.stderr.count("loading the transformers backend") == 1   # one model load for both steps
    codegen = json.loads((tmp_path / "repair.codegeneration.json").read_text())
    assert codegen["scenario"] == "codegeneration" and codegen["samples_per_problem"] == 2
    repair = json.loads(out.read_text())
    assert repair["scenario"] == "selfrepair" and repair["problems"] == 4
    # Again: the samples are reused, not made again; other settings are refused in one line.
    codegen_out = tmp_path / "repair.codegeneration.json"
    again = _trainer("eval", "--scenario", "codegeneration", *common, "--output", codegen_out)
    assert again.returncode == 0 and "resuming: 4 of 4 tasks" in again.stderr, again.stderr[-2000:]
    other = _trainer("eval", "--scenario", "codegeneration", *common, "--temperature", "0.7", "--output", codegen_out)
    assert other.returncode == 2 and "holds samples made otherwise" in other.stderr
    assert len([line for line in other.stderr.splitlines() if line.startswith("error")]) == 1


def test_generation_resumes_after_a_crash_mid_line(tmp_path):
    """A samples file cut mid-line by a crash: the complete tasks are kept, the cut one is made
    again, and the file is whole afterwards."""
    from types import SimpleNamespace

    from trainer.card import generate_resumable
    from trainer.evaluate import samples_meta

    path = tmp_path / "s.jsonl"
    settings = {"model": "m", "n_samples": 2}
    samples_meta(path).write_text(json.dumps(settings))
    path.write_text(json.dumps({"task_id": "a", "completion": "a0"}) + "\n"
                    + json.dumps({"task_id": "a", "completion": "a1"}) + "\n"
                    + json.dumps({"task_id": "b", "completion": "b0"}) + "\n" + '{"task_id": "b", "compl')
    asked: list[list[str]] = []

    def generate(engine, part):
        asked.append([t.task_id for t in part])
        return {t.task_id: [f"{t.task_id}-new0", f"{t.task_id}-new1"] for t in part}

    tasks = [SimpleNamespace(task_id=t) for t in ("a", "b", "c")]
    got = generate_resumable(path, dict(settings), tasks, {"a": 2, "b": 2, "c": 2}, lambda: object(), generate, 1)
    assert asked == [["b"], ["c"]]
    assert got == {"a": ["a0", "a1"], "b": ["b-new0", "b-new1"], "c": ["c-new0", "c-new1"]}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["completion"] for r in rows] == ["a0", "a1", "b-new0", "b-new1", "c-new0", "c-new1"]
