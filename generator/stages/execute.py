"""Execution filter: run each sample's code and tests in the executor, keep the passing ones.

A sample's program is all its Python-tagged fenced blocks that parse, in order, run as a real
script, so solutions with module-level imports and helper functions are judged correctly (the
original filter's exec() inside a function rejected them). A sample whose tests would not run,
or could not fail, is dropped before it runs: a program that checks nothing passes for nothing
(`generator.response_format.tests_reason`, which judges the program exactly as it will run). An
`if __name__ == "__main__":` block that reads standard input is removed first, since unattended
it can only fail with EOFError; asserts inside it are then not tests.

Programs are tracked by their position in the batch, never by the rows' ids: two rows with the
same id (a user's file may have them) each get their own verdict.

Every candidate's status and the tail of its stderr go to the `executions` side file, the
failures also to the rejects file. The stage's notes count, among the samples that passed, those
the original filter would have rejected, by reason (`original_would_reject:<reason>`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from executor import Limits, Program
from executor.client import Client, Rejected
from generator.response_format import original_rejects, runnable_program, tests_reason
from generator.stage import BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig
    from generator.resources import Resources

STDERR_TAIL = 2000


@dataclass
class ExecuteConfig:
    executor: list[str] = field(default_factory=list)   # empty: an embedded executor
    timeout_s: float | None = None
    memory_mb: int | None = None
    concurrency: int = 64
    pool_size: int | None = None
    drop_interactive_main: bool = True   # remove `if __name__ == "__main__":` blocks that read stdin
    # False (`trainer prepare --verify`): a response without tests (a rewritten training target)
    # still runs, and passes by running to its end; counted as `ran_without_tests:<why>`.
    require_tests: bool = True


class Execute(Stage):
    name = "execute"
    batch_size = 256
    side_files = ("executions",)

    def __init__(self, output, cfg: ExecuteConfig | None = None, progress: bool = True) -> None:
        super().__init__(output, progress)
        self.cfg = cfg or ExecuteConfig()
        self.limits = Limits(timeout_s=self.cfg.timeout_s, memory_mb=self.cfg.memory_mb)
        self.client: Client | None = None   # from the shared resources while running

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Execute:
        return cls(output, cfg.execute, cfg.progress)

    def settings(self) -> dict:
        # Where programs run and how many at once does not change which pass.
        return {"timeout_s": self.cfg.timeout_s, "memory_mb": self.cfg.memory_mb,
                "drop_interactive_main": self.cfg.drop_interactive_main, "require_tests": self.cfg.require_tests}

    @contextlib.contextmanager
    def using(self, resources: Resources) -> Iterator[None]:
        """An executor client for the rows left; each result is also kept in a cache beside the
        output as it arrives, so a crash mid-batch does not run finished programs again."""
        cache = self.output.with_name(self.output.stem + ".results.sqlite")
        with resources.executor_client(str(cache)) as client:
            self.client = client
            try:
                yield
            finally:
                self.client = None

    unit = "samples"

    def count_in(self, rows: list[dict]) -> int:
        return sum(len(r["samples"]) if "samples" in r else 1 for r in rows)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult(extra={"executions": []})
        programs: list[Program] = []
        candidates: dict[str, tuple[dict, int, str]] = {}
        for position, row in enumerate(rows):
            samples = row["samples"] if "samples" in row else [row["response"]]
            for i, response in enumerate(samples):
                key = f"{position}#{i}"   # internal: ids given by users may repeat
                reason = tests_reason(response, self.cfg.drop_interactive_main)
                if reason and (self.cfg.require_tests or reason == "no_parsable_code"):
                    result.rejected.append({"id": row["id"], "sample": i, "reason": reason})
                    continue
                if reason:
                    result.notes[f"ran_without_tests:{reason}"] += 1
                program, dropped = runnable_program(response, self.cfg.drop_interactive_main)
                if dropped:
                    result.notes["interactive_main_block_removed"] += 1
                candidates[key] = (row, i, response)
                programs.append(Program(program, id=key, limits=self.limits))
        from tqdm import tqdm

        bar = tqdm(total=len(programs), desc="programs", unit="program", leave=False,
                   disable=not self.progress or not programs, dynamic_ncols=True)
        assert self.client is not None, "run the stage through Stage.run, which gives it an executor"
        for r in self.client.execute_many(programs, max_in_flight=self.cfg.concurrency, return_rejected=True):
            bar.update(1)
            row, i, response = candidates[r.id]
            if isinstance(r, Rejected):
                result.rejected.append({"id": row["id"], "sample": i, "reason": f"rejected_{r.code.lower()}",
                                        "message": r.message})
                continue
            record = {"id": row["id"], "sample": i, "status": r.status.value, "reason": r.reason,
                      "stderr_tail": r.stderr[-STDERR_TAIL:].decode("utf-8", "backslashreplace"),
                      "wall_time_s": r.wall_time_s, "sandbox_image": r.sandbox_image}
            result.extra["executions"].append(record)
            if r.passed:
                original = original_rejects(response)
                if original:
                    result.notes[f"original_would_reject:{original}"] += 1
                kept = {k: v for k, v in row.items() if k != "samples"}
                kept.update(response=response, sample=i, id=f"{row['id']}#{i}", instruction_id=row["id"])
                result.kept.append(kept)
            else:
                result.rejected.append({**record, "reason": r.status.value})
        bar.close()
        result.kept.sort(key=lambda r: r["id"])  # completion order varies; the file must not
        return result
