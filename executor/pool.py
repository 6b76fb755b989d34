"""A warm pool of sandboxes and the queue of jobs they take.

Each slot is a thread that owns one sandbox. It starts its container *before* taking a job,
so in steady state no job pays for a container start, and it replaces the container after a
job that left something the agent could not clean, or that killed the container (the kernel's
OOM killer taking the agent). A timeout or a memory kill of the job alone is cleaned like any
other end. `fresh` isolation is the same machinery replacing the container after every job: one
container per job, but started ahead.

Replacing a container takes a few hundred milliseconds of Docker's time. So that a slot does not
stall its queue for that long, the pool keeps `spares` started sandboxes: a slot whose sandbox is
retired takes a spare at once, and the spare maker starts the next spare in the background. A
spare has run nothing; the engine's restart makes the spares of before it useless, and they are
removed, never used.

A sandbox that dies under a job is the sandbox's fault, not the program's: the job is retried
once on a new container, and only if that fails too is it reported as SANDBOX_ERROR. When the
Docker engine itself is unreachable, queued and new jobs fail at once with EngineUnavailable
(the server turns that into UNAVAILABLE) and the pool rebuilds itself when the engine returns.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import docker
import docker.errors

from executor import protocol
from executor.fair_queue import FairQueue
from executor.jobs import ExecutionResult, Program, Status
from executor.limits import ResolvedLimits
from executor.sandbox import (
    LABEL_INSTANCE,
    LABEL_OWNER,
    ChannelUnavailable,
    Sandbox,
    SandboxConfig,
    SandboxError,
    owner_label,
    remove_leftovers,
)

log = logging.getLogger(__name__)

# Time the agent may take beyond a job's own limit to clean up and answer.
AGENT_GRACE_S = 10.0
ENGINE_CHECK_INTERVAL_S = 1.0
SWEEP_EVERY_CHECKS = 30


class Unavailable(Exception):
    """The server cannot run programs now. Nothing is wrong with the program: a client sends it
    again later or elsewhere (gRPC UNAVAILABLE). Any other exception is a bug (INTERNAL)."""


class EngineUnavailable(Unavailable):
    """The Docker engine cannot be reached; the message names where it was looked for."""


class ShuttingDown(Unavailable):
    """The server is stopping and takes no more work."""


@dataclass
class _Job:
    program: Program
    limits: ResolvedLimits
    future: Future
    submitted: float


@dataclass(frozen=True)
class PoolState:
    isolation: str
    size: int
    ready: int
    busy: int
    queued: int
    engine_reachable: bool
    engine_error: str
    completed: int


class Pool:
    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient],
        config: SandboxConfig,
        size: int,
        isolation: str = "pooled",
        instance: str | None = None,
        on_result: Callable[[ExecutionResult, float], None] | None = None,
        on_engine_change: Callable[[bool], None] | None = None,
        image_provider: Callable[[docker.DockerClient], str] | None = None,
        spares: int = 1,
    ) -> None:
        if isolation not in ("pooled", "fresh"):
            raise ValueError(f"isolation must be 'pooled' or 'fresh', not {isolation!r}")
        if size < 1:
            raise ValueError("pool size must be at least 1")
        if spares < 0:
            raise ValueError("spares must be 0 or more")
        self.spares = spares
        self._spare_stock: queue.Queue[tuple[int, Sandbox]] = queue.Queue()
        self._spare_taken = threading.Event()
        self._spares_starting = 0
        self._client_factory = client_factory
        self.instance = instance or f"embedded-{uuid.uuid4().hex[:8]}"
        self.config = replace(
            config, labels={**config.labels, LABEL_INSTANCE: self.instance, LABEL_OWNER: owner_label()}
        )
        self.size = size
        self.isolation = isolation
        self._on_result = on_result
        self._on_engine_change = on_engine_change
        self._image_provider = image_provider
        self._queue: FairQueue[_Job] = FairQueue()
        self._lock = threading.Lock()
        self._ready = 0
        self._busy = 0
        self._completed = 0
        self._stopping = threading.Event()
        self._engine_ok = threading.Event()
        self._engine_error = "not checked yet"
        self._closing = threading.Event()
        self._engine_checked = False
        self._generation = 0  # bumped when the engine is lost: older sandboxes are dead
        self._client: docker.DockerClient | None = None
        self._remover = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-remove")
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def docker(self) -> docker.DockerClient:
        """The engine's client, once connected (EngineUnavailable before)."""
        if self._client is None:
            raise EngineUnavailable("the Docker engine has not been reached yet")
        return self._client

    def start(self) -> None:
        """Connect to the engine, clear leftovers of a crashed predecessor, start the slots.

        Does not fail when the engine is down: the pool reports NOT_SERVING and waits for it.
        """
        if self._check_engine():
            removed = remove_leftovers(self.docker, self.instance)
            if removed:
                log.info("removed %d sandbox container(s) left by an earlier server", removed)
        for i in range(self.size):
            t = threading.Thread(target=self._slot, name=f"slot-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._watch_engine, name="engine-watch", daemon=True)
        t.start()
        self._threads.append(t)
        for i in range(self.spares):   # one maker per spare: container starts wait on the engine, not the CPU
            t = threading.Thread(target=self._make_spares, name=f"spare-maker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        """Block until every slot has a started sandbox (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._ready + self._busy >= self.size:
                    return True
            time.sleep(0.05)
        return False

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def close(self, drain: bool = True, timeout_s: float = 60.0) -> None:
        """Stop the slots (after the queued jobs if `drain`) and remove every container. Prompt
        in any state: slots that have no sandbox (the image never built, the engine is gone) stop
        at once instead of waiting out the timeout."""
        self._closing.set()
        if not drain:
            self._fail_queued(ShuttingDown("the executor is shutting down"))
        for _ in range(self.size):
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t.name.startswith("slot-"):
                t.join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        self._spare_taken.set()
        for t in self._threads:
            if t.name.startswith("spare-maker"):
                t.join(max(0.0, deadline - time.monotonic()))
        while True:   # the spares go with the rest (remove_leftovers below also finds them)
            try:
                self._retire(self._spare_stock.get_nowait()[1])
            except queue.Empty:
                break
        self._fail_queued(ShuttingDown("the executor shut down"))
        self._remover.shutdown(wait=True)
        if self._client is not None:
            try:
                remove_leftovers(self._client, self.instance, include_own=True)
            except docker.errors.DockerException:
                pass

    # -- jobs ----------------------------------------------------------------------------

    def submit(self, program: Program, limits: ResolvedLimits, client: str = "") -> Future:
        """Queue a job; `client` says whose it is, for the round robin across clients."""
        if self._stopping.is_set():
            raise ShuttingDown("the executor is shutting down")
        if not self._engine_ok.is_set():
            raise EngineUnavailable(self._engine_error)
        fut: Future = Future()
        self._queue.put(_Job(program, limits, fut, time.monotonic()), client)
        return fut

    def state(self) -> PoolState:
        with self._lock:
            return PoolState(
                self.isolation, self.size, self._ready, self._busy, self._queue.qsize(),
                self._engine_ok.is_set(), "" if self._engine_ok.is_set() else self._engine_error,
                self._completed,
            )

    @property
    def spares_ready(self) -> int:
        """Started spares waiting for a slot to take one."""
        return self._spare_stock.qsize()

    @property
    def engine_reachable(self) -> bool:
        return self._engine_ok.is_set()

    # -- slots ---------------------------------------------------------------------------

    def _slot(self) -> None:
        sandbox: Sandbox | None = None
        generation = self._generation
        while not self._stopping.is_set():
            if sandbox is not None and generation != self._generation:
                self._count(ready=-1)
                self._retire(sandbox)  # it did not survive the engine's restart
                sandbox = None
            if sandbox is None:
                if self._closing.is_set():
                    break   # closing, and no sandbox to drain the queue with: do not wait for one
                generation = self._generation
                sandbox = self._take_spare(generation) or self._start_sandbox()
                if sandbox is None:
                    continue
                self._count(ready=+1)
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if job is None:
                break
            if not job.future.set_running_or_notify_cancel():
                continue
            self._count(ready=-1, busy=+1)
            result, keep = self._run(sandbox, job)
            if not keep:
                self._retire(sandbox)
                sandbox = None
            self._count(busy=-1, ready=+1 if sandbox is not None else 0, completed=1)
            if isinstance(result, BaseException):
                job.future.set_exception(result)
                continue
            if self._on_result is not None:
                self._on_result(result, time.monotonic() - job.submitted)
            job.future.set_result(result)
        if sandbox is not None:
            self._count(ready=-1)
            self._retire(sandbox)

    def _take_spare(self, generation: int) -> Sandbox | None:
        """A started sandbox of this engine generation from the spares, if one is ready."""
        while True:
            try:
                made_in, sandbox = self._spare_stock.get_nowait()
            except queue.Empty:
                return None
            self._spare_taken.set()
            if made_in == generation:
                return sandbox
            self._retire(sandbox)   # started before the engine restarted: dead

    def _make_spares(self) -> None:
        """Keep `spares` started sandboxes ready, off every slot's critical path (one of the
        `spares` threads that each start one at a time)."""
        while not self._stopping.is_set() and not self._closing.is_set():
            with self._lock:
                wanted = (self._engine_ok.is_set()
                          and self._spare_stock.qsize() + self._spares_starting < self.spares)
                if wanted:
                    self._spares_starting += 1
            if not wanted:
                self._spare_taken.wait(0.5)
                self._spare_taken.clear()
                continue
            try:
                generation = self._generation
                sandbox = self._start_sandbox()
                if sandbox is not None and (self._closing.is_set() or generation != self._generation):
                    self._retire(sandbox)
                elif sandbox is not None:
                    self._spare_stock.put((generation, sandbox))
            finally:
                with self._lock:
                    self._spares_starting -= 1

    def _start_sandbox(self, memory_mb: int | None = None) -> Sandbox | None:
        if not self._engine_ok.wait(timeout=0.5):
            return None
        config = self.config if memory_mb is None else replace(self.config, memory_mb=memory_mb)
        sandbox = Sandbox(self.docker, config)
        try:
            sandbox.start()
            return sandbox
        except ChannelUnavailable as exc:
            if self.config.channel_dir is not None:
                log.warning("%s; jobs go over the containers' attached streams instead", exc)
                self.config = replace(self.config, channel_dir=None)
            return self._start_sandbox(memory_mb)
        except SandboxError as exc:
            log.warning("sandbox start failed: %s", exc)
            if not self._check_engine():
                return None
            time.sleep(1.0)  # the engine is up but refuses: do not spin
            return None

    def _run(self, sandbox: Sandbox, job: _Job) -> tuple[ExecutionResult | BaseException, bool]:
        """Run a job, retrying once on a new sandbox if the sandbox failed under it.

        Returns the result (or an exception for the caller) and whether `sandbox` may be reused.
        """
        if sandbox.memory_mb != job.limits.memory_mb:
            try:
                sandbox.set_memory(job.limits.memory_mb)
            except SandboxError as exc:
                # Some runtimes (gVisor) cannot change a running container's limits: run this
                # job in a container created with its limit instead.
                log.info("%s; starting a sandbox with %d MiB for this job", exc, job.limits.memory_mb)
                self._retire(sandbox)
                fresh = self._start_sandbox(memory_mb=job.limits.memory_mb)
                if fresh is None:
                    return self._sandbox_error(job, f"{exc}; no sandbox with that limit could be started"), False
                result, _ = self._run(fresh, job)
                self._retire(fresh)
                return result, False
        try:
            reply = self._ask(sandbox, job)
        except SandboxError as first:
            if sandbox.oom_killed():
                return self._oom_result(job, sandbox), False
            self._retire(sandbox)
            if not self._check_engine():
                return EngineUnavailable(self._engine_error), False
            log.warning("sandbox %s failed under job %r (%s); retrying once on a new one",
                        sandbox.short_id, job.program.id, first)
            retry = self._start_sandbox(memory_mb=job.limits.memory_mb)
            if retry is None:
                return self._sandbox_error(job, f"{first}; no new sandbox could be started"), False
            try:
                reply = self._ask(retry, job)
            except SandboxError as second:
                oom = retry.oom_killed()
                self._retire(retry)
                if oom:
                    return self._oom_result(job, retry), False
                return self._sandbox_error(job, f"{first}; on retry: {second}"), False
            self._retire(retry)
            return self._result(job, reply), False
        # Kept whenever the agent found it clean, a timeout or a memory kill included: the agent
        # kills, reaps, wipes and checks after those exactly as after a passing program, and a
        # program cannot make its own job end in one to escape a check. Replacing the container
        # after each cost about 240 ms of CPU (the `mixed` bench row: 49 -> 143 items/s).
        keep = self.isolation == "pooled" and bool(reply.get("clean", False))
        return self._result(job, reply), keep

    def _ask(self, sandbox: Sandbox, job: _Job) -> protocol.Reply:
        """Send the job; the sandbox already has the job's memory limit (see `_run`)."""
        nonce = secrets.token_hex(16)
        request = protocol.Job(
            id=job.program.id, nonce=nonce, code=job.program.code,
            stdin_b64=base64.b64encode(job.program.stdin).decode(), timeout_s=job.limits.timeout_s,
            max_output_bytes=job.limits.max_output_bytes, memory_mb=job.limits.memory_mb)
        reply = sandbox.run(request, timeout_s=job.limits.timeout_s + AGENT_GRACE_S)
        # The nonce proves the answer came from the agent for this job, not from a program
        # that wrote a forged line into the agent's output (possible where /proc/1/fd is open).
        if reply.get("nonce") != nonce:
            raise SandboxError("the sandbox's answer did not carry this job's nonce (protocol violated)")
        if "agent_error" in reply:   # retried once on a new sandbox, like any sandbox failure
            raise SandboxError(f"agent error: {reply['agent_error']}")
        return reply

    def _result(self, job: _Job, reply: protocol.Reply) -> ExecutionResult:
        return ExecutionResult(
            id=job.program.id,
            status=Status(reply.get("status")),
            exit_code=reply.get("exit_code"),
            signal=reply.get("signal"),
            stdout=base64.b64decode(reply.get("stdout_b64", "")),
            stderr=base64.b64decode(reply.get("stderr_b64", "")),
            stdout_truncated=reply.get("stdout_truncated", False),
            stderr_truncated=reply.get("stderr_truncated", False),
            wall_time_s=reply.get("wall_time_s", 0.0),
            cpu_time_s=reply.get("cpu_time_s", 0.0),
            peak_memory_mb=reply.get("peak_memory_mb", 0.0),
            reason=reply.get("reason", ""),
            sandbox_image=self.config.image,
        )

    def _oom_result(self, job: _Job, sandbox: Sandbox) -> ExecutionResult:
        return ExecutionResult(
            id=job.program.id, status=Status.MEMORY_LIMIT, signal=9,
            reason=f"exceeded the memory limit of {job.limits.memory_mb} MiB; the kernel "
                   "killed the whole sandbox",
            peak_memory_mb=float(job.limits.memory_mb), sandbox_image=self.config.image,
        )

    def _sandbox_error(self, job: _Job, reason: str) -> ExecutionResult:
        return ExecutionResult(
            id=job.program.id, status=Status.SANDBOX_ERROR, reason=reason,
            sandbox_image=self.config.image,
        )

    def _retire(self, sandbox: Sandbox) -> None:
        """Remove a container in the background so the slot can start the next one now."""
        try:
            self._remover.submit(sandbox.remove)
        except RuntimeError:  # shutting down: remove inline
            sandbox.remove()

    def _count(self, ready: int = 0, busy: int = 0, completed: int = 0) -> None:
        with self._lock:
            self._ready += ready
            self._busy += busy
            self._completed += completed

    # -- engine --------------------------------------------------------------------------

    def _check_engine(self) -> bool:
        try:
            if self._client is None:
                self._client = self._client_factory()
            self._client.ping()
        except Exception as exc:  # docker raises several unrelated types here
            self._set_engine(False, f"Docker engine unreachable at {_engine_address()}: {exc}")
            return False
        if not self.config.image and self._image_provider is not None:
            try:
                self.config = replace(self.config, image=self._image_provider(self._client))
            except Exception as exc:
                self._set_engine(False, f"sandbox image unavailable: {exc}")
                return False
        self._set_engine(True, "")
        return True

    def _set_engine(self, ok: bool, error: str) -> None:
        was = self._engine_ok.is_set()
        first = not self._engine_checked
        self._engine_checked = True
        if ok:
            self._engine_ok.set()
        else:
            self._engine_error = error
            self._engine_ok.clear()
        if was != ok and not first:
            log.warning("Docker engine %s", "reachable again" if ok else f"lost: {error}")
            if not ok:
                self._generation += 1
                self._fail_queued(EngineUnavailable(error))
            if self._on_engine_change is not None:
                self._on_engine_change(ok)

    def _watch_engine(self) -> None:
        ticks = 0
        while not self._stopping.wait(ENGINE_CHECK_INTERVAL_S):
            if self._check_engine():
                ticks += 1
                if ticks % SWEEP_EVERY_CHECKS == 0:
                    self._sweep_exited()

    def _sweep_exited(self) -> None:
        """Remove this pool's containers that exited but were not removed (a removal that failed,
        e.g. while the engine was restarting): a long-running server must not accumulate them."""
        try:
            for c in self.docker.containers.list(
                    all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}", "status": "exited"}):
                c.remove(force=True)
        except Exception as exc:   # docker raises several unrelated types (an engine that just went
            # away: requests' ConnectionError), and an exception here would end the engine watch
            log.debug("sweep of exited sandboxes failed: %s", exc)

    def _fail_queued(self, exc: BaseException) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._queue.put(None)  # keep stop markers for the slots
                return
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(exc)


def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
