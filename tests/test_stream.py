"""The stream: ids, completion order, per-request errors, back-pressure, HumanEval."""

from __future__ import annotations

import grpc
import pytest

from executor import Limits, Program, Status
from executor import server as server_module
from executor.bench import humaneval_programs
from executor.client import Client, ExecutorError, Rejected
from executor.jobs import KEEP_QUEUED_KEY
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


def test_batches_answer_every_id_once_with_errors_per_program(target, server):
    stub = pb_grpc.ExecutorStub(grpc.insecure_channel(target))
    batches = [pb.RequestBatch(requests=[pb.ExecuteRequest(id="ok1", code="print(1)"),
                                         pb.ExecuteRequest(id="empty", code="   "),
                                         pb.ExecuteRequest(id="lang", code="print(1)", language="cobol")]),
               pb.RequestBatch(requests=[pb.ExecuteRequest(id="big", code="print(1)",
                                                           limits=pb.Limits(timeout_s=10_000)),
                                         *(pb.ExecuteRequest(id=f"n{i}", code=f"print({i})") for i in range(20))])]
    call = stub.ExecuteBatches(iter(batches))
    assert dict(call.initial_metadata())[KEEP_QUEUED_KEY] == str(2 * server.pool.size)
    got: dict[str, pb.StreamResponse] = {}
    for message in call:
        for r in message.responses:
            assert r.id not in got
            got[r.id] = r
    assert sorted(got) == sorted(["ok1", "empty", "lang", "big", *(f"n{i}" for i in range(20))])
    assert got["ok1"].result.status == pb.PASSED
    assert all(got[f"n{i}"].result.stdout == f"{i}\n".encode() for i in range(20))
    assert got["empty"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "unknown language 'cobol'" in got["lang"].error.message
    assert "timeout_s=10000" in got["big"].error.message


def test_a_full_window_goes_to_the_server_in_batches(client, monkeypatch):
    sizes: list[int] = []

    def counted(batches):
        for batch in batches:
            sizes.append(len(batch.requests))
            yield from batch.requests

    monkeypatch.setattr(server_module, "_each_request", counted)
    programs = [Program(f"print({i})", id=str(i)) for i in range(150)]
    results = list(client.execute_many(programs, max_in_flight=64))
    assert sorted(int(r.id) for r in results) == list(range(150))
    assert all(r.status is Status.PASSED and r.stdout == f"{r.id}\n".encode() for r in results)
    # The first batch fills the window; later ones gather what its results free while the
    # server still holds enough for its sandboxes.
    assert sum(sizes) == 150 and sizes[0] == 64 and len(sizes) < 15, sizes


def test_a_server_without_batches_gets_single_programs(docker_client, sandbox_image, monkeypatch):
    from tests.conftest import start_server

    # A server older than ExecuteBatches: the servicer's generated default answers UNIMPLEMENTED.
    monkeypatch.setattr(server_module.ExecutorService, "ExecuteBatches", pb_grpc.ExecutorServicer.ExecuteBatches)
    old = start_server(docker_client, pool_size=1, instance="pytest-nobatches")
    try:
        with Client(f"127.0.0.1:{old.port}") as c:
            results = list(c.execute_many([Program(f"print({i})", id=str(i)) for i in range(30)]))
            assert sorted(int(r.id) for r in results) == list(range(30))
            assert all(r.stdout == f"{r.id}\n".encode() for r in results)
            assert c._async._batches == [False]
    finally:
        old.stop()


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


def test_an_async_source_that_waits_for_results_is_not_held_back(target):
    """A batch is never filled by waiting on an async source: this one yields each program only
    once the last one's result is back, and a batch held for it would wait forever."""
    import asyncio

    from executor.client import AsyncClient

    async def main():
        async with AsyncClient(target) as client:
            answered: asyncio.Queue = asyncio.Queue()

            async def source():
                for i in range(10):
                    yield Program(f"print({i})", id=str(i))
                    await answered.get()

            seen = []
            async for r in client.execute_many(source(), max_in_flight=64):
                seen.append(r.id)
                await answered.put(None)
            return seen

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [str(i) for i in range(10)]


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
