"""Shared fixtures: a real Docker engine, the real sandbox image and a real gRPC server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import pytest

from executor.client import Client
from executor.image import ensure_sandbox_image
from executor.server import ExecutorServer, ServerConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.fail(f"these tests need a Docker engine (run scripts/setup.sh): {exc}")
    return client


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    return ensure_sandbox_image(docker_client)


def start_server(docker_client, **overrides) -> ExecutorServer:
    config = ServerConfig(**{"port": 0, "pool_size": 2, **overrides})
    server = ExecutorServer(config, docker_client=docker_client).start()
    assert server.pool.wait_ready(120), "the pool did not start"
    return server


@pytest.fixture(scope="session")
def server(docker_client, sandbox_image):
    srv = start_server(docker_client, instance="pytest-session", metrics_port=0)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def target(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def client(target):
    with Client(target) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m executor serve` in a child process, for tests that kill or restart it. Its
    output goes to a file (a pipe nobody reads would block a chatty server) and is shown when it
    does not become ready."""

    def __init__(self, port: int, *extra: str, instance: str | None = None) -> None:
        self.port = port
        self.args = [sys.executable, "-m", "executor", "serve", "--port", str(port),
                     "--pool-size", "2", "--instance", instance or f"pytest-{port}", *extra]
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"server-{port}-", suffix=".log")[1])

    def start(self, wait: bool = True) -> ServerProcess:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, "SELFALIGN_LOG_LEVEL": "INFO"})
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        try:
            with Client(f"127.0.0.1:{self.port}", retry_timeout_s=timeout) as c:
                c.wait_until_ready(timeout)
        except Exception as exc:
            raise AssertionError(f"server on port {self.port} not ready ({exc}); its output:\n"
                                 f"{self.output()[-4000:]}") from None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 60.0) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=timeout)
        return self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def server_process():
    started: list[ServerProcess] = []

    def factory(*extra: str, port: int | None = None, instance: str | None = None) -> ServerProcess:
        sp = ServerProcess(port or free_port(), *extra, instance=instance)
        started.append(sp)
        return sp

    yield factory
    for sp in started:
        sp.kill()


def sandboxes(docker_client, instance: str) -> list:
    """The instance's containers; one removed while they are listed (a retired sandbox) is left out."""
    found = []
    for summary in docker_client.api.containers(all=True, filters={"label": f"org.selfalign.instance={instance}"}):
        try:
            found.append(docker_client.containers.get(summary["Id"]))
        except docker.errors.NotFound:
            pass
    return found


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
