"""What the three generation steps share: prompt every row, sample, parse, keep or reject.

A batch's prompts go to the backend in one call (vLLM schedules them together). Each request
gets its own seed, derived from the run seed and the row, so results do not depend on batch
boundaries or on resuming. Samples cut off by the length limit are dropped; samples that do
not parse are counted by reason and written, with their text, to a `malformed` side file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources as package_files
from typing import TYPE_CHECKING

from generator.backends import Backend, BackendConfig, Sampling
from generator.prompts import PREAMBLE, STOP, Example, Malformed, load_examples
from generator.stage import BatchResult, Stage, stable_seed

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig
    from generator.resources import Resources


@dataclass
class GenerationConfig:
    k: int = 8                 # few-shot examples per prompt
    n: int = 1                 # samples per prompt
    temperature: float = 0.7
    max_new_tokens: int = 1536
    batch_size: int = 1024


def assets_fingerprint(*texts: object) -> str:
    """A hash of the prompt assets a generation stage reads (the example library and its
    preamble), so that editing them re-runs the stage instead of reusing its old output."""
    h = hashlib.sha256((package_files.files("generator.prompts") / "examples.toml").read_bytes())
    h.update(json.dumps(texts).encode())
    return h.hexdigest()[:16]


class GenerationStage(Stage):
    output_field = "text"
    side_files = ("malformed",)
    keep_cut_off = False   # samples cut by the length limit are dropped unless a stage says otherwise
    distributable = True
    stop: tuple[str, ...] = STOP   # where a sample ends (the next few-shot header, by default)

    def __init__(self, output, gen: GenerationConfig, backend_config: BackendConfig | None, run_seed: int,
                 progress: bool = True) -> None:
        super().__init__(output, progress)
        self.gen = gen
        self.backend_config = backend_config
        self.run_seed = run_seed
        self.batch_size = gen.batch_size
        self.examples: list[Example] = load_examples()
        self.backend: Backend | None = None   # taken from the shared resources while running

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> GenerationStage:
        return cls(output, getattr(cfg, cls.name), cfg.backend, cfg.seed, cfg.progress)

    def settings(self) -> dict:
        backend = dataclasses.asdict(self.backend_config) if self.backend_config else None
        return {"section": dataclasses.asdict(self.gen), "backend": backend, "seed": self.run_seed,
                "assets": assets_fingerprint(self.preamble())}

    def preamble(self) -> str:
        """The prompt text before the examples (part of the fingerprint)."""
        return PREAMBLE[self.name]

    @contextlib.contextmanager
    def using(self, resources: Resources) -> Iterator[None]:
        self.backend = resources.backend
        try:
            yield
        finally:
            self.backend = None

    def prompt(self, row: dict) -> str:
        raise NotImplementedError

    def parse(self, text: str):
        raise NotImplementedError

    def make_rows(self, row: dict, parsed: list, prompt: str) -> list[dict]:
        """Output rows from one input row, its parsed samples (all of them by default) and the
        prompt they were sampled from."""
        return [{**row, "id": f"{row['id']}-{i}", self.output_field: value} for i, value in enumerate(parsed)]

    def row_seed(self, row: dict, purpose: str = "sample") -> int:
        return stable_seed(self.run_seed, self.name, purpose, row["id"])

    def process_batch(self, rows: list[dict]) -> BatchResult:
        prompts = [self.prompt(r) for r in rows]
        sampling = Sampling(n=self.gen.n, temperature=self.gen.temperature,
                            max_new_tokens=self.gen.max_new_tokens, stop=self.stop)
        assert self.backend is not None, "run the stage through Stage.run, which gives it the model"
        outputs = self.backend.generate(prompts, sampling, [self.row_seed(r) for r in rows])
        result = BatchResult(extra={"malformed": []})
        for row, prompt, samples in zip(rows, prompts, outputs, strict=True):
            parsed = []
            for i, completion in enumerate(samples):
                if completion.finish_reason == "length" and not self.keep_cut_off:
                    result.extra["malformed"].append(
                        {"id": row["id"], "sample": i, "reason": "cut_off_at_length_limit", "text": completion.text})
                    continue
                try:
                    parsed.append(self.parse(completion.text))
                except Malformed as exc:
                    result.extra["malformed"].append(
                        {"id": row["id"], "sample": i, "reason": str(exc), "text": completion.text})
            if parsed:
                result.kept.extend(self.make_rows(row, parsed, prompt))
            else:
                reasons = sorted({m["reason"] for m in result.extra["malformed"] if m["id"] == row["id"]})
                result.rejected.append({"id": row["id"], "reason": reasons[0] if len(reasons) == 1 else
                                        "no_usable_sample", "sample_reasons": reasons})
        return result
