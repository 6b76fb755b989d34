"""An optional HTTP/JSON endpoint beside gRPC, for users of HTTP code sandboxes (SandboxFusion,
piston, judge0) and for `curl`. Same pool, limits, token, fair queue and statuses as the gRPC
API, which stays the primary one (streams, back-pressure, health checking).

- `POST /v1/execute` with `{"code", "stdin"?, "stdin_b64"?, "id"?, "language"?, "limits"?:
  {"timeout_s", "memory_mb", "max_output_bytes"}}` answers a result row (as `run-batch` writes
  them). Refusals use the gRPC status names: 400 `INVALID_ARGUMENT`, 413 `RESOURCE_EXHAUSTED`,
  401 `UNAUTHENTICATED`, 404 `NOT_FOUND`, 405 `METHOD_NOT_ALLOWED`, 408 `DEADLINE_EXCEEDED`,
  503 `UNAVAILABLE`, each as `{"error": {"code", "message"}}`. A field the API does not have is
  refused by name (a misspelt `"timeout"` is not silently "no timeout").
- `GET /v1/info` answers GetInfo as JSON; `GET /healthz` is 200 when serving, else 503.

In order, before any work: the token (from the headers, before the body is read), the declared
body size (before reading it; a body sent without a length is counted as it arrives), the body
within `body_timeout_s`, then each field. A client that disconnects while its job waits in the
queue cancels it. The connection cap, the header timeout and protocol errors are the listener's
(`executor.listener`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from executor.listener import Listener, ListenerLimits
from executor.v1 import executor_pb2 as pb

log = logging.getLogger(__name__)
STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "NOT_FOUND": 404, "METHOD_NOT_ALLOWED": 405,
          "DEADLINE_EXCEEDED": 408, "RESOURCE_EXHAUSTED": 413, "CANCELLED": 499, "INTERNAL": 500,
          "UNAVAILABLE": 503}
FIELDS = {"code", "stdin", "stdin_b64", "id", "language", "limits"}
LIMIT_FIELDS = {"timeout_s": float, "memory_mb": int, "max_output_bytes": int}


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _error(code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=STATUS[code])


class HttpApp:
    """The ASGI app. `service` is the gRPC servicer (ExecutorService): one implementation."""

    def __init__(self, service, token: str | None, limits: ListenerLimits) -> None:
        self.service = service
        self.token = token
        self.limits = limits
        server_limits = service.limits
        self.max_body = server_limits.max_code_bytes * 2 + server_limits.max_stdin_bytes * 2 + (64 << 10)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._route(request, receive)
        except _Refused as exc:
            response = _error(exc.code, str(exc))
        except ClientDisconnect:
            return
        if response is not None:
            await response(scope, receive, send)

    async def _route(self, request: Request, receive) -> JSONResponse | None:
        path, method = request.url.path, request.method
        if path == "/healthz":
            self._method(method, "GET")
            info = self.service.info()
            return JSONResponse({"serving": info.serving, "reason": info.not_serving_reason},
                                status_code=200 if info.serving else 503)
        self._authorize(request)
        if path == "/v1/info":
            self._method(method, "GET")
            from google.protobuf.json_format import MessageToDict

            return JSONResponse(MessageToDict(self.service.info(), preserving_proto_field_name=True))
        if path == "/v1/execute":
            self._method(method, "POST")
            return await self._execute(request, receive)
        raise _Refused("NOT_FOUND", f"no such endpoint: {method} {path}")

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method != allowed:
            raise _Refused("METHOD_NOT_ALLOWED", f"use {allowed} for this endpoint, not {method}")

    def _authorize(self, request: Request) -> None:
        if self.token and not hmac.compare_digest(request.headers.get("authorization", "").encode(),
                                                  f"Bearer {self.token}".encode()):
            raise _Refused("UNAUTHENTICATED", "missing or wrong bearer token")

    def client_key(self, request: Request) -> str:
        """Whom the fair queue serves: the token where the server has one, else the peer's
        address (a made-up header is no identity without a token to check it against)."""
        if self.token:   # the same key as gRPC's for the same token: one client across both APIs
            return "token:" + hmac.new(b"selfalign", request.headers.get("authorization", "").encode(),
                                       "sha256").hexdigest()[:16]
        return "ipv4:" + request.client.host if request.client else "?"

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > self.max_body:   # h11 has checked it is digits
            raise _Refused("RESOURCE_EXHAUSTED", f"the body is {declared} bytes, over the limit of {self.max_body}")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_body:
                        raise _Refused("RESOURCE_EXHAUSTED", f"the body is over the limit of {self.max_body} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise _Refused("DEADLINE_EXCEEDED",
                           f"the body did not arrive within {self.limits.body_timeout_s:g} s") from None
        return b"".join(chunks)

    async def _execute(self, request: Request, receive) -> JSONResponse | None:
        execute_request = parse_execute(await self._read_body(request))
        try:
            future = self.service.submit(execute_request, self.client_key(request))
        except Exception as exc:
            raise _Refused(*_status(exc)) from None
        result = asyncio.wrap_future(future)
        gone = asyncio.ensure_future(_disconnected(receive))
        done, _ = await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        if gone in done and not result.done():
            future.cancel()   # still queued: it never runs; running: it ends at its own limit
            result.cancel()
            return None
        gone.cancel()
        try:
            return JSONResponse(result.result().to_row())
        except Exception as exc:
            raise _Refused(*_status(exc)) from None


async def _disconnected(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _status(exc: BaseException) -> tuple[str, str]:
    from executor.server import status_of

    code, message = status_of(exc)
    return code.name, message


def parse_execute(body: bytes) -> pb.ExecuteRequest:
    """The request, or a refusal naming what is wrong with it."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise _Refused("INVALID_ARGUMENT", "the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused("INVALID_ARGUMENT", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Refused("INVALID_ARGUMENT", "the body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise _Refused("INVALID_ARGUMENT", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
    for name in ("code", "stdin", "stdin_b64", "id", "language"):
        if name in data and not isinstance(data[name], str):
            raise _Refused("INVALID_ARGUMENT", f"{name} must be a string, not {_kind(data[name])}")
    if "code" not in data:
        raise _Refused("INVALID_ARGUMENT", "code is missing")
    if "stdin" in data and "stdin_b64" in data:
        raise _Refused("INVALID_ARGUMENT", "give stdin or stdin_b64, not both")
    try:
        stdin = base64.b64decode(data["stdin_b64"], validate=True) if "stdin_b64" in data \
            else data.get("stdin", "").encode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError) as exc:
        raise _Refused("INVALID_ARGUMENT", f"stdin_b64 is not base64: {exc}") from None
    limits = data.get("limits")
    if limits is None:
        limits = {}
    if not isinstance(limits, dict):
        raise _Refused("INVALID_ARGUMENT", f"limits must be an object, not {_kind(limits)}")
    unknown = sorted(set(limits) - set(LIMIT_FIELDS))
    if unknown:
        raise _Refused("INVALID_ARGUMENT", f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(LIMIT_FIELDS)}")
    values = {}
    for name, kind in LIMIT_FIELDS.items():
        value = limits.get(name)
        if value is None:
            values[name] = kind(0)   # 0: the server's default
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and not float(value).is_integer()) or not math.isfinite(value) or value < 0:
            raise _Refused("INVALID_ARGUMENT", f"limits.{name} must be a non-negative "
                                               f"{'integer' if kind is int else 'number'}, not {value!r}")
        values[name] = kind(value)
    try:
        return pb.ExecuteRequest(id=data.get("id", ""), code=data["code"], stdin=stdin,
                                 language=data.get("language", ""), limits=pb.Limits(**values))
    except (ValueError, TypeError) as exc:   # e.g. a limit past the proto field's range
        raise _Refused("INVALID_ARGUMENT", f"bad field: {exc}") from None


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


class HttpApi:
    """The endpoint on its own port (`ExecutorServer` starts it when --http-port is given)."""

    def __init__(self, service, token: str | None, host: str, port: int, limits: ListenerLimits) -> None:
        self.app = HttpApp(service, token, limits)
        self.listener = Listener(self.app, host, port, limits, "HTTP/JSON endpoint")
        self.port = self.listener.port

    def start(self) -> HttpApi:
        self.listener.start()
        return self

    def stop(self) -> None:
        self.listener.stop()
