"""The original SelfCodeAlign execution filter's way of running a program, rebuilt as a bench runner.

starcoder2-self-align's `execution_filter.py` (its `fork_run`, the path without a container
server) ran each extracted program like this, and the bench measures our executor against it:

- a standalone script holds a `ProcessPoolExecutor(max_workers=cpu_count())` (the default fork
  start method) and submits one task per program;
- the task, in a pool worker, starts a `multiprocessing.Process` for the program and joins it
  with a 10 s timeout; the program passed when the process's exit code is 0;
- the process enters a fresh temporary directory, applies EvalPlus's `reliability_guard`
  (1 GiB address-space, data and stack limits; destructive functions set to None), swallows
  stdin/stdout/stderr into a string buffer, arms a 4 s SIGALRM timer and `exec()`s the code
  inside a function (the defect that rejects correct programs with module-level helpers).

It uses EvalPlus's own guards (standard library only), as the original did. One difference: a
process still running after the join is killed here, where the original left it running.

This module is run as its own process (`python -m executor.original_filter`) so that its pool
workers fork from a small interpreter, as the original's script was, not from the benchmark
process with gRPC and Docker loaded. It reads `{"concurrency": N, "programs": [[id, code], ...]}`
as JSON on stdin and writes `{"seconds": S, "results": [[id, passed, latency_s], ...]}`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PROCESS_TIMEOUT_S = 10.0     # the original's join timeout
EXEC_TIME_LIMIT_S = 4.0      # its SIGALRM limit inside the process
MEMORY_LIMIT_BYTES = 1 << 30

# Where scripts/setup.sh installs EvalPlus without its dependencies.
EVALPLUS_FALLBACK = Path.home() / ".cache" / "selfalign" / "evalplus-0.3.1"


def _import_guards():
    try:
        import evalplus.eval.utils as guards  # pyright: ignore[reportMissingImports]  (setup.sh: --target)
    except ImportError:
        sys.path.append(str(EVALPLUS_FALLBACK))
        try:
            import evalplus.eval.utils as guards  # pyright: ignore[reportMissingImports]
        except ImportError as exc:
            raise SystemExit(f"the original filter's runner needs EvalPlus ({exc}): run scripts/setup.sh, "
                             f"or pip install --no-deps --target {EVALPLUS_FALLBACK} evalplus==0.3.1 "
                             "and pip install psutil") from None
    return guards


def _run_program(code: str) -> None:
    """The child process: guards on, then exec() in this function's scope."""
    guards = _import_guards()
    with guards.create_tempdir():
        # reliability_guard sets these to None; the temporary directory's cleanup needs them.
        kept = {name: getattr(os, name) for name in ("rmdir", "chdir", "getcwd")}
        kept_rmtree = shutil.rmtree
        guards.reliability_guard(maximum_memory_bytes=MEMORY_LIMIT_BYTES)
        with guards.swallow_io(), guards.time_limit(EXEC_TIME_LIMIT_S):
            exec(code)  # noqa: S102 - the unsandboxed baseline being measured
        for name, fn in kept.items():
            setattr(os, name, fn)
        shutil.rmtree = kept_rmtree


def _task(item: tuple[str, str]) -> tuple[str, bool, float]:
    """One pool task: a process per program, joined with a timeout."""
    program_id, code = item
    start = time.perf_counter()
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - as the original's worker did
    process = multiprocessing.Process(target=_run_program, args=(code,))
    process.start()
    process.join(timeout=PROCESS_TIMEOUT_S)
    if process.exitcode is None:
        process.kill()
        process.join()
    return program_id, process.exitcode == 0, time.perf_counter() - start


def run(programs: list[tuple[str, str]], concurrency: int) -> tuple[float, list[tuple[str, bool, float]]]:
    """Run the programs the original's way; the pool is started and warmed before the clock
    starts (the original's pool lived across its chunks of 10,000 programs)."""
    _import_guards()
    with ProcessPoolExecutor(max_workers=concurrency, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_task, [("warm", "pass")] * concurrency))
        start = time.perf_counter()
        results = list(pool.map(_task, programs))
        return time.perf_counter() - start, results


def main() -> int:
    request = json.load(sys.stdin)
    programs = [(str(i), str(code)) for i, code in request["programs"]]
    seconds, results = run(programs, int(request["concurrency"]))
    json.dump({"seconds": seconds, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
