"""The generation stages on a real local Ray cluster (started here, on this machine): the same
files as a one-machine run, and a driver killed mid-stage resumes without losing or duplicating
a row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytest.importorskip("ray")

GENERATED = ("02-concepts", "03-instructions", "04-responses")
CONFIG = """
[run]
seed = 0
[backend]
kind = "import"
model = "tests.slow_replay:SlowReplay"
options = {{ recordings = "generator/quickstart/replay.jsonl", delay_s = {delay} }}
[seeds]
source = "generator/quickstart"
rules = "precise"
[concepts]
k = 2
batch_size = 1
[instructions]
k = 2
categories = {{ function = 1.0 }}
batch_size = 1
[responses]
k = 1
n = 2
batch_size = 1
"""
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head of our own (`--block`, in its own session), stopped by signalling just it: `ray
    stop` would stop every Ray cluster on the machine."""
    port = free_port()
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={tmp_path_factory.mktemp('ray')}"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while subprocess.run(["ray", "status", f"--address={address}"], env=ENV, capture_output=True).returncode:
        assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
        time.sleep(1)
    yield address
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def _run(tmp: Path, name: str, *extra: str, delay: float = 0.0) -> subprocess.Popen:
    config = tmp / f"{name}.toml"
    config.write_text(CONFIG.format(delay=delay))
    return subprocess.Popen([sys.executable, "-m", "generator", "run", str(config), "--dir", str(tmp / name),
                             "--until", "responses", "--no-progress", *extra],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _files(run: Path) -> dict[str, bytes]:
    def read(path: Path) -> bytes:   # a side file with no rows may not exist at all
        return path.read_bytes() if path.exists() else b""

    return {f"{stem}{suffix}": read(run / f"{stem}{suffix}")
            for stem in GENERATED for suffix in (".jsonl", ".rejects.jsonl", ".malformed.jsonl")}


def test_a_ray_run_writes_exactly_what_a_one_machine_run_writes(tmp_path, ray_head):
    one = _run(tmp_path, "one")
    assert one.wait(300) == 0, one.stdout.read()
    ray = _run(tmp_path, "ray", "--ray", ray_head, "--ray-workers", "2")
    assert ray.wait(300) == 0, ray.stdout.read()
    assert _files(tmp_path / "ray") == _files(tmp_path / "one")
    assert (tmp_path / "ray" / "04-responses.part-1-of-2.jsonl").stat().st_size > 0   # both workers had work
    stats = {s["stage"]: s for s in json.loads((tmp_path / "ray" / "stats.json").read_text())}
    assert stats["responses"]["kept"] == 6


def test_a_driver_killed_mid_stage_resumes_without_losing_or_duplicating_rows(tmp_path, ray_head):
    one = _run(tmp_path, "one")
    assert one.wait(300) == 0, one.stdout.read()
    driver = _run(tmp_path, "ray", "--ray", ray_head, "--ray-workers", "2", delay=0.7)
    part = tmp_path / "ray" / "03-instructions.part-0-of-2.checkpoint.json"
    deadline = time.monotonic() + 240
    killed_at = None
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            ckpt = json.loads(part.read_text())
        except (OSError, ValueError):
            ckpt = None
        if ckpt and ckpt["consumed"] >= 1 and not ckpt["done"]:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            killed_at = ckpt["consumed"]
            break
        time.sleep(0.05)
    assert killed_at is not None, f"the driver was not caught mid-stage: {driver.poll()}"
    assert not (tmp_path / "ray" / "03-instructions.jsonl").exists() or \
        not json.loads((tmp_path / "ray" / "03-instructions.checkpoint.json").read_text())["done"]
    resumed = _run(tmp_path, "ray", "--ray", ray_head, "--ray-workers", "2")
    assert resumed.wait(300) == 0, resumed.stdout.read()
    assert _files(tmp_path / "ray") == _files(tmp_path / "one")
    ids = [json.loads(line)["id"] for line in (tmp_path / "ray" / "04-responses.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6


TINY = """
[run]
seed = 0
[backend]
kind = "transformers"
model = "{model}"
[seeds]
source = "generator/quickstart"
rules = "precise"
[concepts]
k = 2
max_new_tokens = 16
temperature = 0.0
batch_size = 1
"""


def test_a_tiny_real_model_on_ray_matches_the_one_machine_run(tmp_path, ray_head):
    """The transformers backend (greedy, one prompt at a time) in two Ray workers gives the same
    concepts as in one process."""
    from trainer.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "model")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(model=model))
    runs = {}
    for name, extra in (("one", []), ("ray", ["--ray", ray_head, "--ray-workers", "2"])):
        proc = subprocess.run([sys.executable, "-m", "generator", "run", str(config), "--dir", str(tmp_path / name),
                               "--until", "concepts", "--no-progress", "--allow-empty", *extra],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = (tmp_path / name / "02-concepts.jsonl").read_bytes() + \
            (tmp_path / name / "02-concepts.rejects.jsonl").read_bytes()
    assert runs["ray"] == runs["one"]
    assert (tmp_path / "ray" / "02-concepts.part-1-of-2.checkpoint.json").exists()
