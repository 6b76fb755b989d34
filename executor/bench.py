"""Throughput benchmark: HumanEval programs through several runners, in one run, as ratios.

Workload: each HumanEval problem's canonical solution with its check (must pass) and a wrong
variant (must fail), repeated. Runners:

- original    the original SelfCodeAlign filter's machinery (executor/original_filter.py): a
              process pool whose task starts a multiprocessing.Process per program, with
              EvalPlus's guards around exec() inside a function; the baseline of the ratios
- fork        the same exec() semantics with none of that machinery: a small warm interpreter
              forks and exec()s the program; a lower bound on what the original's design costs
- floor       a small warm interpreter forks per job and runs the program as a real script,
              output through a pipe: no sandbox, no gRPC, no cleanup; the physical floor here
- subprocess  `python3 file.py` per job, no sandbox
- docker-run  `docker run --rm` per job with the sandbox image (a subset: it is slow)
- llm-sandbox the llm-sandbox package (Docker backend): one container per worker, reused,
              each program copied in and run with `docker exec` (a subset)
- epicbox     the epicbox package: a new container per program, created, filled, started,
              waited for and removed (a subset)
- pooled      this executor, warm pool (the default), served by its own process as deployed,
              with execute_many's default window of programs in flight (--window)
- fresh       this executor, a new container per job
- mixed       pooled on the workload with a looping program (0.1 s limit) after every 16th and a
              memory balloon (64 MiB limit) after every 32nd, each stopped by its limit (the
              balloon's also changes the sandbox's memory limit twice); `mixed-nospares` the
              same without warm spares
- latency     pooled, one program at a time (a unary call each): what a single caller waits
- large-output programs writing 16 MiB to each stream

Reported per runner: items/s, per-job latency p50/p99 (submission to result), and how many
canonical solutions passed, which shows the exec()-in-a-function defect directly.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.problems import load_benchmark
from executor.jobs import Limits, Program

if TYPE_CHECKING:
    from executor.client import Client

TIMEOUT_S = 10.0


@dataclass
class RunnerReport:
    runner: str
    programs: int
    seconds: float
    items_per_s: float
    p50_ms: float
    p99_ms: float
    canonical_passed: int
    canonical_total: int
    wrong_passed: int


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(name: str, outcomes: dict[str, bool], latencies: list[float], seconds: float) -> RunnerReport:
    canonical = [k for k in outcomes if "/canonical" in k]
    wrong = [k for k in outcomes if "/wrong" in k]
    return RunnerReport(
        runner=name, programs=len(outcomes), seconds=round(seconds, 3),
        items_per_s=round(len(outcomes) / seconds, 1),
        p50_ms=round(_percentile(latencies, 0.5) * 1000, 2),
        p99_ms=round(_percentile(latencies, 0.99) * 1000, 2),
        canonical_passed=sum(outcomes[k] for k in canonical), canonical_total=len(canonical),
        wrong_passed=sum(outcomes[k] for k in wrong),
    )


def _threaded(name: str, programs: list[Program], concurrency: int,
              run_one: Callable[[Program], bool]) -> RunnerReport:
    latencies: list[float] = []
    outcomes: dict[str, bool] = {}

    def timed(p: Program) -> None:
        t = time.perf_counter()
        outcomes[p.id] = run_one(p)
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, programs))
    return _report(name, outcomes, latencies, time.perf_counter() - start)


@contextmanager
def _served(pool_size: int, isolation: str = "pooled", spares: int | None = None) -> Iterator[Client]:
    """The executor as deployed: `python -m executor serve` in its own process, this process a
    client over gRPC on loopback (in one process, server and client would share a GIL), every
    sandbox warm before the client is handed out."""
    from executor.client import Client

    server = subprocess.Popen(
        [sys.executable, "-m", "executor", "serve", "--port", "0", "--pool-size", str(pool_size),
         "--isolation", isolation, "--instance", f"bench-{isolation}-{os.getpid()}"]
        + ([] if spares is None else ["--spares", str(spares)]),
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"listening on \S+:(\d+)", line)
        if not found:
            raise RuntimeError(f"the executor did not start (exit {server.wait()}): {line.strip()}")
        with Client(f"127.0.0.1:{found.group(1)}") as client:
            client.wait_until_ready(120)
            client.execute(Program("pass"))  # warm the channel
            yield client
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_executor(name: str, programs: list[Program], window: int, pool_size: int,
                 isolation: str, spares: int | None = None) -> RunnerReport:
    """`window` programs in flight (execute_many's max_in_flight): its latencies are submission to
    result, so they include the wait behind the rest of the window."""
    with _served(pool_size, isolation, spares) as client:
        sent: dict[str, float] = {}

        def source():
            for p in programs:
                sent[p.id] = time.perf_counter()
                yield p

        latencies, outcomes = [], {}
        start = time.perf_counter()
        for r in client.execute_many(source(), max_in_flight=window):
            latencies.append(time.perf_counter() - sent[r.id])
            outcomes[r.id] = r.passed
        return _report(name, outcomes, latencies, time.perf_counter() - start)


def run_subprocess(programs: list[Program], concurrency: int) -> RunnerReport:
    workdir = tempfile.mkdtemp(prefix="bench-subprocess-")

    def one(p: Program) -> bool:
        path = os.path.join(workdir, f"{abs(hash(p.id))}.py")
        with open(path, "w") as f:
            f.write(p.code)
        try:
            proc = subprocess.run([sys.executable, path], capture_output=True, timeout=TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
            return proc.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    return _threaded("subprocess", programs, concurrency, one)


def run_docker_run(programs: list[Program], concurrency: int, image: str) -> RunnerReport:
    def one(p: Program) -> bool:
        try:
            proc = subprocess.run(
                ["docker", "run", "--rm", "-i", "--network", "none", "--read-only",
                 "--memory", "1g", "--memory-swap", "1g", "--pids-limit", "128", "--cap-drop", "ALL",
                 "--security-opt", "no-new-privileges", "--entrypoint", "python3", image, "-"],
                input=p.code.encode(), capture_output=True, timeout=TIMEOUT_S + 30)
            return proc.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    return _threaded("docker-run", programs, concurrency, one)


# The image the peers run: this executor's sandbox image (same Python, same libraries), with its
# agent entrypoint taken out, since both peers give the container a command of their own, and a
# `python` on the PATH, which llm-sandbox runs. Its command ends on SIGTERM, so that stopping a
# session costs no 10 s grace period (charged to no one).
PEER_DOCKERFILE = ('FROM {base}\nUSER root\nRUN ln -sf /usr/bin/python3 /usr/local/bin/python\nENTRYPOINT []\n'
                   'CMD ["sh", "-c", "trap \'exit 0\' TERM; sleep infinity & wait"]\n')   # stops at once


def peer_image() -> str:
    import io

    import docker

    from executor.image import ensure_sandbox_image, image_exists

    client = docker.from_env()
    base = ensure_sandbox_image(client)
    digest = hashlib.sha256(PEER_DOCKERFILE.encode()).hexdigest()[:8]
    tag = f"selfalign-peer:{base.rsplit(':', 1)[-1]}-{digest}"
    if not image_exists(client, tag):
        client.images.build(fileobj=io.BytesIO(PEER_DOCKERFILE.format(base=base).encode()), tag=tag, rm=True)
    return tag


def _peer_missing(name: str, module: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{name} is not installed (pip install -e '.[bench]')"
    return None


def run_llm_sandbox(programs: list[Program], concurrency: int, image: str) -> RunnerReport:
    """llm-sandbox (Docker backend) as its README uses it: one `SandboxSession` (a container) per
    worker, each program copied in and run with `docker exec`. Its defaults otherwise: the
    container is reused without a wipe, runs as root, with Docker's default network."""
    from llm_sandbox import SandboxSession

    chunks = [programs[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    outcomes: dict[str, bool] = {}

    def worker(chunk: list[Program]) -> None:
        with SandboxSession(lang="python", image=image, keep_template=True, skip_environment_setup=True,
                            verbose=False) as session:
            for p in chunk:
                t = time.perf_counter()
                try:
                    outcomes[p.id] = session.run(p.code, timeout=TIMEOUT_S).exit_code == 0
                except Exception:
                    outcomes[p.id] = False
                latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    return _report("llm-sandbox", outcomes, latencies, time.perf_counter() - start)


def run_epicbox(programs: list[Program], concurrency: int, image: str) -> RunnerReport:
    """epicbox as its README uses it: `epicbox.run` per program, which creates a container, copies
    the files in, starts it, waits, reads the logs and removes it. Its defaults otherwise: no
    network, 64 MiB of memory and 1 s of CPU time per program (raised to this bench's 10 s)."""
    import logging

    import epicbox
    import epicbox.utils
    import structlog
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        """epicbox 1.1.0 (its latest) passes urllib3 1.x's `method_whitelist`, which urllib3 2
        renamed `allowed_methods`: without this, every `epicbox.run` raises TypeError."""

        def __init__(self, *args, method_whitelist=None, **kwargs):
            if method_whitelist is not None:
                kwargs.setdefault("allowed_methods", method_whitelist)
            super().__init__(*args, **kwargs)

    epicbox.utils.Retry = _Retry   # pyright: ignore[reportAttributeAccessIssue]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    epicbox.configure(profiles=[epicbox.Profile("python", image)])

    def one(p: Program) -> bool:
        try:
            result = epicbox.run("python", "python3 main.py", files=[{"name": "main.py", "content": p.code.encode()}],
                                 limits={"cputime": int(TIMEOUT_S), "memory": 64})
        except Exception:
            return False
        return result.get("exit_code") == 0

    return _threaded("epicbox", programs, concurrency, one)


def _exec_in_function(code: str) -> None:
    """The original filter's semantics: exec() inside a function, so top-level names land in
    a locals snapshot that the program's own functions cannot see."""
    exec(code)  # noqa: S102 - the unsandboxed baseline being measured


def run_fork(programs: list[Program], concurrency: int) -> RunnerReport:
    def one(p: Program) -> bool:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                _exec_in_function(p.code)
                code = 0
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return False
            time.sleep(0.0005)

    return _threaded("fork", programs, concurrency, one)


def run_original(programs: list[Program], concurrency: int) -> RunnerReport:
    """The original filter's machinery, per job (see executor/original_filter.py), in its own
    small process as the original's script was."""
    request = {"concurrency": concurrency, "programs": [[p.id, p.code] for p in programs]}
    proc = subprocess.run([sys.executable, "-m", "executor.original_filter"], input=json.dumps(request),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the original filter's runner failed: {proc.stderr.strip()[-2000:]}")
    answer = json.loads(proc.stdout)
    outcomes = {program_id: passed for program_id, passed, _ in answer["results"]}
    latencies = [latency for _, _, latency in answer["results"]]
    return _report("original", outcomes, latencies, answer["seconds"])


def run_latency(programs: list[Program], pool_size: int, count: int = 200) -> RunnerReport:
    """One program at a time, each sent when the last one's result is back (`Client.execute`, a
    unary call), on a warm pool: the latency a single caller sees, p50 and p99."""
    with _served(pool_size) as client:
        latencies, outcomes = [], {}
        start = time.perf_counter()
        for p in programs[:count]:
            t = time.perf_counter()
            outcomes[p.id] = client.execute(p).passed
            latencies.append(time.perf_counter() - t)
        return _report("latency", outcomes, latencies, time.perf_counter() - start)


def _run_as_script(code: str) -> None:
    """`python3 main.py` semantics: one module namespace named __main__."""
    exec(compile(code, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102


def run_floor(programs: list[Program], concurrency: int) -> RunnerReport:
    """The physical floor for this workload here: a warm interpreter (a fresh one, see
    _in_fresh_process) forks per job and runs the program as a real script, output read through
    a pipe; no sandbox, no gRPC, no cleanup. What the executor adds is measured against this."""
    def one(p: Program) -> bool:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                _run_as_script(p.code)
                sys.stdout.flush()
                code = 0
            except SystemExit as exc:
                code = 0 if exc.code in (None, 0) else 1
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        deadline = time.monotonic() + TIMEOUT_S
        while os.read(r, 65536):   # the output, as the executor reads it
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                break
        os.close(r)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0

    return _threaded("floor", programs, concurrency, one)


LARGE_OUTPUT = "import sys\nsys.stdout.write('o' * (16 << 20))\nsys.stderr.write('e' * (16 << 20))\n"


def run_large_output(pool_size: int, count: int = 4) -> RunnerReport:
    """Programs that each write 16 MiB to stdout and 16 MiB to stderr: the reply's transport and
    parsing (quadratic before, 7.3 s a program; linear now)."""
    with _served(pool_size) as client:
        limits = Limits(timeout_s=60, max_output_bytes=16 << 20)
        latencies, outcomes = [], {}
        start = time.perf_counter()
        for i in range(count):
            t = time.perf_counter()
            r = client.execute(Program(LARGE_OUTPUT, id=f"large-{i}/canonical", limits=limits))
            latencies.append(time.perf_counter() - t)
            outcomes[r.id] = r.passed and len(r.stdout) == len(r.stderr) == 16 << 20
        return _report("large-out", outcomes, latencies, time.perf_counter() - start)


def format_table(reports: list[RunnerReport], baseline: str = "original", floor: str = "floor") -> str:
    base = next((r for r in reports if r.runner == baseline), None)
    low = next((r for r in reports if r.runner == floor), None)
    lines = [f"{'runner':<11} {'programs':>8} {'items/s':>9} {'vs ' + baseline:>11} {'vs ' + floor:>9} "
             f"{'p50 ms':>8} {'p99 ms':>8} {'canonical passed':>17} {'wrong passed':>12}"]
    for r in reports:
        ratio = f"{r.items_per_s / base.items_per_s:.2f}x" if base and base.items_per_s else "-"
        to_floor = f"{r.items_per_s / low.items_per_s:.2f}x" if low and low.items_per_s else "-"
        lines.append(f"{r.runner:<11} {r.programs:>8} {r.items_per_s:>9.1f} {ratio:>11} {to_floor:>9} "
                     f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {f'{r.canonical_passed}/{r.canonical_total}':>17} "
                     f"{r.wrong_passed:>12}")
    return "\n".join(lines)


def format_summary(rounds: list[list[RunnerReport]], baseline: str = "original", floor: str = "floor") -> str:
    """Each runner's items/s and its ratios over the rounds (min / median): a ratio is taken
    within one round, where every runner met the same machine load."""
    def ratios(name: str, other: str) -> list[float]:
        out = []
        for reports in rounds:
            by = {r.runner: r for r in reports}
            if name in by and other in by and by[other].items_per_s:
                out.append(by[name].items_per_s / by[other].items_per_s)
        return out

    def span(values: list[float], unit: str = "x") -> str:
        return f"{min(values):.2f}{unit} / {statistics.median(values):.2f}{unit}" if values else "-"

    names = list(dict.fromkeys(r.runner for reports in rounds for r in reports))
    lines = [f"{len(rounds)} rounds, min / median",
             f"{'runner':<11} {'items/s':>17} {'vs ' + baseline:>17} {'vs ' + floor:>17}"]
    for name in names:
        speeds = [r.items_per_s for reports in rounds for r in reports if r.runner == name]
        lines.append(f"{name:<11} {span(speeds, ''):>17} {span(ratios(name, baseline)):>17} "
                     f"{span(ratios(name, floor)):>17}")
    return "\n".join(lines)


def _in_fresh_process(runner: Callable[..., RunnerReport], *args) -> RunnerReport:
    """Run a forking runner in a new small interpreter: forked from this one after a gRPC client
    has run here, its children inherit gRPC's threads and fork handlers, and fork and floor fell
    from ~325 to ~92 items/s in every round after the first."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(runner, *args).result()


def run_round(runners: list[str], programs: list[Program], args) -> list[RunnerReport]:
    problems = len(programs) // 2

    def subset(count: int) -> list[Program]:
        """`count` programs, half canonical and half wrong, for the slow runners."""
        half = count // 2
        return programs[:half] + programs[problems: problems + half]

    reports: list[RunnerReport] = []
    for name in runners:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        if name in ("pooled", "fresh"):
            reports.append(run_executor(name, programs, args.window, args.pool_size, name))
        elif name == "subprocess":
            reports.append(run_subprocess(programs, args.concurrency))
        elif name == "docker-run":
            import docker

            from executor.image import ensure_sandbox_image

            image = ensure_sandbox_image(docker.from_env())
            reports.append(run_docker_run(subset(args.docker_run_limit), args.concurrency, image))
        elif name in ("llm-sandbox", "epicbox"):
            missing = _peer_missing(name, "llm_sandbox" if name == "llm-sandbox" else "epicbox")
            if missing:
                print(f"skipping {name}: {missing}", file=sys.stderr)
                continue
            runner = run_llm_sandbox if name == "llm-sandbox" else run_epicbox
            reports.append(runner(subset(args.docker_run_limit), args.concurrency, peer_image()))
        elif name == "original":
            reports.append(run_original(programs, args.concurrency))
        elif name == "fork":
            reports.append(_in_fresh_process(run_fork, programs, args.concurrency))
        elif name == "floor":
            reports.append(_in_fresh_process(run_floor, programs, args.concurrency))
        elif name == "large-output":
            reports.append(run_large_output(args.pool_size))
        elif name == "latency":
            reports.append(run_latency(subset(200), args.pool_size))
        elif name in ("mixed", "mixed-nospares"):
            reports.append(run_executor(name, mixed_programs(programs), args.window, args.pool_size, "pooled",
                                        spares=0 if name == "mixed-nospares" else None))
    return reports


# The mixed workload's hostile programs: each is stopped by a limit (its sandbox is then cleaned).
LOOP = Program("while True:\n    pass\n", limits=Limits(timeout_s=0.1))
BALLOON = Program("x = bytearray(256 << 20)\n", limits=Limits(memory_mb=64))


def mixed_programs(programs: list[Program]) -> list[Program]:
    """The workload with a program that loops into its 0.1 s limit after every 16th and one that
    goes over its 64 MiB after every 32nd. They count as `wrong` (they must not pass); the
    canonical solutions must all still pass."""
    out: list[Program] = []
    for i, p in enumerate(programs, 1):
        out.append(p)
        if i % 16 == 0:
            out.append(Program(LOOP.code, id=f"loop-{i}/wrong", limits=LOOP.limits))
        if i % 32 == 0:
            out.append(Program(BALLOON.code, id=f"balloon-{i}/wrong", limits=BALLOON.limits))
    return out


def humaneval_programs(limit: int | None = None) -> list[Program]:
    """The workload: each HumanEval problem's canonical solution with its check (must pass), then
    each with its body replaced by `return None` (a plausible wrong answer: must fail)."""
    problems = load_benchmark("humaneval").problems[:limit]
    right = [Program(p.check_program(p.prompt + p.canonical_solution), id=f"{p.task_id}/canonical")
             for p in problems]
    wrong = [Program(p.check_program(p.prompt + "    return None\n"), id=f"{p.task_id}/wrong") for p in problems]
    return right + wrong


RUNNERS = ("original", "fork", "floor", "subprocess", "docker-run", "llm-sandbox", "epicbox", "pooled", "fresh",
           "large-output", "mixed", "mixed-nospares", "latency")


def main(args) -> int:
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = [r for r in runners if r not in RUNNERS]
    if unknown or args.repeat < 1:
        print(f"unknown runner(s) {', '.join(unknown)}; known: {', '.join(RUNNERS)}" if unknown
              else "--repeat must be at least 1", file=sys.stderr)
        return 2
    programs = humaneval_programs(args.limit or None)
    print(f"workload: {len(programs)} HumanEval programs ({len(programs) // 2} canonical + "
          f"{len(programs) // 2} wrong), concurrency {args.concurrency}, pool {args.pool_size}, "
          f"{os.cpu_count()} cores, {args.repeat} round(s)", file=sys.stderr)
    rounds: list[list[RunnerReport]] = []
    for i in range(args.repeat):
        rounds.append(run_round(runners, programs, args))
        print(f"round {i + 1}\n{format_table(rounds[-1])}\n", flush=True)
    if args.repeat > 1:
        print(format_summary(rounds))
    if args.output:
        Path(args.output).write_text(json.dumps([[asdict(r) for r in reports] for reports in rounds], indent=2) + "\n")
    return 0
