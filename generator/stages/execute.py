"""Execution filter: run each sample's code and tests in the executor, keep the passing ones.

A sample's program is all its fenced Python blocks that parse, in order, run as a real script,
so solutions with module-level imports and helper functions are judged correctly (the original
filter's exec() inside a function rejected them). Samples without any test are dropped: a
program that checks nothing passes for nothing. Every candidate's status and the tail of its
stderr are written to the `executions` side file; the failures also to the rejects file.
"""

from __future__ import annotations

from executor import Limits, Program
from executor.client import Client, Rejected
from generator.prompts import has_tests, program_of
from generator.stage import BatchResult, Stage

STDERR_TAIL = 2000


class Execute(Stage):
    name = "execute"
    batch_size = 512
    side_files = ("executions",)

    def __init__(self, output, client: Client | None, timeout_s: float | None = None, memory_mb: int | None = None,
                 concurrency: int = 64, config: dict | None = None, progress: bool = True) -> None:
        super().__init__(output, config, progress)
        self.client = client
        self.limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb)
        self.concurrency = concurrency

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult(extra={"executions": []})
        programs: list[Program] = []
        candidates: dict[str, tuple[dict, int, str]] = {}
        for row in rows:
            samples = row["samples"] if "samples" in row else [row["response"]]
            for i, response in enumerate(samples):
                key = f"{row['id']}#{i}"
                program = program_of(response)
                reason = None if program else "no_parsable_code"
                if reason is None and not has_tests(program):
                    reason = "no_tests"
                if reason:
                    result.rejected.append({"id": row["id"], "sample": i, "reason": reason})
                    continue
                candidates[key] = (row, i, response)
                programs.append(Program(program, id=key, limits=self.limits))
        for r in self.client.execute_many(programs, max_in_flight=self.concurrency, return_rejected=True):
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
                kept = {k: v for k, v in row.items() if k != "samples"}
                kept.update(response=response, sample=i, id=f"{row['id']}#{i}", instruction_id=row["id"])
                result.kept.append(kept)
            else:
                result.rejected.append({**record, "reason": r.status.value})
        result.kept.sort(key=lambda r: r["id"])  # completion order varies; the file must not
        return result
