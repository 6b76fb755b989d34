"""One way to get an executor client: remote targets, checked reachable, or an executor started
in this process for as long as the work takes (its sandboxes removed afterwards). Used by the
pipeline's execute stage, `run-batch`, `trainer eval` and `trainer prepare --verify`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from executor.client import Client, ExecutorError


def check_executor(targets: list[str] | None = None, token: str | None = None) -> None:
    """Before long work whose results need an executor: the targets answer, or (embedded) the
    Docker engine does. One ExecutorError otherwise, found in seconds, not after the work."""
    if targets:
        with Client(targets, token=token) as client:
            client.check_reachable()
        return
    import docker

    try:
        docker.from_env(timeout=10).ping()
    except Exception as exc:   # DockerException, or requests' own errors underneath
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExecutorError(f"the embedded executor needs a Docker engine, and none answers ({first[:200]})") \
            from None


@contextlib.contextmanager
def connect(targets: list[str] | None = None, pool_size: int | None = None, token: str | None = None,
            server_config=None, **client_kwargs) -> Iterator[Client]:
    """A ready client. With `targets`, each must answer first (one clear error otherwise); with
    none, an embedded executor on a free loopback port (or as `server_config` describes)."""
    if targets:
        with Client(targets, token=token, **client_kwargs) as client:
            client.check_reachable()
            yield client
        return
    from executor.server import ExecutorServer, ServerConfig

    config = server_config or ServerConfig(port=0, instance=None)
    if pool_size:
        config.pool_size = pool_size
    server = ExecutorServer(config).start()
    try:
        if not server.pool.wait_ready(180):
            raise ExecutorError(f"the embedded executor is not ready: {server.pool.state().engine_error}")
        with Client(f"127.0.0.1:{server.port}", **client_kwargs) as client:
            yield client
    finally:
        server.stop()
