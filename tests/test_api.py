"""The service surface: GetInfo, health, reflection, metrics, limits and request validation."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from executor import Limits, Program, Status
from executor.client import ExecutorError
from executor.v1 import executor_pb2 as pb
from executor.v1 import executor_pb2_grpc as pb_grpc


@pytest.fixture
def stub(target):
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    yield pb_grpc.ExecutorStub(channel)
    channel.close()


def test_get_info_describes_the_server(client, server):
    info = client.info()
    assert info.api_version == "v1" and info.server_version
    assert list(info.languages) == ["python"]
    assert info.default_limits.timeout_s == 10 and info.default_limits.memory_mb == 1024
    assert info.default_limits.max_output_bytes == 1 << 20
    assert info.max_limits.timeout_s >= info.default_limits.timeout_s
    assert info.pool.size == 2 and info.pool.isolation == "pooled" and info.pool.engine_reachable
    assert info.sandbox_image == server.image and info.sandbox_image.startswith("selfalign-sandbox:")
    assert info.runtime == "runc"


def test_health_is_serving(target):
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "selfalign.executor.v1.Executor"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(target):
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (resp,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in resp.list_services_response.service}
    assert {"selfalign.executor.v1.Executor", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("limits, message", [
    (pb.Limits(timeout_s=121), "timeout_s=121.0 is outside"),
    (pb.Limits(timeout_s=-1), "timeout_s=-1.0 is outside"),
    (pb.Limits(memory_mb=1 << 20), "memory_mb=1048576 is outside"),
    (pb.Limits(memory_mb=-5), "memory_mb=-5 is outside"),
    (pb.Limits(max_output_bytes=1 << 40), "max_output_bytes=1099511627776 is outside"),
])
def test_limits_over_the_maxima_are_rejected_not_clamped(stub, limits, message):
    with pytest.raises(grpc.RpcError) as err:
        stub.Execute(pb.ExecuteRequest(code="print(1)", limits=limits))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


@pytest.mark.parametrize("code, status, message", [
    ("", grpc.StatusCode.INVALID_ARGUMENT, "code is empty"),
    ("   \n", grpc.StatusCode.INVALID_ARGUMENT, "code is empty"),
    ("print(1)\x00", grpc.StatusCode.INVALID_ARGUMENT, "NUL byte"),
    ("#" * (2 << 20), grpc.StatusCode.RESOURCE_EXHAUSTED, "over the limit of 1048576"),
])
def test_bad_code_gets_a_clear_status(stub, code, status, message):
    with pytest.raises(grpc.RpcError) as err:
        stub.Execute(pb.ExecuteRequest(code=code))
    assert err.value.code() == status
    assert message in err.value.details()


def test_unknown_language_is_invalid(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Execute(pb.ExecuteRequest(code="print(1)", language="ruby"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_raises_executor_error_without_retrying_bad_input(client):
    with pytest.raises(ExecutorError, match="code is empty") as err:
        client.execute(Program(""))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ExecutorError, match="over the limit"):
        client.execute(Program("x = 1\n" * 400_000))


def test_metrics_count_executions_by_status(client, server):
    client.execute(Program("print(1)"))
    client.execute(Program("raise SystemExit(1)"))
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
    assert 'selfalign_executions_total{status="PASSED"}' in body
    assert 'selfalign_executions_total{status="FAILED"}' in body
    assert "selfalign_execution_latency_seconds_bucket" in body
    assert "selfalign_pool_size 2.0" in body
    assert "selfalign_pool_busy" in body


def test_stdin_too_large_is_resource_exhausted(client):
    with pytest.raises(ExecutorError) as err:
        client.execute(Program("print(1)", stdin=b"x" * (9 << 20), limits=Limits(timeout_s=1)))
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_result_statuses_match_the_proto():
    assert {s.value for s in Status} == {n for n in pb.Status.keys() if n != "STATUS_UNSPECIFIED"}


def test_one_status_table_and_only_unavailable_is_retryable():
    """Execute, ExecuteStream and the HTTP endpoint share one table; a bug is INTERNAL (a client
    must not retry it for minutes as if the server were busy), only Unavailable is UNAVAILABLE."""
    import grpc

    from executor.limits import InvalidRequest, RequestTooLarge
    from executor.pool import EngineUnavailable, ShuttingDown, Unavailable
    from executor.server import status_of

    assert status_of(RequestTooLarge("big"))[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_of(InvalidRequest("bad"))[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(EngineUnavailable("no engine"))[0] is grpc.StatusCode.UNAVAILABLE
    assert status_of(ShuttingDown("stopping")) == (grpc.StatusCode.UNAVAILABLE, "stopping")
    assert issubclass(EngineUnavailable, Unavailable) and issubclass(ShuttingDown, Unavailable)
    code, message = status_of(RuntimeError("a bug"))
    assert code is grpc.StatusCode.INTERNAL and "a bug" in message


def test_every_server_limit_is_a_serve_flag_with_the_dataclass_default():
    import argparse
    import dataclasses

    import executor.__main__ as cli
    from executor.limits import ServerLimits

    parser = argparse.ArgumentParser()
    cli._add_server_options(parser)
    assert cli._server_config(parser.parse_args([]), "h", 1).limits == ServerLimits()
    for f in dataclasses.fields(ServerLimits):
        flag = "--" + f.name.replace("_", "-")
        value = 100_000_000 if f.name.startswith("max_") else 7   # a maximum is never below its default
        limits = cli._server_config(parser.parse_args([flag, str(value)]), "h", 1).limits
        assert getattr(limits, f.name) == value, f.name
    old = cli._server_config(parser.parse_args(["--max-timeout", "30", "--default-memory", "64"]), "h", 1).limits
    assert old.max_timeout_s == 30 and old.default_memory_mb == 64   # the older flag names still work
