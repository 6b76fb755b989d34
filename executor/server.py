"""The gRPC service: Execute, ExecuteStream, ExecuteBatches and GetInfo over the pool, plus standard
health checking, server reflection, Prometheus metrics and optional TLS and bearer tokens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import docker
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from executor import __version__
from executor.image import ensure_image
from executor.jobs import KEEP_QUEUED_KEY, SERVICE_NAME, STREAM_TAKEN_KEY, ExecutionResult, Limits, Program
from executor.limits import LANGUAGES, InvalidRequest, RequestTooLarge, ServerLimits
from executor.listener import ListenerLimits, fit_connection_caps, raise_fd_limit
from executor.metrics import Metrics
from executor.pool import Pool, Unavailable
from executor.sandbox import SandboxConfig
from executor.v1 import executor_pb2 as pb
from executor.v1 import executor_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

API_VERSION = "v1"
# Far above max_code_bytes + max_stdin_bytes, so an oversized program reaches the servicer
# and gets a clear INVALID_ARGUMENT instead of a transport error.
MAX_MESSAGE_BYTES = 64 << 20
# Trailing metadata that marks a refusal resending cannot fix (RESOURCE_EXHAUSTED is also what a
# full server answers, and that one is worth retrying).
REFUSAL_KEY = "selfalign-refusal"
# What one ResponseBatch gathers at most (it always takes one result, whatever its size).
RESPONSE_BATCH_BYTES = 4 << 20
RESPONSE_BATCH_RESULTS = 256
_END = object()


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    pool_size: int = field(default_factory=lambda: os.cpu_count() or 1)
    spares: int = 1                       # started sandboxes ready to replace a retired one (pool.py)
    # How jobs reach the sandboxes' agents: "socket" (a Unix socket per sandbox, past dockerd),
    # "attach" (the containers' attached stdin and stdout, through dockerd), or "auto": socket
    # for a local engine with runc, attach otherwise (resolve_channel; the pool falls back to
    # attach by itself where the socket cannot work).
    channel: str = "auto"
    # Where the socket channel's directories are made (None: the system's temporary directory).
    # A server in a container shares it with the engine by mounting the same host path at the
    # same place (docker-compose.yml: /run/selfalign).
    channel_dir: str | None = None
    isolation: str = "pooled"
    limits: ServerLimits = field(default_factory=ServerLimits)
    sandbox_base: str | None = None
    sandbox_profile: str = "default"      # "ds1000": the image with DS-1000's libraries
    runtime: str | None = None
    cpus_per_sandbox: float = 1.0
    pids_limit: int = 128
    metrics_port: int | None = None
    max_streams: int = 64                 # open ExecuteStream calls per client (token, or peer address)
    max_total_streams: int = 256          # open ExecuteStream calls in all
    stream_idle_timeout_s: float = 300.0  # a stream with nothing running or arriving this long is closed
    max_in_flight_per_stream: int = 256
    # Results a stream may hold unsent, counted as their worst case (both output streams at the
    # job's output limit) from submission until sent: a client that stops reading stops
    # submitting once this much is outstanding, and the server in all holds at most the second.
    stream_result_bytes: int = 256 << 20
    server_result_bytes: int = 1 << 30
    max_unary_calls: int = 128            # unary Execute calls in flight in all (each holds a worker)
    max_unary_per_client: int = 64
    http: ListenerLimits = field(default_factory=ListenerLimits)   # the HTTP and metrics listeners
    instance: str | None = None
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    http_port: int | None = None          # the optional HTTP/JSON endpoint (None: off)


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)


def _return_freed_memory() -> None:
    """Give freed heap back to the system after a stream: a stream's results (up to its
    in-flight bound of outputs) are freed when it ends, but glibc keeps the pages, so a server
    that once held a stalled client's results stayed that large (soak: 79 -> 289 MB, kept
    after the client cancelled)."""
    try:
        _LIBC.malloc_trim(0)
    except (AttributeError, OSError):
        pass


# Large results passed through since the last trim: unary calls free theirs after gRPC sent
# them, with no hook of ours after that, so a background thread trims once this much went by
# (unary calls with maximal outputs ratcheted RSS from 81 to 745 MB over three rounds).
TRIM_AFTER_BYTES = 64 << 20


class _Trimmer:
    def __init__(self) -> None:
        self.bytes = 0
        self.lock = threading.Lock()

    def count(self, n: int) -> None:
        with self.lock:
            self.bytes += n

    def run(self, stopped: threading.Event, every_s: float = 1.0) -> None:
        while not stopped.wait(every_s):
            with self.lock:
                due, self.bytes = self.bytes >= TRIM_AFTER_BYTES, (0 if self.bytes >= TRIM_AFTER_BYTES
                                                                   else self.bytes)
            if due:
                _return_freed_memory()


class ByteBudget:
    """Bytes that may be outstanding; `take` waits (or gives up) until there is room. One job
    larger than the whole budget still runs, alone."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self.waiting = 0   # takers waiting for room: only then does a give wake anyone
        self.cond = threading.Condition()

    def take(self, n: int, timeout: float) -> bool:
        with self.cond:
            if self.used and self.used + n > self.total:
                self.waiting += 1
                try:
                    if not self.cond.wait_for(lambda: self.used == 0 or self.used + n <= self.total, timeout):
                        return False
                finally:
                    self.waiting -= 1
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self.cond:
            self.used -= n
            if self.waiting:
                self.cond.notify_all()


class StreamAdmission:
    """Open calls per client and in all: one for ExecuteStream, one for unary Execute. Each
    call holds a worker thread while it runs; the pool has room for both limits plus a reserve,
    so a client holding every call it may make never locks out health checks, GetInfo or other
    clients."""

    def __init__(self, per_client: int, total: int, what: str = "streams") -> None:
        self.per_client, self.total, self.what = per_client, total, what
        self.open: dict[str, int] = {}
        self.lock = threading.Lock()

    def enter(self, client: str) -> str | None:
        """None when admitted; otherwise why not."""
        with self.lock:
            if sum(self.open.values()) >= self.total:
                return f"the server has {self.total} {self.what} open, its limit"
            if self.open.get(client, 0) >= self.per_client:
                return f"this client has {self.per_client} {self.what} open, its limit"
            self.open[client] = self.open.get(client, 0) + 1
            return None

    def leave(self, client: str) -> None:
        with self.lock:
            self.open[client] -= 1
            if not self.open[client]:
                del self.open[client]


def client_key(context, tokens_checked: bool = False) -> str:
    """Who a call is from: its bearer token where the server checks tokens, else its peer's
    address. Without a token to check against, an `authorization` header is whatever the client
    made up: keyed on it, one client with many made-up headers took all 256 streams."""
    token = dict(context.invocation_metadata()).get("authorization")
    if tokens_checked and token:
        return "token:" + hmac.new(b"selfalign", token.encode(), "sha256").hexdigest()[:16]
    peer = context.peer()   # "ipv4:127.0.0.1:53412", "ipv6:[::1]:53412", "unix:..."
    return peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer


class _Stream:
    """One ExecuteStream call: a reader thread submits requests, finished jobs queue their
    answers, and the call's thread yields them in completion order.

    A job's slot is held until its result has been handed to gRPC for sending, so a client that
    stops reading stops the server from reading its requests: memory stays bounded by
    `max_in_flight` results per stream. Every request id gets exactly one answer.
    """

    def __init__(self, submit, max_in_flight: int, budgets: tuple[ByteBudget, ...] = (),
                 cost=lambda request: 0) -> None:
        self.submit = submit
        self.budgets, self.cost = budgets, cost
        self.out: queue.SimpleQueue = queue.SimpleQueue()   # C, unbounded: a put never waits
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.pending: set = set()
        self.lock = threading.Condition()
        self.cancelled = threading.Event()
        self.activity = time.monotonic()

    def read_requests(self, request_iterator) -> None:
        try:
            for request in request_iterator:
                self.activity = time.monotonic()
                # Back-pressure: stop reading (and so let gRPC flow control stop the client)
                # while this stream has max_in_flight jobs outstanding.
                while not self.slots.acquire(timeout=0.5):
                    if self.cancelled.is_set():
                        return
                cost = self.cost(request)
                if not self._take_budget(cost):
                    self.slots.release()
                    return
                if self.cancelled.is_set():
                    self._release(cost)
                    return
                try:
                    fut = self.submit(request)
                except Exception as exc:
                    self._release(cost, slot=False)
                    self._refuse(request.id, *status_of(exc))
                    continue
                with self.lock:
                    self.pending.add(fut)
                fut.add_done_callback(lambda f, rid=request.id, c=cost: self._finish(rid, f, c))
        except grpc.RpcError:
            pass  # the client went away; cancel() cancels what is queued
        except Exception:
            log.exception("stream reader failed")
        finally:
            with self.lock:
                while self.pending and not self.cancelled.is_set():
                    self.lock.wait(0.5)
            self.out.put((_END, False))

    def _take_budget(self, cost: int) -> bool:
        """Room for one more result of `cost` bytes in this stream's budget and the server's;
        False when the stream was cancelled while waiting."""
        taken: list[ByteBudget] = []
        for budget in self.budgets:
            while not budget.take(cost, timeout=0.5):
                if self.cancelled.is_set():
                    for b in taken:
                        b.give(cost)
                    return False
            taken.append(budget)
        return True

    def _release(self, cost: int, slot: bool = True) -> None:
        for budget in self.budgets:
            budget.give(cost)
        if slot:
            self.slots.release()

    def responses(self, context, idle_timeout_s: float) -> Iterator[pb.StreamResponse]:
        for taken in self._taken(context, idle_timeout_s, batch=False):
            (response, _), _ = taken[0]
            yield response
            self._release_taken(taken)

    def response_batches(self, context, idle_timeout_s: float) -> Iterator[pb.ResponseBatch]:
        """Every answer that is ready, in one message: never waits for more than the first."""
        for taken in self._taken(context, idle_timeout_s, batch=True):
            yield pb.ResponseBatch(responses=[response for (response, _), _ in taken])
            self._release_taken(taken)

    def _taken(self, context, idle_timeout_s: float, batch: bool) -> Iterator[list]:
        """Lists of queued answers, in completion order: one answer each, or (batch) the first to
        come and every other one already waiting, up to RESPONSE_BATCH_BYTES or _RESULTS."""
        while True:
            try:
                item = self.out.get(timeout=1.0)
            except queue.Empty:
                with self.lock:
                    idle = not self.pending and time.monotonic() - self.activity > idle_timeout_s
                if idle:
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the stream was idle for {idle_timeout_s:g} s")
                continue
            if item[0] is _END:
                return
            taken = [item]
            size = item[0][0].ByteSize() if batch else 0
            ended = False
            while batch and size < RESPONSE_BATCH_BYTES and len(taken) < RESPONSE_BATCH_RESULTS:
                try:
                    item = self.out.get_nowait()
                except queue.Empty:
                    break
                if item[0] is _END:
                    ended = True
                    break
                taken.append(item)
                size += item[0][0].ByteSize()
            yield taken
            if ended:
                return

    def _release_taken(self, taken: list) -> None:
        """Handed to gRPC: the answers' slots and bytes go back."""
        for (_, cost), holds_slot in taken:
            if holds_slot:
                self._release(cost)

    def cancel(self) -> None:
        """The call ended (finished, cancelled or broken): cancel the jobs not yet started."""
        self.cancelled.set()
        with self.lock:
            for fut in list(self.pending):
                fut.cancel()
            self.lock.notify_all()

    def _finish(self, request_id: str, fut, cost: int = 0) -> None:
        try:
            resp = pb.StreamResponse(id=request_id, result=fut.result().to_proto())
        except futures.CancelledError:
            resp = None
        except Exception as exc:   # every id gets an answer, whatever failed
            resp = _stream_error(request_id, *status_of(exc))
        if resp is not None:
            self.out.put(((resp, cost), True))
        else:
            self._release(cost)
        with self.lock:
            self.pending.discard(fut)
            self.activity = time.monotonic()
            self.lock.notify_all()

    def _refuse(self, request_id: str, code: grpc.StatusCode, message: str) -> None:
        self.slots.release()
        self.out.put(((_stream_error(request_id, code, message), 0), False))


class ExecutorService(pb_grpc.ExecutorServicer):
    def __init__(self, pool: Pool, limits: ServerLimits, runtime: str, max_in_flight_per_stream: int,
                 admission: StreamAdmission | None = None, idle_timeout_s: float = 300.0,
                 unary: StreamAdmission | None = None, stream_result_bytes: int = 256 << 20,
                 server_result_bytes: int = 1 << 30, tokens_checked: bool = False) -> None:
        self.pool = pool
        self.limits = limits
        self.runtime = runtime
        self.max_in_flight = max_in_flight_per_stream
        self.admission = admission or StreamAdmission(64, 256)
        self.unary = unary or StreamAdmission(64, 128, "unary calls")
        self.idle_timeout_s = idle_timeout_s
        self.stream_result_bytes = stream_result_bytes
        self.results = ByteBudget(server_result_bytes)
        self.tokens_checked = tokens_checked
        self.trimmer = _Trimmer()

    def submit(self, request: pb.ExecuteRequest, client: str = ""):
        """Validate and queue one program for `client` (the fair queue's key); its future."""
        program = Program(
            code=request.code, id=request.id, stdin=request.stdin,
            limits=Limits.from_proto(request.limits), language=request.language or "python",
        )
        resolved = self.limits.check(program)
        return self.pool.submit(program, resolved, client)

    def result_cost(self, request: pb.ExecuteRequest) -> int:
        """The most a request's result can take: both streams at its output limit."""
        limit = request.limits.max_output_bytes or self.limits.default_output_bytes
        return 2 * min(limit, self.limits.max_output_bytes) + len(request.id) + 1024

    def Execute(self, request, context):
        client = client_key(context, self.tokens_checked)
        refused = self.unary.enter(client)
        if refused:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        try:
            return self._execute(request, context, client)
        finally:
            self.unary.leave(client)

    def _execute(self, request, context, client: str):
        try:
            future = self.submit(request, client)
        except Exception as exc:
            code, message = status_of(exc)
            if isinstance(exc, RequestTooLarge):
                # Said in metadata, not only in words: a client must not resend what cannot fit.
                context.set_trailing_metadata(((REFUSAL_KEY, "too-large"),))
            context.abort(code, message)
            raise   # abort() raises; this line is never reached
        context.add_callback(future.cancel)
        try:
            result: ExecutionResult = future.result()
        except Exception as exc:
            context.abort(*status_of(exc))
            raise
        self.trimmer.count(len(result.stdout) + len(result.stderr))
        return result.to_proto()

    def ExecuteStream(self, request_iterator, context) -> Iterator[pb.StreamResponse]:
        yield from self._admitted(request_iterator, context, batched=False)

    def ExecuteBatches(self, request_iterator, context) -> Iterator[pb.ResponseBatch]:
        """ExecuteStream, several programs to a message each way (see the proto)."""
        yield from self._admitted(_each_request(request_iterator), context, batched=True)

    def _admitted(self, requests, context, batched: bool) -> Iterator:
        """A stream, once the client is under its stream caps (see StreamAdmission)."""
        client = client_key(context, self.tokens_checked)
        refused = self.admission.enter(client)
        if refused:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        left = threading.Event()

        def leave() -> None:
            if not left.is_set():
                left.set()
                self.admission.leave(client)

        try:
            yield from self._stream(requests, context, leave, client, batched)
        finally:
            leave()
            _return_freed_memory()

    def _stream(self, request_iterator, context, leave, client: str, batched: bool = False) -> Iterator:
        taken = [(STREAM_TAKEN_KEY, "1")]   # tells the client the stream was taken
        if batched:
            taken.append((KEEP_QUEUED_KEY, str(2 * self.pool.size)))
        context.send_initial_metadata(tuple(taken))
        stream = _Stream(lambda request: self.submit(request, client), self.max_in_flight,
                         (ByteBudget(self.stream_result_bytes), self.results), self.result_cost)

        def on_done() -> None:
            stream.cancel()
            leave()

        context.add_callback(on_done)
        threading.Thread(target=stream.read_requests, args=(request_iterator,), name="stream-reader",
                         daemon=True).start()
        if batched:
            yield from stream.response_batches(context, self.idle_timeout_s)
        else:
            yield from stream.responses(context, self.idle_timeout_s)

    def GetInfo(self, request, context):
        return self.info()

    def info(self) -> pb.ServerInfo:
        state = self.pool.state()
        return pb.ServerInfo(
            server_version=__version__, api_version=API_VERSION, languages=list(LANGUAGES),
            default_limits=self.limits.defaults().to_proto(),
            max_limits=self.limits.maxima().to_proto(),
            max_code_bytes=self.limits.max_code_bytes, max_stdin_bytes=self.limits.max_stdin_bytes,
            pool=pb.PoolInfo(
                isolation=state.isolation, size=state.size, ready=state.ready, busy=state.busy,
                queued=state.queued, engine_reachable=state.engine_reachable,
                completed=state.completed,
            ),
            sandbox_image=self.pool.config.image, runtime=self.runtime,
            serving=state.engine_reachable and not self.pool.stopping,
            not_serving_reason=("shutting down" if self.pool.stopping else
                                "" if state.engine_reachable else f"Docker engine unreachable: {state.engine_error}"),
        )


def _each_request(batches) -> Iterator[pb.ExecuteRequest]:
    for batch in batches:
        yield from batch.requests


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The one table from what went wrong to the gRPC status a client sees, for Execute and
    ExecuteStream alike. Only Unavailable is UNAVAILABLE (clients retry that); an unexpected
    error is INTERNAL and logged, never retried as if the server were merely busy."""
    if isinstance(exc, RequestTooLarge):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, Unavailable):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, futures.CancelledError):
        return grpc.StatusCode.CANCELLED, "cancelled by the client"
    log.error("internal error: %s", exc, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def _stream_error(request_id: str, code: grpc.StatusCode, message: str) -> pb.StreamResponse:
    return pb.StreamResponse(id=request_id, error=pb.StreamError(code=code.value[0], message=message))


class _TokenAuth(grpc.ServerInterceptor):
    """Refuses every call without the bearer token, except health checks (for probes)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        # A refusal of the call's own kind: one of another kind leaves a streaming caller waiting.
        self._deny = {(False, False): grpc.unary_unary_rpc_method_handler(deny),
                      (False, True): grpc.unary_stream_rpc_method_handler(deny),
                      (True, False): grpc.stream_unary_rpc_method_handler(deny),
                      (True, True): grpc.stream_stream_rpc_method_handler(deny)}

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata).get("authorization", "")
        handler = continuation(handler_call_details)
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self._expected):
            return handler
        if handler is None:
            return self._deny[False, False]
        return self._deny[bool(handler.request_streaming), bool(handler.response_streaming)]


class ExecutorServer:
    """The whole service: pool, gRPC server and metrics, with start and graceful stop."""

    def __init__(self, config: ServerConfig, docker_client: docker.DockerClient | None = None) -> None:
        self.config = config
        self._client_factory = (lambda: docker_client) if docker_client else (
            lambda: docker.from_env(timeout=30))
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._pool: Pool | None = None
        self.grpc_server: grpc.Server | None = None
        self.port = config.port
        self.metrics = Metrics()
        self.metrics_port: int | None = None
        self.http = None
        self.http_port: int | None = None
        self._summary: dict[str, int] = {}
        self._summary_lock = threading.Lock()
        self._stopped = threading.Event()
        self._channel_dir: str | None = None

    @property
    def channel(self) -> str:
        """"socket" or "attach": what the pool uses now (it may have fallen back to attach)."""
        return "socket" if self._pool is not None and self._pool.config.channel_dir else "attach"

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("the executor server has not been started")
        return self._pool

    def start(self) -> ExecutorServer:
        cfg = self.config
        self._set_health(False)
        runtime = cfg.runtime or "runc"
        socket_channel = resolve_channel(cfg.channel, cfg.runtime) == "socket"
        if socket_channel and self._channel_dir is None:
            if cfg.channel_dir:
                os.makedirs(cfg.channel_dir, exist_ok=True)
            # 0700: this user's alone
            self._channel_dir = tempfile.mkdtemp(prefix="selfalign-channels-", dir=cfg.channel_dir)
        sandbox = SandboxConfig(image="", memory_mb=cfg.limits.default_memory_mb,
                                cpus=cfg.cpus_per_sandbox, pids_limit=cfg.pids_limit,
                                runtime=cfg.runtime, max_output_bytes=cfg.limits.max_output_bytes,
                                channel_dir=self._channel_dir if socket_channel else None)
        self._pool = Pool(
            self._client_factory, sandbox, cfg.pool_size, cfg.isolation,
            instance=cfg.instance or f"server-{cfg.port}",
            on_result=self._record, on_engine_change=self._set_health,
            image_provider=lambda client: ensure_image(client, cfg.sandbox_base, cfg.sandbox_profile),
            spares=cfg.spares,
        )
        interceptors: list[grpc.ServerInterceptor] = [_TokenAuth(cfg.token)] if cfg.token else []
        # Every open stream and every unary Execute holds one worker while it runs; both are
        # capped (StreamAdmission), and the 32 workers beyond both caps are for health checks and
        # GetInfo, which are never refused for want of one.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.max_total_streams + cfg.max_unary_calls + 32,
                                       thread_name_prefix="grpc"),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.service = ExecutorService(self.pool, cfg.limits, runtime, cfg.max_in_flight_per_stream,
                                       StreamAdmission(cfg.max_streams, cfg.max_total_streams),
                                       cfg.stream_idle_timeout_s,
                                       StreamAdmission(cfg.max_unary_per_client, cfg.max_unary_calls, "unary calls"),
                                       cfg.stream_result_bytes, cfg.server_result_bytes, bool(cfg.token))
        pb_grpc.add_ExecutorServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{_bracket(cfg.host)}:{cfg.port}"
        _check_port_free(cfg.host, cfg.port)
        if cfg.tls_cert:
            creds = grpc.ssl_server_credentials(
                [(_read(cfg.tls_key or ""), _read(cfg.tls_cert))],   # both given: checked with the flags
                root_certificates=_read(cfg.tls_client_ca) if cfg.tls_client_ca else None,
                require_client_auth=bool(cfg.tls_client_ca),
            )
            try:
                self.port = server.add_secure_port(address, creds)
            except RuntimeError:
                self.port = 0
        else:
            try:
                self.port = server.add_insecure_port(address)
            except RuntimeError:
                self.port = 0
        if not self.port:
            raise OSError(f"could not listen on {address}: is another server using that port?")
        # The port is ours: only now start sandboxes, so a failed start leaves none behind.
        self.pool.start()
        self._set_health(self.pool.engine_reachable)
        if not self.pool.engine_reachable:
            log.error("%s; serving NOT_SERVING until it is back", self.pool.state().engine_error)
        server.start()
        self.grpc_server = server
        threading.Thread(target=self._log_summaries, name="summary", daemon=True).start()
        threading.Thread(target=self.service.trimmer.run, args=(self._stopped,), name="trim", daemon=True).start()
        listeners = (cfg.metrics_port is not None) + (cfg.http_port is not None)
        if listeners:
            # Neither listener may use up the descriptors gRPC and the sandboxes need.
            http_limits = fit_connection_caps(cfg.http, listeners, raise_fd_limit())
            if cfg.metrics_port is not None:
                self.metrics_port = self.metrics.serve(cfg.host, cfg.metrics_port, self.pool, http_limits)
            if cfg.http_port is not None:
                from executor.http_api import HttpApi

                self.http = HttpApi(self.service, cfg.token, cfg.host, cfg.http_port, http_limits).start()
                self.http_port = self.http.port
        log.info("executor %s listening on %s:%d (pool %d, %s, channel %s, image %s)", __version__,
                 cfg.host, self.port, cfg.pool_size, cfg.isolation, self.channel, self.image or "not built yet")
        return self

    def _record(self, result: ExecutionResult, latency_s: float) -> None:
        """Per job: metrics, a debug line, and the counts the periodic summary reports."""
        self.metrics.record_result(result, latency_s)
        log.debug("job %r: %s in %.3f s (%s)", result.id, result.status.value, latency_s, result.reason)
        with self._summary_lock:
            self._summary[result.status.value] = self._summary.get(result.status.value, 0) + 1

    def _log_summaries(self, every_s: float = 60.0) -> None:
        while not self._stopped.wait(every_s):
            with self._summary_lock:
                counts, self._summary = self._summary, {}
            state = self.pool.state()
            if counts or state.busy or state.queued:
                log.info("last %g s: %s; busy %d, queued %d, ready %d of %d", every_s,
                         ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no job finished",
                         state.busy, state.queued, state.ready, state.size)

    @property
    def image(self) -> str:
        return self.pool.config.image if self.pool else ""

    def _set_health(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)
        self.health.set(SERVICE_NAME, status)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop taking calls, let in-flight ones finish, then remove every container."""
        self.health.enter_graceful_shutdown()
        self._stopped.set()
        if self.http is not None:
            self.http.stop()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace_s).wait()
        if self._pool is not None:
            self._pool.close(drain=True)
        if self._channel_dir is not None:
            shutil.rmtree(self._channel_dir, ignore_errors=True)
        self.metrics.stop()

    def wait(self) -> None:
        if self.grpc_server is not None:
            self.grpc_server.wait_for_termination()


CHANNELS = ("auto", "socket", "attach")


def resolve_channel(channel: str, runtime: str | None) -> str:
    """"auto" made concrete. A socket needs the engine to bind-mount a directory of this
    process's filesystem, so a local engine (no DOCKER_HOST, or a unix:// one); gVisor does not
    connect to host sockets by default. An engine that cannot see the directory after all (this
    server in a container, the engine's socket mounted in) refuses the mount, and the pool goes
    over attach from then on (pool.py)."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if channel != "auto":
        return channel
    host = os.environ.get("DOCKER_HOST", "")
    local = not host or host.startswith("unix://")
    return "socket" if local and runtime in (None, "runc") else "attach"


def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    try:
        server = ExecutorServer(config).start()
    except OSError as exc:
        raise SystemExit(f"error: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"executor listening on {config.host}:{server.port} "
          f"(health: grpc.health.v1, metrics: {server.metrics_port or 'off'}, "
          f"HTTP/JSON: {server.http_port or 'off'}, channel {server.channel})", flush=True)
    while not stop.wait(1.0):
        pass
    print("shutting down: draining in-flight jobs", flush=True)
    t = time.monotonic()
    server.stop()
    print(f"stopped in {time.monotonic() - t:.1f} s", flush=True)


def _check_port_free(host: str, port: int) -> None:
    """Fail with one clear line before gRPC's own bind logs its error and a traceback follows."""
    import socket

    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gRPC binds: TIME_WAIT is fine
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise OSError(f"could not listen on {host}:{port}: {(exc.strerror or str(exc)).lower()} "
                          "(is another server using that port?)") from None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
