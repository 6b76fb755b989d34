"""What stages share instead of each making their own: the model backend and the executor.

The runner passes one `Resources` to every stage it runs; a stage takes what it needs in its
`using()` hook, which runs only when the stage has rows left to do. So a resumed run whose
generation stages are done loads no model, and one whose execute stage is done starts no
executor. A backend is made once and then shared by every stage that asks (concepts,
instructions, responses and the seeds judge load one model, not four).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from generator.backends import Backend, BackendConfig, make_backend

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig


@dataclass
class Resources:
    backend_config: BackendConfig | None = None
    executor: list[str] = field(default_factory=list)   # targets; empty: an embedded executor
    pool_size: int | None = None                        # the embedded executor's sandboxes
    given_backend: Backend | None = None                # a backend made elsewhere (tests, a Ray worker)

    @classmethod
    def of(cls, cfg: PipelineConfig, backend: Backend | None = None) -> Resources:
        return cls(cfg.backend, cfg.execute.executor, cfg.execute.pool_size, backend)

    @property
    def backend(self) -> Backend:
        if self.given_backend is None:
            if self.backend_config is None:
                raise ValueError("this step generates text and needs a model: give a config with a [backend] section")
            self.given_backend = make_backend(self.backend_config)
        return self.given_backend

    @contextlib.contextmanager
    def executor_client(self, cache_path: str | None = None) -> Iterator:
        """A client for the configured executors, or for an embedded one started here. With a
        `cache_path`, every result is kept as it arrives, so a batch cut short (Ctrl-C, a crash)
        does not run its finished programs again."""
        from executor.embedded import connect

        with connect(self.executor, self.pool_size, cache_path=cache_path) as client:
            yield client
