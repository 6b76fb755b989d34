"""vLLM offline inference: all prompts of a stage in one `generate` call, `n` samples each.

Tensor parallel for models larger than one GPU (`tensor_parallel_size`); for data parallel,
run one engine per GPU on a shard of the input (see the README's multi-GPU recipe). Prefix
caching is on: every prompt starts with the same task preamble, and the `n` samples of one
prompt share all of it.
"""

from __future__ import annotations

from generator.backends import Completion, Sampling


class VLLMBackend:
    def __init__(self, model: str, tensor_parallel_size: int = 1, dtype: str = "auto",
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 enable_prefix_caching: bool = True, **engine_kwargs) -> None:
        try:
            from vllm import LLM  # pyright: ignore[reportAttributeAccessIssue]  (lazy exports)
        except ImportError as exc:
            raise RuntimeError(
                "the vllm backend needs vLLM and a GPU: pip install 'selfalign[vllm]' "
                "(or use backend kind 'openai' or 'transformers')") from exc
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                       max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                       enable_prefix_caching=enable_prefix_caching, **engine_kwargs)

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        from vllm import SamplingParams  # pyright: ignore[reportAttributeAccessIssue]

        params = [SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_new_tokens, stop=list(sampling.stop), seed=seed)
                  for seed in seeds]
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [[Completion(o.text, "length" if o.finish_reason == "length" else "stop")
                 for o in out.outputs] for out in outputs]
