"""The channel between the server and each sandbox's agent: a Unix socket the agent connects to
once (past dockerd), or the containers' attached streams. Either way no job can reach it."""

from __future__ import annotations

import os

import docker.errors
import pytest

from executor import Limits, Program, Status
from executor.client import Client
from tests.conftest import sandboxes, start_server

PROBE = """import os, socket
print(sorted(os.listdir('/run/selfalign')) if os.path.isdir('/run/selfalign') else 'no channel dir')
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('/run/selfalign/agent.sock')
    print('connected')
except OSError as exc:
    print(type(exc).__name__)
try:
    open('/run/selfalign/x', 'w')
    print('wrote')
except OSError as exc:
    print(type(exc).__name__)
"""


def _open_stdin(docker_client, instance: str) -> set[bool]:
    return {c.attrs["Config"]["OpenStdin"] for c in sandboxes(docker_client, instance)}


@pytest.mark.parametrize("channel", ["socket", "attach"])
def test_jobs_reach_the_agent_and_no_job_reaches_the_channel(docker_client, sandbox_image, channel):
    server = start_server(docker_client, pool_size=1, spares=0, channel=channel,
                          instance=f"pytest-channel-{channel}-{os.getpid()}")
    try:
        assert server.channel == channel
        with Client(f"127.0.0.1:{server.port}") as c:
            r = c.execute(Program(PROBE))
            big = c.execute(Program("import sys\nsys.stdout.write('o' * (4 << 20))",
                                    limits=Limits(max_output_bytes=4 << 20)))
        assert r.status is Status.PASSED, r
        if channel == "socket":
            # The socket is gone once the agent connected, and the directory is read-only.
            assert r.stdout.decode().split() == ["[]", "FileNotFoundError", "OSError"]
            assert _open_stdin(docker_client, server.pool.instance) == {False}   # nothing attached
        else:
            assert r.stdout.decode().split() == ["no", "channel", "dir", "FileNotFoundError", "FileNotFoundError"]
            assert _open_stdin(docker_client, server.pool.instance) == {True}
        assert big.status is Status.PASSED and big.stdout == b"o" * (4 << 20)
    finally:
        server.stop()


def test_the_channel_directory_is_removed_with_the_server(docker_client, sandbox_image):
    server = start_server(docker_client, pool_size=1, spares=1, channel="socket",
                          instance=f"pytest-channel-dir-{os.getpid()}")
    root = server.pool.config.channel_dir
    assert root is not None and oct(os.stat(root).st_mode & 0o777) == "0o700"   # this server's alone
    with Client(f"127.0.0.1:{server.port}") as c:
        assert c.execute(Program("print(1)")).stdout == b"1\n"
    server.stop()
    assert not os.path.exists(root)


def test_an_engine_that_cannot_mount_the_channel_is_used_over_attach(docker_client, sandbox_image, monkeypatch):
    """A server in a container of its own, with the engine's socket mounted in, makes its channel
    directory where the engine cannot see it: the engine refuses the mount, and the pool goes over
    the attached streams from then on. (This engine does share the server's filesystem, so its
    refusal, in the engine's own words, comes from a stand-in for `containers.create`.)"""
    from docker.models.containers import ContainerCollection

    real_create = ContainerCollection.create
    refused: list[str] = []

    def create(self, image, command=None, **kwargs):
        if kwargs.get("mounts"):
            source = kwargs["mounts"][0]["Source"]
            refused.append(source)
            response = type("R", (), {"status_code": 400, "reason": "Bad Request", "url": ""})()
            raise docker.errors.APIError("400 Client Error", response,   # type: ignore[arg-type]
                                         explanation=f"invalid mount config for type \"bind\": "
                                                     f"bind source path does not exist: {source}")
        return real_create(self, image, command, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", create)
    server = start_server(docker_client, pool_size=1, spares=0, channel="socket",
                          instance=f"pytest-channel-refused-{os.getpid()}")
    try:
        with Client(f"127.0.0.1:{server.port}") as c:
            assert c.execute(Program("print(2)")).stdout == b"2\n"
        assert len(refused) == 1 and server.pool.config.channel_dir is None
        assert _open_stdin(docker_client, server.pool.instance) == {True}
    finally:
        server.stop()


def test_a_runtime_that_keeps_sandboxes_from_host_sockets_is_used_over_attach(docker_client, sandbox_image):
    """gVisor refuses a sandbox's connect to a host socket: asked for the socket anyway, the pool
    says why once and goes over attach."""
    import shutil

    if shutil.which("runsc") is None:
        pytest.skip("gVisor (runsc) is not installed")
    server = start_server(docker_client, pool_size=1, spares=0, channel="socket", runtime="runsc",
                          instance=f"pytest-channel-runsc-{os.getpid()}")
    try:
        with Client(f"127.0.0.1:{server.port}") as c:
            assert c.execute(Program("print(3)")).stdout == b"3\n"
        assert server.pool.config.channel_dir is None
        assert _open_stdin(docker_client, server.pool.instance) == {True}
    finally:
        server.stop()
