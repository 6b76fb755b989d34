"""The replay backend, slowed down (a test double for a model's generation time, so a test can
stop a run in the middle of a stage)."""

from __future__ import annotations

import time

from generator.backends.replay import ReplayBackend


class SlowReplay(ReplayBackend):
    def __init__(self, recordings: str, delay_s: float = 0.5) -> None:
        super().__init__(recordings)
        self.delay_s = delay_s

    def generate(self, prompts, sampling, seeds):
        time.sleep(self.delay_s)
        return super().generate(prompts, sampling, seeds)
