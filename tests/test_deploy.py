"""The Kubernetes manifests in deploy/ are valid against the Kubernetes schemas and say what the
fleet needs: gRPC health probes, a headless Service, a disruption budget, no egress."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from executor.jobs import SERVICE_NAME

MANIFESTS = sorted((Path(__file__).resolve().parent.parent / "deploy" / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.30.0"


def _documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_fleet_is_probed_balanced_and_closed():
    docs = {d["kind"]: d for d in _documents()}
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    assert "grpc" in container["livenessProbe"]
    assert docs["Service"]["spec"]["clusterIP"] == "None"   # headless: the client balances
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    policy = docs["NetworkPolicy"]["spec"]
    assert "Egress" in policy["policyTypes"] and policy["egress"] == []
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The socket channel's directory is the node's, at the same path, as the engine sees it.
    channel_dir = container["args"][container["args"].index("--channel-dir") + 1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == channel_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"]["path"] == channel_dir


def test_docker_compose_up_as_typed_serves_grpc_http_and_metrics_on_loopback():
    """The README's `docker compose up` on this machine, where the registries ship only
    Compose v1: setup's CLI plugin makes `docker compose` itself work. scripts/up.sh -d builds
    what compose needs and starts it; gRPC, the HTTP/JSON endpoint and metrics answer on
    127.0.0.1; `docker compose down` stops it."""
    import json
    import os
    import subprocess
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ports = {"SELFALIGN_PORT": "50151", "SELFALIGN_HTTP_PORT": "8181", "SELFALIGN_METRICS_PORT": "9191"}
    env = {**os.environ, **ports}
    assert subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    up = subprocess.run(["bash", "scripts/up.sh", "-d"], cwd=root, env=env, capture_output=True, text=True,
                        timeout=900)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        config = subprocess.run(["docker", "compose", "config"], cwd=root, env=env, capture_output=True,
                                text=True).stdout
        for port in ports.values():
            assert f"127.0.0.1:{port}:" in config, config
        info = subprocess.run(["python3", "-m", "executor", "info", "--target", "127.0.0.1:50151"], cwd=root,
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0 and json.loads(info.stdout)["serving"], info.stderr
        request = urllib.request.Request("http://127.0.0.1:8181/v1/execute", data=b'{"code": "print(6 * 7)"}')
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert json.loads(resp.read())["stdout"] == "42\n"
        with urllib.request.urlopen("http://127.0.0.1:9191/metrics", timeout=30) as resp:
            assert b"selfalign_executions_total" in resp.read()
        # Jobs went over the socket channel: the engine could mount the server's directory.
        logs = subprocess.run(["docker", "compose", "logs", "executor"], cwd=root, env=env, capture_output=True,
                              text=True).stdout
        assert "channel socket" in logs and "cannot mount" not in logs, logs[-3000:]
    finally:
        down = subprocess.run(["docker", "compose", "down"], cwd=root, env=env, capture_output=True, text=True,
                              timeout=300)
    assert down.returncode == 0, down.stderr[-2000:]
