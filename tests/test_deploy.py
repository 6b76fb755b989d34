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
