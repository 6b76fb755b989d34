"""An HTTP listener beside gRPC that hostile clients cannot use to take the server down.

The HTTP/JSON endpoint and the metrics endpoint are ASGI apps served by uvicorn, each in a thread
and event loop of its own (never one of gRPC's workers). uvicorn alone leaves three holes, which
its h11 protocol is extended here to close:

- **connections**: it accepts every connection and refuses only requests past its concurrency
  limit, so idle connections pile up to the process's descriptor limit, and then gRPC cannot
  accept or open anything. Here a listener holds at most `max_connections`, and one address at
  most a quarter of them (so one client holding all it may leaves room for others); one more is
  closed at once. The server raises its soft descriptor limit at start and keeps every listener's cap
  well under it (`fit_connection_caps`).
- **slow headers**: it has no timeout for a request's headers (only keep-alive, which any byte
  cancels), so a client sending one byte a minute holds its connection forever. Here a connection
  that is not in a request must complete one within `header_timeout_s`, or it is closed.
- **protocol errors** (a malformed request line, `Content-Length: -1` or `abc`) get plain text;
  here they get the JSON error every other refusal has.

Body timeouts and size caps belong to the app (`executor.http_api`), which reads the body itself.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import resource
import socket
import threading
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# Descriptors kept for gRPC, sandboxes (each holds an attach socket) and files, whatever the
# HTTP listeners do.
RESERVED_FDS = 512


@dataclass(frozen=True)
class ListenerLimits:
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fit_connection_caps(limits: ListenerLimits, listeners: int, fd_limit: int) -> ListenerLimits:
    """`limits`, with the connection cap lowered so that `listeners` of them together stay
    RESERVED_FDS under `fd_limit`."""
    room = max(8, (fd_limit - RESERVED_FDS) // max(1, listeners))
    if limits.max_connections <= room:
        return limits
    log.warning("HTTP connection cap lowered from %d to %d (descriptor limit %d)", limits.max_connections, room,
                fd_limit)
    return ListenerLimits(room, limits.header_timeout_s, limits.body_timeout_s, limits.keep_alive_s)


def _guarded_protocol(limits: ListenerLimits, name: str) -> type[H11Protocol]:
    per_address = max(1, limits.max_connections // 4)
    open_by_address: collections.Counter = collections.Counter()   # the listener's loop only

    class Guarded(H11Protocol):
        def connection_made(self, transport) -> None:   # type: ignore[override]
            super().connection_made(transport)
            self._waiting_since: float | None = self.loop.time()
            self._watch: asyncio.TimerHandle | None = None
            peer = transport.get_extra_info("peername")
            self._address = peer[0] if isinstance(peer, tuple) else str(peer)
            if len(self.connections) > limits.max_connections or open_by_address[self._address] >= per_address:
                log.debug("%s: connection from %s refused, %d open", name, self._address, len(self.connections) - 1)
                self._address = None
                self.transport.close()
                return
            open_by_address[self._address] += 1
            self._watch = self.loop.call_later(1.0, self._check)

        def _check(self) -> None:
            if self.transport.is_closing():
                return
            now = self.loop.time()
            in_request = self.cycle is not None and not self.cycle.response_complete
            if in_request:
                self._waiting_since = None
            elif self._waiting_since is None:
                self._waiting_since = now
            elif now - self._waiting_since > limits.header_timeout_s:
                log.debug("%s: closed a connection that sent no complete request in %g s", name,
                          limits.header_timeout_s)
                self.transport.close()
                return
            self._watch = self.loop.call_later(1.0, self._check)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._waiting_since = self.loop.time()

        def connection_lost(self, exc) -> None:
            if getattr(self, "_watch", None) is not None:
                self._watch.cancel()   # pyright: ignore[reportOptionalMemberAccess]
            if getattr(self, "_address", None) is not None:
                open_by_address[self._address] -= 1
                if not open_by_address[self._address]:
                    del open_by_address[self._address]
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": {"code": "INVALID_ARGUMENT", "message": f"bad HTTP request: {msg}"}})
            import h11

            event = h11.Response(status_code=400, reason=b"Bad Request", headers=[
                (b"content-type", b"application/json"), (b"connection", b"close"),
                (b"content-length", str(len(body)).encode())])
            output = self.conn.send(event)
            self.transport.write(output or b"")
            self.transport.write(self.conn.send(h11.Data(data=body.encode())) or b"")
            self.transport.close()

    return Guarded


class Listener:
    """One ASGI app on one port, served by uvicorn in its own thread."""

    def __init__(self, app, host: str, port: int, limits: ListenerLimits, name: str) -> None:
        self.name = name
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host.strip("[]"), port))
        except OSError as exc:
            self.sock.close()
            raise OSError(f"could not listen on {host}:{port} for {name}: {(exc.strerror or str(exc)).lower()}") \
                from None
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, http=_guarded_protocol(limits, name), lifespan="off", log_level="warning",
                                access_log=False, server_header=False, timeout_graceful_shutdown=5,
                                timeout_keep_alive=int(max(1, limits.keep_alive_s)))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> Listener:
        self.thread.start()
        log.info("%s on port %d", self.name, self.port)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
