"""Any OpenAI-compatible completions server (vLLM's server, TGI, SGLang), many requests at once."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from generator.backends import BackendError, Completion, Sampling

CHECK_TIMEOUT_S = 5.0


def check_server(base_url: str) -> None:
    """One line, at start, when nothing answers at `base_url` (instead of a long traceback from the
    first batch, minutes later). Any HTTP answer counts as up: a 401 is a server that wants a key."""
    if not base_url:
        raise ValueError("the openai backend needs a base_url (an OpenAI-compatible server, e.g. "
                         "http://127.0.0.1:8000/v1)")
    url = base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"the OpenAI-compatible server at {base_url} did not answer ({reason})") from None


class OpenAIBackend:
    """One client per `generate` call: each call runs its own event loop (asyncio.run), and a
    client's connections belong to the loop that opened them. (Closing one shared client after
    the first call made every later batch fail with "the client has been closed".)"""

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "EMPTY",
                 concurrency: int = 64, max_retries: int = 5, timeout_s: float = 600.0) -> None:
        try:
            import openai  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("the openai backend needs the openai package: pip install openai") from exc
        self.model = model
        self.client_options = {"base_url": base_url, "api_key": api_key, "max_retries": max_retries,
                               "timeout": timeout_s}
        self.concurrency = concurrency

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        import openai

        try:
            return asyncio.run(self._generate(prompts, sampling, seeds))
        except (openai.APIConnectionError, openai.APIStatusError) as exc:   # after the client's own retries
            url = self.client_options["base_url"]
            raise BackendError(f"the OpenAI-compatible server at {url} stopped answering "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from None

    async def _generate(self, prompts, sampling, seeds):
        import openai

        gate = asyncio.Semaphore(self.concurrency)
        client = openai.AsyncOpenAI(**self.client_options)

        async def one(prompt: str, seed: int) -> list[Completion]:
            async with gate:
                resp = await client.completions.create(
                    model=self.model, prompt=prompt, n=sampling.n, temperature=sampling.temperature,
                    top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
                    stop=list(sampling.stop)[:4] or None, seed=seed)
            choices = sorted(resp.choices, key=lambda c: c.index)
            return [Completion(c.text, "length" if c.finish_reason == "length" else "stop") for c in choices]

        try:
            return await asyncio.gather(*(one(p, s) for p, s in zip(prompts, seeds, strict=True)))
        finally:
            await client.close()
