"""Model backends: one interface, several engines.

- `vllm`: offline `vllm.LLM` on GPUs, the fast path (optional extra, imported lazily)
- `openai`: any OpenAI-compatible completions server (vLLM's, TGI, SGLang)
- `transformers`: plain Hugging Face generation, for CPU development and tests
- `replay`: recorded outputs from a file (the CPU quickstart; released intermediate datasets)
- `import`: any class named as `module:Class`, for custom engines (and the tests' scripted model)

Every backend takes all of a stage's prompts at once and returns, per prompt, `n` samples with
a finish reason, so a stage can drop samples cut off by the length limit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.7
    max_new_tokens: int = 1536
    stop: tuple[str, ...] = ()
    top_p: float = 1.0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (a stop string or end of text) or "length" (cut off)


class Backend(Protocol):
    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        """One list of `sampling.n` completions per prompt; `seeds[i]` seeds prompt i."""
        ...


class BackendError(RuntimeError):
    """The engine or server stopped working mid-run (what was saved stays: run again to resume)."""


@dataclass
class BackendConfig:
    kind: str = "vllm"
    model: str = ""
    options: dict = field(default_factory=dict)


HUB_CHECK_TIMEOUT_S = 5.0


def resolve_dtype(model: str, dtype: str = "auto") -> str:
    """The dtype a backend runs `model` in, made explicit: "auto" is the checkpoint's own (its
    config's `torch_dtype`, float32 where it names none). The backends then agree: vLLM's CPU
    build would otherwise downcast a float32 checkpoint to bfloat16, while transformers keeps
    float32, and greedy outputs would differ."""
    if dtype != "auto":
        return dtype
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
    except Exception:
        return "auto"   # not a transformers checkpoint here (an API model): the engine decides
    found = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return str(found).removeprefix("torch.") if found else "float32"


def hold_back_partial_character(text: str) -> str:
    """Text without its trailing U+FFFD, as vLLM's detokenizer returns it: vLLM holds back
    decoded text that ends in U+FFFD (the bytes of a character not yet complete) and does not
    flush it when generation stops, however many tokens it took; transformers' decode turns the
    same bytes into U+FFFD. Measured on a tiny model: greedy token ids were the same, and the
    texts differed only there."""
    return text.rstrip("\ufffd")


def check_model_name(name: str) -> None:
    """A model that cannot be loaded is one clear error before any work starts, not a hub lookup
    that fails after ~45 s of retries and a long traceback: a path that does not exist; an
    `org/name` that is neither a folder nor in the local hub cache, when the hub is switched off
    (HF_HUB_OFFLINE) or does not answer within a few seconds."""
    import os
    from pathlib import Path

    if not name:
        raise ValueError("no model given")
    if Path(name).expanduser().exists():
        return
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ValueError(f"model {name!r}: no such folder (and not a hub id like org/name)")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return   # no hub client: whatever loads the model says what is wrong
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return   # cached: loads offline
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ValueError(f"model {name!r}: no such folder, and not in the hub cache (HF_HUB_OFFLINE is set)")
    from huggingface_hub import model_info

    try:
        model_info(name, timeout=HUB_CHECK_TIMEOUT_S)
    except Exception as exc:   # unreachable, unknown repo, gated: all mean it cannot load here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model {name!r}: no such folder, and the hub did not give it ({reason[:200]})") from None


def make_backend(config: BackendConfig) -> Backend:
    if config.kind in ("vllm", "transformers"):
        check_model_name(config.model)
    if config.kind == "vllm":
        from generator.backends.vllm import VLLMBackend

        return VLLMBackend(config.model, **config.options)
    if config.kind == "openai":
        from generator.backends.openai import OpenAIBackend

        return OpenAIBackend(config.model, **config.options)
    if config.kind == "transformers":
        from generator.backends.transformers import TransformersBackend

        return TransformersBackend(config.model, **config.options)
    if config.kind == "replay":
        from generator.backends.replay import ReplayBackend

        return ReplayBackend(config.model, **config.options)
    if config.kind == "import":
        module, _, name = config.model.partition(":")
        if not name:
            raise ValueError(f"backend 'import' needs model = 'module:Class', not {config.model!r}")
        return getattr(importlib.import_module(module), name)(**config.options)
    raise ValueError(f"unknown backend {config.kind!r}: use vllm, openai, transformers, replay or import")


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; True when one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
