"""Any OpenAI-compatible completions server (vLLM's server, TGI, SGLang), many requests at once."""

from __future__ import annotations

import asyncio

from generator.backends import Completion, Sampling


class OpenAIBackend:
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "EMPTY",
                 concurrency: int = 64, max_retries: int = 5, timeout_s: float = 600.0) -> None:
        try:
            import openai
        except ImportError as exc:
            raise RuntimeError("the openai backend needs the openai package: pip install openai") from exc
        self.model = model
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries,
                                         timeout=timeout_s)
        self.concurrency = concurrency

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        return asyncio.run(self._generate(prompts, sampling, seeds))

    async def _generate(self, prompts, sampling, seeds):
        gate = asyncio.Semaphore(self.concurrency)

        async def one(prompt: str, seed: int) -> list[Completion]:
            async with gate:
                resp = await self.client.completions.create(
                    model=self.model, prompt=prompt, n=sampling.n, temperature=sampling.temperature,
                    top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
                    stop=list(sampling.stop)[:4] or None, seed=seed)
            choices = sorted(resp.choices, key=lambda c: c.index)
            return [Completion(c.text, "length" if c.finish_reason == "length" else "stop") for c in choices]

        try:
            return await asyncio.gather(*(one(p, s) for p, s in zip(prompts, seeds, strict=True)))
        finally:
            await self.client.close()
