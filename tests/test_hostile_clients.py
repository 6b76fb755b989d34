"""Hostile clients cannot take the server down or starve an honest one: the HTTP listener's caps
and timeouts, bad input as JSON errors, gRPC admission for unary calls and streams, the fair
queue, and results bounded by bytes. Real servers, real sockets, loopback only."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor import Limits, Program
from executor.client import Client
from executor.listener import ListenerLimits
from executor.v1 import executor_pb2 as pb
from executor.v1 import executor_pb2_grpc as pb_grpc
from tests.conftest import start_server

MAX_CONNECTIONS = 16


@pytest.fixture(scope="module")
def server(docker_client, sandbox_image):
    srv = start_server(docker_client, pool_size=1, http_port=0, metrics_port=0, instance="pytest-hostile",
                       http=ListenerLimits(max_connections=MAX_CONNECTIONS, header_timeout_s=2.0, body_timeout_s=2.0),
                       max_streams=2, max_unary_calls=4, max_unary_per_client=4,
                       stream_result_bytes=8 << 20)
    yield srv
    srv.stop()


def raw(port: int, data: bytes, wait_s: float = 10.0, source: str = "127.0.0.1") -> bytes:
    """Send bytes, then read until the server closes or answers in full."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s, source_address=(source, 0)) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")]
                    if length and len(body) >= length[0]:
                        break
        except TimeoutError:
            pass
        return out


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


def post(port: int, body: bytes, headers: dict | None = None, source: str = "127.0.0.1") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    conn.request("POST", "/v1/execute", body=body, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


# -- HTTP: bad input is a 4xx JSON error, before any work --------------------------------------

@pytest.mark.parametrize("head", [b"Content-Length: -1", b"Content-Length: abc"])
def test_a_bad_content_length_is_a_json_400_and_nothing_is_read(server, head):
    answer = raw(server.http_port, b"POST /v1/execute HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n" + b"x" * 1000)
    assert status_and_error(answer) == (400, "INVALID_ARGUMENT"), answer


def test_an_oversized_body_is_refused_before_it_is_sent(server):
    answer = raw(server.http_port, b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
    assert status_and_error(answer) == (413, "RESOURCE_EXHAUSTED"), answer


@pytest.mark.parametrize("body,words", [
    (b'{"code": "print(1)", "limits": [1, 2]}', "limits must be an object"),
    (b'{"code": "print(1)", "limits": "fast"}', "limits must be an object"),
    (b'{"code": "print(1)", "stdin": {"a": 1}}', "stdin must be a string"),
    (b'{"code": "print(1)", "timeout": 5}', "unknown field(s) timeout"),
    (b'{"code": "print(1)", "limits": {"timeout": 5}}', "unknown limit(s) timeout"),
    (b'{"code": "print(1)", "limits": {"timeout_s": true}}', "limits.timeout_s must be"),
    (b'{"code": "print(1)", "limits": {"memory_mb": 1.5}}', "limits.memory_mb must be"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"\xff\xfe", "not JSON"),
])
def test_every_bad_body_is_a_400_that_says_why(server, body, words):
    status, answer = post(server.http_port, body)
    assert status == 400 and answer["error"]["code"] == "INVALID_ARGUMENT", answer
    assert words in answer["error"]["message"], answer


def test_the_token_is_checked_before_the_body_is_read(docker_client, sandbox_image):
    srv = start_server(docker_client, pool_size=1, http_port=0, token="s3cret", instance="pytest-hostile-token")
    try:
        # No token, a large declared body that never comes: refused at once, from the headers.
        answer = raw(srv.http_port, b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        assert status_and_error(answer) == (401, "UNAUTHENTICATED"), answer
    finally:
        srv.stop()


def test_a_body_that_never_arrives_times_out(server):
    answer = raw(server.http_port, b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
                 wait_s=30)
    assert status_and_error(answer) == (408, "DEADLINE_EXCEEDED"), answer


# -- HTTP: connections cannot starve the server -------------------------------------------------

def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_half_sent_headers_are_cut_off(server):
    for port in (server.http_port, server.metrics_port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /v1/execute HTTP/1.1\r\nHost: x\r\n")   # and nothing more
        try:
            assert _closed_within(sock, 30), port
        finally:
            sock.close()


def test_idle_connections_past_the_cap_are_closed_and_grpc_is_served(server):
    """One address holds a quarter of the connections at most, the listener all of them: past
    that a connection is closed at once. gRPC is served throughout, and another address can
    still use HTTP while one address holds all it may."""
    per_address = MAX_CONNECTIONS // 4
    held = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(per_address)]
    extra = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(5)]
    try:
        readable, _, _ = select.select(held, [], [], 0.5)   # all at once: the header timeout here is 2 s
        assert readable == []
        assert all(_closed_within(s, 10) for s in extra)   # refused at once, holding no descriptor
        status, row = post(server.http_port, json.dumps({"code": "print(2)"}).encode(), source="127.0.0.2")
        assert status == 200 and row["stdout"] == "2\n"
        others = [socket.create_connection(("127.0.0.1", server.http_port), source_address=(f"127.0.0.{i}", 0))
                  for i in range(3, 3 + 3 * per_address)]   # three more addresses fill the listener
        try:
            last = socket.create_connection(("127.0.0.1", server.http_port), source_address=("127.0.0.99", 0))
            assert _closed_within(last, 10)
            last.close()
        finally:
            for s in others:
                s.close()
        with Client(f"127.0.0.1:{server.port}") as client:
            assert client.execute("print(1)").stdout == b"1\n"
            assert client.info().serving
    finally:
        for s in held + extra:
            s.close()


# -- gRPC: admission and fairness ---------------------------------------------------------------

def test_made_up_authorization_headers_are_one_client_without_a_token(server):
    """Keyed on the header, one client with two made-up ones could open twice its streams."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ExecutorStub(channel)
    idle = threading.Event()

    def requests():
        idle.wait(30)
        return
        yield  # pragma: no cover

    calls = [stub.ExecuteStream(requests(), metadata=(("authorization", f"Bearer made-up-{i}"),)) for i in range(3)]
    try:
        codes = []
        for call in calls:
            call.initial_metadata()   # returns once taken, or once refused (then the call is done)
            codes.append(call.code().name if call.done() else "open")
        assert codes.count("open") == 2 and codes.count("RESOURCE_EXHAUSTED") == 1, codes
    finally:
        idle.set()
        for call in calls:
            call.cancel()
        channel.close()


def test_a_unary_flood_never_starves_health_or_info(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ExecutorStub(channel)
    outcomes: list[str] = []

    def one():
        try:
            stub.Execute(pb.ExecuteRequest(code="import time; time.sleep(1)"), timeout=60)
            outcomes.append("OK")
        except grpc.RpcError as err:
            outcomes.append(err.code().name)

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    try:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert stub.GetInfo(pb.GetInfoRequest(), timeout=5).serving
    finally:
        for t in threads:
            t.join()
        channel.close()
    assert "RESOURCE_EXHAUSTED" in outcomes and "OK" in outcomes, outcomes


@pytest.fixture(scope="module")
def fair_server(docker_client, sandbox_image):
    srv = start_server(docker_client, pool_size=1, http_port=0, instance="pytest-hostile-fair")
    yield srv
    srv.stop()


def test_a_small_client_is_served_between_a_large_clients_jobs(fair_server):
    """A gRPC client queues 12 jobs of 0.4 s; an HTTP client from another address then sends one
    `print(1)`: it runs after at most the job in progress and one more of the large client's,
    not after all twelve (one FIFO queue)."""
    server = fair_server
    done: list[str] = []
    lock = threading.Lock()

    def large():
        with Client(f"127.0.0.1:{server.port}") as client:
            programs = [Program("import time; time.sleep(0.4)", id=f"big{i}") for i in range(12)]
            for r in client.execute_many(programs, max_in_flight=12):
                with lock:
                    done.append(r.id)

    thread = threading.Thread(target=large)
    thread.start()
    with Client(f"127.0.0.1:{server.port}") as client:   # wait until the large client's jobs are queued
        deadline = time.monotonic() + 30
        while client.info().pool.queued < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    status, row = post(server.http_port, json.dumps({"code": "print(1)"}).encode(), source="127.0.0.2")
    with lock:
        before = len(done)
    thread.join()
    assert status == 200 and row["stdout"] == "1\n", row
    assert before <= 3, f"the small client waited for {before} of the large client's jobs"


def test_a_stream_that_never_reads_holds_a_bounded_number_of_results(server):
    """Each result may be 2 x 1 MiB: with 8 MiB per stream, the server holds at most 3 unsent,
    and the jobs that run ahead of the reader are those plus what the client's transport buffers
    on its own (flow control), not the 40 sent (results used to be bounded by count only)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ExecutorStub(channel)
    sent = [pb.ExecuteRequest(id=str(i), code="import sys; sys.stdout.write('x' * (1 << 20))",
                              limits=pb.Limits(max_output_bytes=1 << 20)) for i in range(40)]
    with Client(f"127.0.0.1:{server.port}") as client:
        before = client.info().pool.completed
        call = stub.ExecuteStream(iter(sent))   # never read
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                time.sleep(0.5)
            ran = client.info().pool.completed - before
        finally:
            call.cancel()
            channel.close()
    assert 1 <= ran <= 12, ran


def test_a_client_that_leaves_cancels_its_queued_http_job(server):
    with Client(f"127.0.0.1:{server.port}") as client:
        blocker = threading.Thread(target=client.execute, args=(Program("import time; time.sleep(2)",
                                                                        limits=Limits(timeout_s=10)),))
        blocker.start()
        time.sleep(0.3)
        body = json.dumps({"code": "print('abandoned')"}).encode()
        for _ in range(5):   # queued behind the blocker; each client leaves at once
            s = socket.create_connection(("127.0.0.1", server.http_port))
            s.sendall(b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.1)
            s.close()
        before = client.info().pool.completed
        blocker.join()
        time.sleep(1.0)
        assert client.info().pool.queued == 0
        assert client.info().pool.completed - before == 1   # the blocker; no abandoned job ran
