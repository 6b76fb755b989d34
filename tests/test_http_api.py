"""The HTTP/JSON endpoint: same pool, limits, token and statuses as gRPC, over real HTTP."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import start_server


@pytest.fixture(scope="module")
def http(docker_client, sandbox_image):
    server = start_server(docker_client, pool_size=1, http_port=0, token="s3cret", instance="pytest-http")
    yield f"http://127.0.0.1:{server.http_port}"
    server.stop()


def call(url: str, body: dict | bytes | None = None, token: str | None = "s3cret") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_execute_gives_the_same_statuses_as_grpc(http):
    status, row = call(f"{http}/v1/execute", {"id": "a", "code": "print(input())", "stdin": "hi"})
    assert status == 200 and row["status"] == "PASSED" and row["stdout"] == "hi\n" and row["id"] == "a"
    status, row = call(f"{http}/v1/execute", {"code": "import sys\nsys.exit(3)"})
    assert status == 200 and row["status"] == "FAILED" and row["exit_code"] == 3
    status, row = call(f"{http}/v1/execute", {"code": "while True: pass", "limits": {"timeout_s": 1}})
    assert status == 200 and row["status"] == "TIMEOUT"
    status, row = call(f"{http}/v1/execute", {"code": "import sys; print(sys.stdin.buffer.read())",
                                              "stdin_b64": base64.b64encode(b"\xff\x00").decode()})
    assert status == 200 and row["stdout"] == "b'\\xff\\x00'\n"


@pytest.mark.parametrize("body,status,code", [
    ({"code": ""}, 400, "INVALID_ARGUMENT"),
    ({"code": "print(1)", "limits": {"timeout_s": 10_000}}, 400, "INVALID_ARGUMENT"),
    ({"stdin": "x"}, 400, "INVALID_ARGUMENT"),
    (b"not json", 400, "INVALID_ARGUMENT"),
    ({"code": "x = 1\n" + "#" * (2 << 20)}, 413, "RESOURCE_EXHAUSTED"),
])
def test_bad_requests_are_refused_with_grpc_status_names(http, body, status, code):
    got, answer = call(f"{http}/v1/execute", body)
    assert (got, answer["error"]["code"]) == (status, code), answer


def test_token_info_and_health(http):
    assert call(f"{http}/v1/execute", {"code": "print(1)"}, token=None)[0] == 401
    assert call(f"{http}/v1/execute", {"code": "print(1)"}, token="wrong")[0] == 401
    status, info = call(f"{http}/v1/info")
    assert status == 200 and info["serving"] is True and info["max_code_bytes"] == str(1 << 20)
    status, health = call(f"{http}/healthz", token=None)      # probes need no token
    assert status == 200 and health["serving"] is True
