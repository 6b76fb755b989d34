"""Server lifecycle: leftovers, graceful shutdown, restarts under a client, engine loss,
fresh isolation, several targets and the result cache."""

from __future__ import annotations

import os
import subprocess
import sys

import docker.errors
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor import Program, Status
from executor.client import Client, ExecutorError
from executor.sandbox import LABEL_INSTANCE, LABEL_OWNER, LABEL_ROLE, ROLE_SANDBOX
from tests.conftest import ROOT, free_port, sandboxes, start_server, wait_for


def test_leftover_containers_of_a_crashed_server_are_removed(docker_client, sandbox_image, server_process):
    instance = f"pytest-crash-{os.getpid()}"
    first = server_process(instance=instance).start()
    # Two in the pool and one spare (pool.py): every one of them is left behind by a crash.
    assert wait_for(lambda: len(sandboxes(docker_client, instance)) == 3, timeout=60)
    first.kill()  # SIGKILL: no chance to clean up
    left = sandboxes(docker_client, instance)
    assert len(left) == 3
    second = server_process(instance=instance).start()
    ids_now = {c.id for c in sandboxes(docker_client, instance)}
    assert ids_now.isdisjoint({c.id for c in left})
    second.kill()
    for c in sandboxes(docker_client, instance):
        c.remove(force=True)


def test_dead_owner_on_this_host_is_cleaned_even_under_another_instance(docker_client, sandbox_image):
    import socket

    dead_pid = 2 ** 22 + 12345  # above pid_max: never alive
    orphan = docker_client.containers.create(
        sandbox_image, labels={LABEL_ROLE: ROLE_SANDBOX, LABEL_INSTANCE: "someone-else",
                               LABEL_OWNER: f"{socket.gethostname()}:{dead_pid}"})
    server = start_server(docker_client, instance="pytest-owner")
    try:
        with pytest.raises(docker.errors.NotFound):
            orphan.reload()
    finally:
        server.stop()


def test_graceful_shutdown_drains_and_removes_containers(docker_client, sandbox_image, server_process):
    instance = f"pytest-drain-{os.getpid()}"
    sp = server_process(instance=instance).start()
    target = f"127.0.0.1:{sp.port}"
    code = "import time\ntime.sleep(2)\nprint('finished')"
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from executor.client import Client; from executor import Program\n"
         f"r = Client({target!r}, retry_timeout_s=1).execute(Program({code!r}))\n"
         "print(r.status.value, r.stdout.decode().strip())"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert wait_for(lambda: _busy(target), timeout=30)
    out = sp.terminate()
    assert "draining" in out
    assert proc.communicate(timeout=60)[0].split() == ["PASSED", "finished"]
    assert sandboxes(docker_client, instance) == []


def _busy(target: str) -> bool:
    try:
        with Client(target, retry_timeout_s=1) as c:
            return c.info().pool.busy > 0
    except ExecutorError:
        return False


def test_stream_survives_a_server_restart(sandbox_image, server_process):
    port = free_port()
    sp = server_process(port=port).start()
    n = 300
    programs = [Program(f"import time\ntime.sleep(0.01)\nprint({i})", id=str(i)) for i in range(n)]
    results = []
    with Client(f"127.0.0.1:{port}", retry_timeout_s=120) as client:
        for r in client.execute_many(programs, max_in_flight=16):
            results.append(r)
            if len(results) == 50:
                sp.kill()
                sp.start(wait=False)
    ids = [r.id for r in results]
    assert len(ids) == n and sorted(ids, key=int) == [str(i) for i in range(n)]
    assert all(r.status is Status.PASSED and r.stdout == f"{r.id}\n".encode() for r in results)


def test_unary_call_retries_until_the_server_is_back(sandbox_image, server_process):
    port = free_port()
    sp = server_process(port=port)
    with Client(f"127.0.0.1:{port}", retry_timeout_s=120) as client:
        sp.start(wait=False)  # the call is made while the server is still starting
        r = client.execute(Program("print('up')"))
    assert r.status is Status.PASSED and r.stdout == b"up\n"


def test_engine_unreachable_is_reported_not_hung(server_process):
    sp = server_process()
    sp.args = sp.args  # same command, but pointed at a socket where no engine listens
    env_socket = "unix:///tmp/selfalign-no-engine.sock"
    sp.proc = subprocess.Popen(sp.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "DOCKER_HOST": env_socket})
    target = f"127.0.0.1:{sp.port}"
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=60)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    with Client(target, retry_timeout_s=0.5) as client:
        with pytest.raises(ExecutorError) as err:
            client.execute(Program("print(1)"))
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert "/tmp/selfalign-no-engine.sock" in str(err.value)
        assert client.info().pool.engine_reachable is False
    channel.close()


def test_fresh_isolation_uses_a_new_container_per_job(docker_client, sandbox_image):
    server = start_server(docker_client, isolation="fresh", instance="pytest-fresh")
    try:
        with Client(f"127.0.0.1:{server.port}") as client:
            code = "import os\nprint(os.uname().nodename)"
            outs = {client.execute(Program(code)).stdout for _ in range(4)}
            assert client.info().pool.isolation == "fresh"
        assert len(outs) == 4  # each job saw a different container cgroup
    finally:
        server.stop()


def test_several_targets_share_the_work(docker_client, sandbox_image, server):
    other = start_server(docker_client, instance="pytest-second")
    before = [server.pool.state().completed, 0]
    try:
        targets = [f"127.0.0.1:{server.port}", f"127.0.0.1:{other.port}"]
        with Client(targets) as client:
            programs = [Program("import time; time.sleep(0.05); print(1)", id=str(i)) for i in range(40)]
            results = list(client.execute_many(programs, max_in_flight=8))
            assert len(results) == 40 and all(r.passed for r in results)
            # unary calls go round-robin
            for _ in range(4):
                client.execute(Program("print(1)"))
        served = [s.pool.state().completed - b for s, b in zip((server, other), before, strict=True)]
        assert sum(served) == 44 and all(n > 0 for n in served)
    finally:
        other.stop()


def test_result_cache_skips_programs_that_already_ran(target, tmp_path):
    cache = tmp_path / "cache.sqlite"
    programs = [Program(f"import random\nprint(random.random())  # {i}", id=str(i)) for i in range(3)]
    with Client(target, cache_path=str(cache)) as client:
        first = {r.id: r.stdout for r in client.execute_many(programs)}
        one = client.execute(Program("import random\nprint(random.random())  # 1", id="x"))
    with Client(target, cache_path=str(cache)) as client:
        again = {r.id: r.stdout for r in client.execute_many(programs)}
        other_stdin = client.execute(Program("import random\nprint(random.random())  # 1", stdin=b"1"))
    assert again == first  # served from the cache: a rerun would print new random numbers
    assert one.stdout == first["1"] and one.id == "x"  # same program, cached by the stream run
    assert other_stdin.stdout not in first.values()


def test_a_retired_sandbox_is_replaced_by_a_spare_started_before(docker_client, sandbox_image):
    """After a job the agent could not clean (a SysV segment outlives its processes) the slot
    takes a spare, a sandbox started before the job ended, instead of starting one on its own
    critical path; the spare maker then starts the next spare."""
    server = start_server(docker_client, pool_size=1, spares=1, instance=f"pytest-spares-{os.getpid()}")
    try:
        instance = server.pool.instance
        assert wait_for(lambda: len(sandboxes(docker_client, instance)) == 2 and server.pool.spares_ready == 1,
                        timeout=60)   # the spare's agent is up, not only its container
        def hostnames() -> set[str]:
            while True:
                try:
                    return {c.attrs["Config"]["Hostname"] for c in sandboxes(docker_client, instance)}
                except docker.errors.NotFound:   # one was removed while being listed
                    continue

        before = hostnames()
        host = "import os\nprint(os.uname().nodename)"   # each sandbox has a hostname of its own
        with Client(f"127.0.0.1:{server.port}") as c:
            first = c.execute(Program(host)).stdout.decode().strip()
            leave_segment = "import ctypes\nprint(ctypes.CDLL(None).shmget(0x1234, 4096, 0o1000 | 0o600) >= 0)"
            assert c.execute(Program(leave_segment)).stdout == b"True\n"
            second = c.execute(Program(host)).stdout.decode().strip()
        assert first in before and second in before and second != first   # the spare, started before
        assert wait_for(lambda: len(hostnames()) == 2 and not hostnames() <= before, timeout=60)   # the next spare
    finally:
        server.stop()
    assert sandboxes(docker_client, instance) == []   # the spare goes too
