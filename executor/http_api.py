"""An optional HTTP/JSON endpoint beside gRPC, for users of HTTP code sandboxes (SandboxFusion,
piston, judge0) and for `curl`. Same pool, limits, token and statuses as the gRPC API, which
stays the primary one (streams, back-pressure, health checking).

- `POST /v1/execute` with `{"code", "stdin"?, "stdin_b64"?, "id"?, "language"?, "limits"?:
  {"timeout_s", "memory_mb", "max_output_bytes"}}` answers a result row (as `run-batch` writes
  them). Refusals use the gRPC status names: 400 `INVALID_ARGUMENT`, 413 `RESOURCE_EXHAUSTED`,
  401 `UNAUTHENTICATED`, 503 `UNAVAILABLE`, each as `{"error": {"code", "message"}}`.
- `GET /v1/info` answers GetInfo as JSON; `GET /healthz` is 200 when serving, else 503.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from executor.v1 import executor_pb2 as pb

log = logging.getLogger(__name__)
STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413,
          "CANCELLED": 499, "INTERNAL": 500, "UNAVAILABLE": 503}


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class HttpApi:
    def __init__(self, service, token: str | None, host: str, port: int) -> None:
        self.service = service
        self.token = token
        api = self
        limits = service.limits
        max_body = limits.max_code_bytes * 2 + limits.max_stdin_bytes * 2 + (64 << 10)   # JSON and base64

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 (the base class's name); to our log
                log.debug("http %s %s", self.address_string(), format % args)

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self, exc: _Refused) -> None:
                self._send(STATUS[exc.code], {"error": {"code": exc.code, "message": str(exc)}})

            def _authorize(self) -> None:
                if api.token and not hmac.compare_digest(self.headers.get("Authorization", "").encode(),
                                                         f"Bearer {api.token}".encode()):
                    raise _Refused("UNAUTHENTICATED", "missing or wrong bearer token")

            def do_GET(self):
                try:
                    if self.path == "/healthz":
                        info = api.service.info()
                        self._send(200 if info.serving else 503, {"serving": info.serving,
                                                                  "reason": info.not_serving_reason})
                        return
                    self._authorize()
                    if self.path != "/v1/info":
                        raise _Refused("NOT_FOUND", f"no such endpoint: GET {self.path}")
                    from google.protobuf.json_format import MessageToDict

                    self._send(200, MessageToDict(api.service.info(), preserving_proto_field_name=True))
                except _Refused as exc:
                    self._refuse(exc)

            def do_POST(self):
                try:
                    self._authorize()
                    if self.path != "/v1/execute":
                        raise _Refused("NOT_FOUND", f"no such endpoint: POST {self.path}")
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > max_body:
                        raise _Refused("RESOURCE_EXHAUSTED",
                                       f"the body is {length} bytes, over the limit of {max_body}")
                    self._send(200, api.execute(self.rfile.read(length)))
                except _Refused as exc:
                    self._refuse(exc)
                    self.close_connection = True

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> HttpApi:
        threading.Thread(target=self.server.serve_forever, name="http-api", daemon=True).start()
        log.info("HTTP/JSON endpoint on port %d", self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def execute(self, body: bytes) -> dict:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _Refused("INVALID_ARGUMENT", f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            raise _Refused("INVALID_ARGUMENT", "the body must be a JSON object with a string 'code'")
        try:
            stdin = base64.b64decode(data["stdin_b64"], validate=True) if "stdin_b64" in data \
                else str(data.get("stdin", "")).encode()
            limits = data.get("limits") or {}
            request = pb.ExecuteRequest(
                id=str(data.get("id", "")), code=data["code"], stdin=stdin, language=str(data.get("language", "")),
                limits=pb.Limits(timeout_s=float(limits.get("timeout_s") or 0),
                                 memory_mb=int(limits.get("memory_mb") or 0),
                                 max_output_bytes=int(limits.get("max_output_bytes") or 0)))
        except (binascii.Error, TypeError, ValueError, UnicodeError) as exc:
            raise _Refused("INVALID_ARGUMENT", f"bad field: {exc}") from None
        try:
            return self.service._submit(request).result().to_row()
        except Exception as exc:   # the same table as gRPC's
            from executor.server import status_of

            code, message = status_of(exc)
            raise _Refused(code.name, message) from None
