"""The stream: ids, completion order, per-request errors, back-pressure, HumanEval."""

from __future__ import annotations

import grpc
import pytest

from executor import Limits, Program, Status
from executor.bench import humaneval_programs
from executor.client import ExecutorError, Rejected
from executor.v1 import executor_pb2 as pb
from executor.v1 import executor_pb2_grpc as pb_grpc


def test_every_id_gets_exactly_one_result(client):
    programs = [Program(f"print({i} * 2)", id=f"job-{i}") for i in range(200)]
    results = list(client.execute_many(programs, max_in_flight=16))
    assert sorted(r.id for r in results) == sorted(p.id for p in programs)
    for r in results:
        i = int(r.id.split("-")[1])
        assert r.status is Status.PASSED and r.stdout == f"{i * 2}\n".encode()


def test_results_come_back_as_they_complete(client):
    programs = [Program("import time; time.sleep(2)", id="slow"),
                Program("print('fast')", id="fast")]
    order = [r.id for r in client.execute_many(programs, max_in_flight=2)]
    assert order == ["fast", "slow"]


def test_duplicate_and_empty_ids_are_kept_apart(client):
    programs = [Program("print(1)", id="same"), Program("print(2)", id="same"), Program("print(3)")]
    outs = sorted((r.id, r.stdout) for r in client.execute_many(programs))
    assert outs == [("", b"3\n"), ("same", b"1\n"), ("same", b"2\n")]


def test_a_bad_request_does_not_end_the_stream(target):
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.ExecutorStub(channel)
    requests = [
        pb.ExecuteRequest(id="ok1", code="print(1)"),
        pb.ExecuteRequest(id="empty", code="   "),
        pb.ExecuteRequest(id="lang", code="print(1)", language="cobol"),
        pb.ExecuteRequest(id="big", code="print(1)", limits=pb.Limits(timeout_s=10_000)),
        pb.ExecuteRequest(id="ok2", code="print(2)"),
    ]
    got = {r.id: r for r in stub.ExecuteStream(iter(requests))}
    assert got["ok1"].result.status == pb.PASSED and got["ok2"].result.status == pb.PASSED
    assert got["empty"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "unknown language 'cobol'" in got["lang"].error.message
    assert "timeout_s=10000" in got["big"].error.message
    channel.close()


def test_rejected_programs_raise_or_are_returned(client):
    programs = [Program("print(1)", id="a"), Program("", id="b")]
    items = list(client.execute_many(programs, return_rejected=True))
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert [(r.id, r.code) for r in rejected] == [("b", "INVALID_ARGUMENT")]
    with pytest.raises(ExecutorError, match="program 'b' rejected: code is empty"):
        list(client.execute_many(programs))


def test_in_flight_is_bounded_by_the_client(client):
    """An endless generator is read only as fast as results come back."""
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield Program("print(1)", id=str(pulled))

    results = client.execute_many(endless(), max_in_flight=8)
    first = [next(results) for _ in range(20)]
    results.close()
    assert len(first) == 20
    assert pulled <= 20 + 8 + 1


def test_humaneval_canonical_solutions_all_pass_and_wrong_ones_fail(client):
    programs = humaneval_programs()
    results = {r.id: r for r in client.execute_many(programs, max_in_flight=32)}
    assert len(results) == len(programs) == 328
    failed = {k: r.stderr[-300:] for k, r in results.items() if k.endswith("canonical") and not r.passed}
    assert failed == {}
    wrong_passed = [k for k, r in results.items() if k.endswith("wrong") and r.passed]
    assert wrong_passed == []


def test_limits_in_stream_requests_apply(client):
    programs = [Program("import time; time.sleep(5)", id="t", limits=Limits(timeout_s=0.5))]
    (r,) = list(client.execute_many(programs))
    assert r.status is Status.TIMEOUT and "limit of 0.5 s" in r.reason


def test_async_client_api(target):
    import asyncio

    from executor.client import AsyncClient

    async def main():
        async with AsyncClient(target) as client:
            one = await client.execute(Program("print('async')", id="one"))
            many = [r async for r in client.execute_many((Program(f"print({i})", id=str(i)) for i in range(20)),
                                                         max_in_flight=4)]
            info = await client.info()
            return one, many, info

    one, many, info = asyncio.run(main())
    assert one.stdout == b"async\n" and one.id == "one"
    assert sorted(int(r.id) for r in many) == list(range(20)) and all(r.passed for r in many)
    assert info.pool.size == 2


def test_more_streams_than_the_server_accepts_are_refused(docker_client, sandbox_image):
    import threading

    from tests.conftest import start_server

    server = start_server(docker_client, pool_size=1, max_streams=2, instance="pytest-streams")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ExecutorStub(channel)
    release = threading.Event()

    def held_requests():
        yield pb.ExecuteRequest(id="hold", code="print(1)")
        release.wait(30)  # keep the stream open

    try:
        held = [stub.ExecuteStream(held_requests()) for _ in range(2)]
        for call in held:
            assert next(call).result.status == pb.PASSED  # both accepted and running
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ExecuteStream(iter([pb.ExecuteRequest(id="third", code="print(3)")])))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        release.set()
        channel.close()
        server.stop()
