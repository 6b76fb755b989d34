"""The client library the generator and trainer use to run programs.

`AsyncClient` holds the logic; `Client` is the same API for synchronous code, driving an
AsyncClient on a private event loop thread.

`execute_many` streams programs to one or more servers with a bounded number in flight and
yields results as they complete. Each server (target) pulls work while it has capacity, so a
faster or less loaded server takes more. When a stream breaks (server restarted, network
blip) the programs that had no result yet go back to the shared queue and are resent, to the
same server after a backoff or to another one: every program gets exactly one result. A
program whose server failed under it `max_attempts` times gets a SANDBOX_ERROR result instead
of being retried forever (it may be what kills the server).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import queue
import random
import threading
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable
from dataclasses import dataclass, field
from typing import Literal, overload

import grpc
import grpc.aio

from executor.cache import ResultCache
from executor.jobs import KEEP_QUEUED_KEY, SERVICE_NAME, STREAM_TAKEN_KEY, ExecutionResult, Limits, Program, Status
from executor.v1 import executor_pb2 as pb
from executor.v1 import executor_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED}
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
]


class ExecutorError(Exception):
    """The executor refused a program or could not be reached; `code` is the gRPC status."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, program_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.program_id = program_id


# Largest request the client sends: the server refuses larger messages at the transport,
# which would end the whole stream (and the innocent programs on it) rather than this program.
MAX_REQUEST_BYTES = (64 << 20) - (64 << 10)


def request_problem(program: Program) -> tuple[str, str] | None:
    """(status code name, message) when `program` cannot be sent as it is, else None.

    Checked before sending, so a bad program is refused at once and alone: a string with a lone
    surrogate cannot be encoded (it used to stop the stream and hang the batch), and a request
    over the transport limit would break the stream for every program on it.
    """
    size = 0
    for name in ("id", "language", "code", "stdin"):
        value = getattr(program, name)
        if isinstance(value, str):
            try:
                value = value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return "INVALID_ARGUMENT", f"{name} is not valid Unicode text ({exc.reason} at position {exc.start})"
        size += len(value)
    if size > MAX_REQUEST_BYTES:
        return "RESOURCE_EXHAUSTED", f"the request is {size} bytes, over the limit of {MAX_REQUEST_BYTES}"
    return None


@dataclass(frozen=True)
class Rejected:
    """A program the server refused to run (bad input); yielded with `return_rejected`."""

    id: str
    code: str
    message: str


@dataclass
class ClientConfig:
    targets: list[str]
    token: str | None = None
    tls_root_cert: bytes | None = None
    tls_client_cert: bytes | None = None
    tls_client_key: bytes | None = None
    cache_path: str | None = None
    retry_timeout_s: float = 120.0   # give up after a target is unreachable this long
    max_attempts: int = 3            # server failures under one program before SANDBOX_ERROR
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    extra_channel_options: list = field(default_factory=list)
    # A balanced target (dns:///name:port, ipv4:a:p,b:p, ipv6:...) is one channel over every
    # backend the name resolves to; execute_many opens this many streams on it, which gRPC's
    # round_robin spreads over the healthy backends, and a stream carries at most
    # `rotate_after` programs before a new one is opened (so a backend that comes back, or a
    # new one, gets its share).
    streams_per_balanced_target: int = 8
    rotate_after: int = 200


BALANCED_SCHEMES = ("dns:", "ipv4:", "ipv6:")


def is_balanced(target: str) -> bool:
    return target.startswith(BALANCED_SCHEMES)


# round_robin over the name's backends, with the standard health service deciding which of them
# are eligible (the server reports NOT_SERVING without a Docker engine).
BALANCED_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}],
                                      "healthCheckConfig": {"serviceName": SERVICE_NAME}})


def split_targets(targets: str | Iterable[str]) -> list[str]:
    """HOST:PORT targets, comma-separated or listed; a balanced target keeps its own commas."""
    items = [targets] if isinstance(targets, str) else list(targets)
    out: list[str] = []
    for item in items:
        item = item.strip()
        if is_balanced(item):
            out.append(item)
        else:
            out.extend(t.strip() for t in item.split(",") if t.strip())
    return out


# execute_many's default window: programs sent and not yet answered. Well above twice a pool,
# so that the programs go to a server in batches (ExecuteBatches) with its sandboxes kept busy.
MAX_IN_FLIGHT = 64


class AsyncClient:
    def __init__(self, targets: str | Iterable[str], *, token: str | None = None,
                 tls_root_cert: bytes | None = None, tls_client_cert: bytes | None = None,
                 tls_client_key: bytes | None = None, cache_path: str | None = None,
                 retry_timeout_s: float = 120.0, max_attempts: int = 3) -> None:
        targets = split_targets(targets)
        if not targets:
            raise ValueError("at least one target (HOST:PORT) is needed")
        self.config = ClientConfig(
            targets, token, tls_root_cert, tls_client_cert, tls_client_key, cache_path,
            retry_timeout_s, max_attempts,
        )
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[pb_grpc.ExecutorStub] = []   # one per target
        self._lanes: list[int] = []   # the target of each stream execute_many keeps open
        self._next_target = itertools.count()
        self._cache = ResultCache(cache_path) if cache_path else None
        self._cache_scope: str | None = None
        self._batches: list[bool] = []   # per target: whether it serves ExecuteBatches (until told not)

    # -- connection ----------------------------------------------------------------------

    def _ensure_channels(self) -> None:
        if self._stubs:
            return
        cfg = self.config
        for index, target in enumerate(cfg.targets):
            options = _CHANNEL_OPTIONS + cfg.extra_channel_options
            lanes = 1
            if is_balanced(target):
                options = options + [("grpc.service_config", BALANCED_SERVICE_CONFIG)]
                lanes = cfg.streams_per_balanced_target
            self._lanes.extend([index] * lanes)
            if cfg.tls_root_cert or cfg.tls_client_cert:
                creds = grpc.ssl_channel_credentials(cfg.tls_root_cert, cfg.tls_client_key, cfg.tls_client_cert)
                channel = grpc.aio.secure_channel(target, creds, options=options)
            else:
                channel = grpc.aio.insecure_channel(target, options=options)
            self._channels.append(channel)
            self._stubs.append(pb_grpc.ExecutorStub(channel))
            self._batches.append(True)

    @property
    def _metadata(self) -> tuple:
        return (("authorization", f"Bearer {self.config.token}"),) if self.config.token else ()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
        self._lanes.clear()
        self._batches.clear()
        if self._cache is not None:
            self._cache.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def info(self, target_index: int = 0, timeout: float = 10.0) -> pb.ServerInfo:
        self._ensure_channels()
        return await self._with_retries(
            lambda stub: stub.GetInfo(pb.GetInfoRequest(), metadata=self._metadata, timeout=timeout),
            fixed_target=target_index,
        )

    async def check_reachable(self, timeout: float = 5.0) -> None:
        """Fail fast, with one clear error, when a target does not answer: a connection failure
        must never become a program's result."""
        self._ensure_channels()
        for i, target in enumerate(self.config.targets):
            try:
                await self._stubs[i].GetInfo(pb.GetInfoRequest(), metadata=self._metadata, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                raise ExecutorError(f"executor {target} is not reachable ({exc.code().name}: "
                                    f"{exc.details() or 'no answer'})", exc.code()) from None

    async def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Wait until every target reports its pool started (useful right after a server start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for i in range(len(self.config.targets)):
            while True:
                try:
                    info = await self.info(i, timeout=5.0)
                    if info.pool.engine_reachable and info.pool.ready + info.pool.busy >= info.pool.size:
                        break
                except ExecutorError:
                    pass
                if loop.time() > deadline:
                    raise ExecutorError(f"{self.config.targets[i]} not ready after {timeout} s",
                                        grpc.StatusCode.DEADLINE_EXCEEDED)
                await asyncio.sleep(0.2)

    # -- one program ---------------------------------------------------------------------

    async def execute(self, program: Program | str, timeout: float | None = None) -> ExecutionResult:
        """Run one program; retries on another target or after a backoff when unreachable."""
        program = Program(program) if isinstance(program, str) else program
        if problem := request_problem(program):
            raise ExecutorError(problem[1], getattr(grpc.StatusCode, problem[0]), program.id)
        self._ensure_channels()
        key = await self._cache_key(program)
        if (hit := self._cached(key)) is not None:
            hit.id = program.id
            return hit
        request = program.to_proto()
        msg = await self._with_retries(
            lambda stub: stub.Execute(request, metadata=self._metadata, timeout=timeout))
        result = ExecutionResult.from_proto(msg)
        self._keep(key, result)
        return result

    async def _with_retries(self, call, fixed_target: int | None = None):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_timeout_s
        delay = self.config.backoff_initial_s
        while True:
            index = fixed_target if fixed_target is not None else next(self._next_target) % len(self._stubs)
            try:
                return await call(self._stubs[index])
            except grpc.aio.AioRpcError as exc:
                if not _retryable(exc):
                    raise ExecutorError(exc.details() or str(exc.code()), exc.code()) from None
                if loop.time() + delay > deadline:
                    raise ExecutorError(
                        f"{self.config.targets[index]}: {exc.details() or exc.code()} "
                        f"(gave up after {self.config.retry_timeout_s:g} s)", exc.code()) from None
                log.info("executor %s: %s; retrying in %.1f s", self.config.targets[index],
                         exc.code().name, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.config.backoff_max_s)

    # -- many programs -------------------------------------------------------------------

    async def execute_many(
        self,
        programs: Iterable[Program] | AsyncIterable[Program],
        max_in_flight: int = MAX_IN_FLIGHT,
        return_rejected: bool = False,
    ) -> AsyncIterator[ExecutionResult | Rejected]:
        """Yield one result per program, in completion order.

        At most `max_in_flight` programs are outstanding over all targets together, so an
        endless or huge iterable is read only as fast as results come back. A program the
        server refuses (empty code, limits over the maxima...) raises ExecutorError, or is
        yielded as `Rejected` when `return_rejected` is set.
        """
        self._ensure_channels()
        run = _Batch(self, programs, max_in_flight)
        async for item in run.results():
            if isinstance(item, Rejected) and not return_rejected:
                await run.cancel()
                raise ExecutorError(f"program {item.id!r} rejected: {item.message}",
                                    getattr(grpc.StatusCode, item.code, None), item.id)
            yield item

    def _cached(self, key: str | None) -> ExecutionResult | None:
        return self._cache.get(key) if key is not None and self._cache is not None else None

    def _keep(self, key: str | None, result: ExecutionResult) -> None:
        if key is not None and self._cache is not None:
            self._cache.put(key, result)

    async def _cache_key(self, program: Program) -> str | None:
        if self._cache is None:
            return None
        scope = self._cache_scope
        if scope is None:
            images = set()
            defaults = pb.Limits()
            for i in range(len(self._stubs)):
                info = await self.info(i)
                images.add(info.sandbox_image)
                defaults = info.default_limits
            if len(images) > 1:
                raise ExecutorError(
                    f"targets run different sandbox images ({', '.join(sorted(images))}); "
                    "a result cache needs them all the same")
            scope = self._cache_scope = images.pop() + "|" + defaults.SerializeToString().hex()
        lim = program.limits
        return ResultCache.key(scope, program.language, program.code,
                               program.stdin if isinstance(program.stdin, bytes) else program.stdin.encode(),
                               (lim.timeout_s, lim.memory_mb, lim.max_output_bytes))


@dataclass
class _Pause:
    until: float = 0.0


class _Backoff:
    """One target's retry pacing: exponential, jittered waits after failures, and how long it
    has been failing (reset by any answer)."""

    def __init__(self, config, loop: asyncio.AbstractEventLoop) -> None:
        self.config, self.loop = config, loop
        self.delay = config.backoff_initial_s
        self.down_since: float | None = None

    def reset(self) -> None:
        self.delay, self.down_since = self.config.backoff_initial_s, None

    def down_too_long(self) -> bool:
        """Mark this target as failing (from now, if it was not) and say whether it has been
        failing longer than the retry timeout."""
        self.down_since = self.down_since or self.loop.time()
        return self.loop.time() - self.down_since > self.config.retry_timeout_s

    def next_wait(self) -> float:
        wait = self.delay * (0.5 + random.random())
        self.delay = min(self.delay * 2, self.config.backoff_max_s)
        return wait


class _Batch:
    """State of one execute_many call: shared work queue, per-target streams, results."""

    def __init__(self, client: AsyncClient, programs, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.client = client
        self.source = programs
        self.slots = asyncio.Semaphore(max_in_flight)
        self._sync_source = True   # set from the source in results()
        self.retry: collections.deque[tuple[str, Program]] = collections.deque()
        self.programs: dict[str, Program] = {}     # wire key -> program, until its result
        self.attempts: collections.Counter = collections.Counter()
        self.cond = asyncio.Condition()
        self.out: asyncio.Queue = asyncio.Queue()
        self.source_done = False
        self.seq = itertools.count()
        self.tasks: list[asyncio.Task] = []
        self.failed_targets = 0

    async def results(self) -> AsyncIterator[ExecutionResult | Rejected]:
        self._iter = (self.source.__aiter__() if hasattr(self.source, "__aiter__")
                      else iter(self.source))
        # A batch is filled from an iterable's next() (it runs at once), never by waiting on an
        # async source: one that waits for results would wait for the batch held for it.
        self._sync_source = not hasattr(self._iter, "__anext__")
        self.tasks = [asyncio.create_task(self._target(i)) for i in self.client._lanes]
        try:
            while True:
                item = await self.out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                self.slots.release()
                yield item
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _finished(self) -> bool:
        return self.source_done and not self.retry and not self.programs

    async def _emit(self, key: str, item) -> None:
        """Deliver the one result of `key` (later duplicates, e.g. after a retry, are dropped)."""
        program = self.programs.pop(key, None)
        if program is None:
            return
        # The program's slot is released when the consumer takes the result (in `results`), so
        # results waiting for a slow consumer count against max_in_flight too: memory stays bounded.
        if isinstance(item, ExecutionResult):
            self.client._keep(await self.client._cache_key(program), item)
            item.id = program.id
        await self.out.put(item)
        async with self.cond:
            self.cond.notify_all()
            if self._finished():
                await self.out.put(None)

    async def _next(self, gathering: bool = False) -> tuple[str, Program] | None:
        """The next program to send: a retry first, then the source; None when all is done, or
        (`gathering` a batch) when nothing more can be had at once: the batch must go, not wait
        for the source or for the end."""
        await self.slots.acquire()
        while True:
            if self.retry:
                return self.retry.popleft()
            if not self.source_done and (self._sync_source or not gathering):
                program = await self._pull()
                if program is None:
                    self.source_done = True
                    async with self.cond:
                        self.cond.notify_all()
                        if self._finished():
                            await self.out.put(None)
                    continue
                key = str(next(self.seq))
                self.programs[key] = program
                if problem := request_problem(program):
                    await self._emit(key, Rejected(program.id, *problem))
                    await self.slots.acquire()
                    continue
                cache_key = await self.client._cache_key(program)
                if (hit := self.client._cached(cache_key)) is not None:
                    await self._emit(key, hit)
                    await self.slots.acquire()
                    continue
                return key, program
            if gathering or not self.programs:
                self.slots.release()
                return None
            async with self.cond:
                await self.cond.wait()

    async def _pull(self) -> Program | None:
        try:
            if hasattr(self._iter, "__anext__"):
                program = await self._iter.__anext__()
            else:
                program = next(self._iter)
        except (StopIteration, StopAsyncIteration):
            return None
        return Program(program) if isinstance(program, str) else program

    async def _target(self, index: int) -> None:
        try:
            await self._drive_target(index)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave the consumer waiting on a dead task
            await self.out.put(exc)

    async def _drive_target(self, index: int) -> None:
        """Keep one stream to target `index` busy until the whole batch is done: open a stream,
        send and read until it ends, resend what it left unanswered, back off when it broke."""
        client = self.client
        target = client.config.targets[index]
        backoff = _Backoff(client.config, asyncio.get_running_loop())
        while not self._finished():
            sent: dict[str, Program] = {}
            gathered: dict[str, Program] = {}   # taken for a batch not yet written
            pause = _Pause()
            batched = client._batches[index]
            stub = client._stubs[index]
            call = (stub.ExecuteBatches if batched else stub.ExecuteStream)(metadata=client._metadata)
            limit = client.config.rotate_after if is_balanced(target) else None
            sender = asyncio.create_task(self._send(call, sent, gathered, pause, limit, batched))
            # The server sends its initial metadata when it takes the stream: a stream that broke
            # before that never reached a sandbox, so its programs are not charged a failure.
            accepted = asyncio.create_task(call.initial_metadata())
            try:
                if not await self._read_answers(call, sent, pause, backoff, batched):
                    return
                await sender
                accepted.cancel()
                for key in [*sent, *gathered]:   # closed without answering them: they go again
                    await self._requeue(key, failure=False)
                if self._finished():
                    return
                backoff.reset()   # rotated: a new stream
            except grpc.aio.AioRpcError as exc:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
                reached = accepted.done() and not accepted.cancelled() and accepted.exception() is None
                accepted.cancel()
                for key in list(gathered):   # never sent: no attempt is charged
                    await self._requeue(key, failure=False)
                if batched and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    client._batches[index] = False   # a server older than ExecuteBatches: nothing was sent
                    continue
                for key in list(sent):
                    await self._requeue(key, failure=reached)
                if not _retryable(exc):
                    await self.out.put(ExecutorError(f"{target}: {exc.details() or exc.code()}", exc.code()))
                    return
                if self._gave_up(backoff, exc.details() or str(exc.code()), exc.code()):
                    return
                log.info("executor %s stream broke (%s); reconnecting in %.1f s", target,
                         exc.code().name, backoff.delay)
                await asyncio.sleep(backoff.next_wait())
            finally:
                # Cancelled (Ctrl-C, an early break) or done: no helper task is left pending, so
                # nothing is destroyed mid-flight or reported as never retrieved.
                for helper in (sender, accepted):
                    if not helper.done():
                        helper.cancel()
                await asyncio.gather(sender, accepted, return_exceptions=True)
                call.cancel()

    async def _read_answers(self, call, sent: dict[str, Program], pause: _Pause, backoff: _Backoff,
                            batched: bool = False) -> bool:
        """Read one stream's answers until it ends; False when this target gives up."""
        async for message in call:
            if await self._answered(message.responses if batched else (message,), call, sent, pause, backoff):
                return False
        return True

    async def _answered(self, responses, call, sent: dict[str, Program], pause: _Pause, backoff: _Backoff) -> bool:
        """Take one message's answers; True when this target gives up."""
        for resp in responses:
            if resp.id not in sent:
                continue
            sent.pop(resp.id)
            if resp.HasField("result"):
                backoff.reset()
                await self._emit(resp.id, ExecutionResult.from_proto(resp.result))
            elif resp.error.code == grpc.StatusCode.UNAVAILABLE.value[0]:
                # The server is up but cannot run programs (e.g. its Docker engine is down):
                # hold this target back and let the program go elsewhere.
                await self._requeue(resp.id, failure=False)
                if self._gave_up(backoff, resp.error.message, grpc.StatusCode.UNAVAILABLE):
                    call.cancel()
                    return True
                pause.until = backoff.loop.time() + backoff.next_wait()
            else:
                prog = self.programs.get(resp.id)
                await self._emit(resp.id, Rejected(
                    prog.id if prog else resp.id, _code_name(resp.error.code), resp.error.message))
        return False

    def _gave_up(self, backoff: _Backoff, message: str, code) -> bool:
        """Count a failure of this target; True once it has been down longer than the retry
        timeout (and, when it was the last target standing, the batch fails with `message`)."""
        if not backoff.down_too_long():
            return False
        self.failed_targets += 1
        if self.failed_targets == len(self.client._lanes):
            self.out.put_nowait(ExecutorError(
                f"no executor reachable ({', '.join(self.client.config.targets)}): {message}", code))
        return True

    async def _send(self, call, sent: dict[str, Program], gathered: dict[str, Program], pause: _Pause,
                    limit: int | None, batched: bool) -> None:
        loop = asyncio.get_running_loop()
        # Nothing is written before the server has taken the stream: its initial metadata says
        # so, at once. A write racing a refusal (a wrong token, a full server) fails, and
        # grpc.aio then reports INTERNAL "Internal error from Core" instead of the server's
        # status (grpc/grpc#36066): 5-25% of refused streams here, which this client retried as
        # a broken stream. A refusal's metadata comes with its status, without the mark; a
        # server older than the mark gets the writes once its stream has not ended in 1 s.
        metadata = dict(await call.initial_metadata() or ())
        if STREAM_TAKEN_KEY not in metadata:
            try:
                await asyncio.wait_for(asyncio.shield(call.code()), 1.0)
                return   # refused: the reader reports the server's status
            except TimeoutError:
                pass
        keep_queued = _count_of(metadata.get(KEEP_QUEUED_KEY))
        left = limit
        while left is None or left > 0:
            if (wait := pause.until - loop.time()) > 0:
                await asyncio.sleep(wait)
            item = await self._next()
            if item is None:
                await call.done_writing()
                return
            if not batched:
                sent[item[0]] = item[1]
                await call.write(_request(*item))
                taken = 1
            else:
                gathered[item[0]] = item[1]
                await self._gather(gathered, sent, keep_queued,
                                   REQUEST_BATCH_PROGRAMS if left is None else min(left, REQUEST_BATCH_PROGRAMS))
                batch = pb.RequestBatch(requests=[_request(k, p) for k, p in gathered.items()])
                taken = len(gathered)
                sent.update(gathered)
                gathered.clear()
                await call.write(batch)
            left = None if left is None else left - taken
        await call.done_writing()   # rotated: the results come, then a new stream starts

    async def _gather(self, batch: dict[str, Program], sent: dict[str, Program], keep_queued: int,
                      most: int) -> None:
        """Fill `batch` (holding its first program): every program that can go at once, and,
        while the window is full but the server still holds `keep_queued` of this stream's
        programs (enough for its sandboxes), those freed by its next results too. Never waits
        on an async source. What it holds, should the stream break meanwhile, goes again."""
        size = sum(_program_bytes(p) for p in batch.values())
        while len(batch) < most and size < REQUEST_BATCH_BYTES and (
                self.retry or (self._sync_source and not self.source_done)):
            if self.slots.locked() and len(sent) < keep_queued:
                break   # the server runs low: what is gathered goes now
            item = await self._next(gathering=True)
            if item is None:
                break
            batch[item[0]] = item[1]
            size += _program_bytes(item[1])

    async def _requeue(self, key: str, failure: bool) -> None:
        program = self.programs.get(key)
        if program is None:
            return
        if failure:
            self.attempts[key] += 1
            if self.attempts[key] >= self.client.config.max_attempts:
                await self._emit(key, ExecutionResult(
                    id=program.id, status=Status.SANDBOX_ERROR,
                    reason=f"the executor failed {self.attempts[key]} times while running this program"))
                return
        self.slots.release()
        self.retry.append((key, program))
        async with self.cond:
            self.cond.notify_all()


# What one RequestBatch gathers at most (a larger program goes alone).
REQUEST_BATCH_PROGRAMS = 64
REQUEST_BATCH_BYTES = 1 << 20


def _request(key: str, program: Program) -> pb.ExecuteRequest:
    request = program.to_proto()
    request.id = key
    return request


def _program_bytes(program: Program) -> int:
    return len(program.code) + len(program.stdin)


def _count_of(value) -> int:
    """A count from metadata: 0 when absent or malformed."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _retryable(exc: grpc.aio.AioRpcError) -> bool:
    """Transport trouble is retried; a refusal of the request itself is not. A program too large
    for the server is marked so in the trailing metadata (a full server also answers
    RESOURCE_EXHAUSTED, and that one is worth retrying)."""
    metadata = dict(exc.trailing_metadata() or ())
    if metadata.get("selfalign-refusal") == "too-large":
        return False
    return exc.code() in RETRYABLE


def _code_name(value: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.name
    return str(value)


class Client:
    """Synchronous client: the AsyncClient's API on a private event-loop thread."""

    def __init__(self, targets: str | Iterable[str], **kwargs) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="executor-client", daemon=True)
        self._thread.start()
        self._async = self._call(_make_async(targets, kwargs))

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def execute(self, program: Program | str, timeout: float | None = None) -> ExecutionResult:
        return self._call(self._async.execute(program, timeout))

    @overload
    def execute_many(self, programs: Iterable[Program], max_in_flight: int = MAX_IN_FLIGHT,
                     return_rejected: Literal[False] = False) -> Generator[ExecutionResult, None, None]: ...

    @overload
    def execute_many(self, programs: Iterable[Program], max_in_flight: int = MAX_IN_FLIGHT, *,
                     return_rejected: Literal[True]) -> Generator[ExecutionResult | Rejected, None, None]: ...

    def execute_many(self, programs: Iterable[Program], max_in_flight: int = MAX_IN_FLIGHT,
                     return_rejected: bool = False) -> Generator[ExecutionResult | Rejected, None, None]:
        """Like AsyncClient.execute_many. `programs` is read on the client's loop thread.

        A task on the loop takes the results and hands them to this thread through a queue:
        one cheap hand-off per result, where asking the loop for each next result cost two
        round trips between the threads (a quarter of a millisecond of CPU a result). The task
        runs at most `max_in_flight` results ahead of this thread, so at most twice that many
        are held, whatever this thread's pace."""
        agen = self._async.execute_many(programs, max_in_flight, return_rejected)
        handoff: queue.SimpleQueue = queue.SimpleQueue()
        ahead = asyncio.Semaphore(max_in_flight)
        # The pump task, recorded on the loop as it starts: a Ctrl-C that lands while this
        # thread waits for it to be scheduled still finds it (a local variable would not be
        # assigned yet, and closing the generator under a running step raises).
        step: list[asyncio.Task] = []
        taken = 0
        try:
            self._call(_as_task(_pump(agen, handoff, ahead), step))
            while True:
                item = handoff.get()
                if item is _END_OF_RESULTS:
                    return
                if isinstance(item, _Raised):
                    raise item.exc
                taken += 1
                if taken >= max_in_flight or handoff.empty():   # credits go back in bulk
                    self._loop.call_soon_threadsafe(_release, ahead, taken)
                    taken = 0
                yield item
        finally:
            # Interrupted (Ctrl-C, an exception, an early break): stop the pump before closing
            # the generator, or the generator would still be running.
            if self._loop.is_running():
                self._call(_cancel_and_close(agen, step[0] if step else None))

    def info(self, target_index: int = 0) -> pb.ServerInfo:
        return self._call(self._async.info(target_index))

    def check_reachable(self, timeout: float = 5.0) -> None:
        self._call(self._async.check_reachable(timeout))

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        self._call(self._async.wait_until_ready(timeout))

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_END_OF_RESULTS = object()


@dataclass
class _Raised:
    exc: BaseException


async def _pump(agen, handoff: queue.SimpleQueue, ahead: asyncio.Semaphore) -> None:
    """On the loop: move results to the caller's thread, at most `ahead`'s count in advance."""
    try:
        async for item in agen:
            handoff.put(item)
            await ahead.acquire()
    except Exception as exc:   # the caller raises it; a cancellation is the caller's own doing
        handoff.put(_Raised(exc))
        return
    handoff.put(_END_OF_RESULTS)


def _release(semaphore: asyncio.Semaphore, count: int) -> None:
    for _ in range(count):
        semaphore.release()


async def _as_task(coro, step: list[asyncio.Task]) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    step[:] = [task]
    return task


async def _cancel_and_close(agen, task: asyncio.Task | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    await agen.aclose()


async def _make_async(targets, kwargs) -> AsyncClient:
    return AsyncClient(targets, **kwargs)


__all__ = ["AsyncClient", "Client", "ExecutorError", "Limits", "Program", "Rejected"]
