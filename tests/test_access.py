"""Access control: bearer tokens and TLS (mutual too), with certificates made in the test."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor import Program, Status
from executor.client import Client, ExecutorError
from tests.conftest import start_server

TOKEN = "s3cret-token"


def _cert(subject: str, issuer_key, issuer_name, key, ca: bool, sans=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfalign test CA")])
    ca = _cert("selfalign test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("localhost", ca_key, ca_name, server_key, ca=False,
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("pipeline", ca_key, ca_name, client_key, ca=False)
    files = {}
    for name, obj in [("ca.pem", ca), ("server.pem", server), ("server.key", server_key),
                      ("client.pem", client), ("client.key", client_key)]:
        (d / name).write_bytes(_pem(obj))
        files[name] = d / name
    return files


@pytest.fixture(scope="module")
def token_server(docker_client, sandbox_image):
    server = start_server(docker_client, pool_size=1, token=TOKEN, instance="pytest-token")
    yield f"127.0.0.1:{server.port}"
    server.stop()


def test_calls_without_or_with_a_wrong_token_are_unauthenticated(token_server):
    for token in (None, "wrong"):
        with Client(token_server, token=token) as c:
            with pytest.raises(ExecutorError) as err:
                c.execute(Program("print(1)"))
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(ExecutorError) as err:
                list(c.execute_many([Program("print(1)")]))
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        # A write racing the refusal made grpc.aio report INTERNAL instead (in 5-25% of refused
        # streams here), which the client took for a broken stream: with one attempt allowed, a
        # SANDBOX_ERROR result came back instead of the refusal.
        with Client(token_server, token=token, max_attempts=1) as c:
            for _ in range(20):
                with pytest.raises(ExecutorError) as err:
                    list(c.execute_many([Program("print(1)")]))
                assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(ExecutorError):
                c.info()


def test_the_right_token_works_everywhere(token_server):
    with Client(token_server, token=TOKEN) as c:
        assert c.execute(Program("print(1)")).status is Status.PASSED
        assert [r.status for r in c.execute_many([Program("print(2)")])] == [Status.PASSED]
        assert c.info().pool.size == 1


def test_health_stays_reachable_without_a_token(token_server):
    with grpc.insecure_channel(token_server) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_server_certificate(docker_client, sandbox_image, pki):
    server = start_server(docker_client, pool_size=1, tls_cert=str(pki["server.pem"]),
                          tls_key=str(pki["server.key"]), token=TOKEN, instance="pytest-tls")
    target = f"localhost:{server.port}"
    try:
        with Client(target, token=TOKEN, tls_root_cert=pki["ca.pem"].read_bytes()) as c:
            assert c.execute(Program("print('tls')")).stdout == b"tls\n"
        with Client(target, token=TOKEN, retry_timeout_s=0.5) as c:  # plaintext to a TLS port
            with pytest.raises(ExecutorError):
                c.execute(Program("print(1)"))
    finally:
        server.stop()


def test_mutual_tls_requires_a_client_certificate(docker_client, sandbox_image, pki):
    server = start_server(docker_client, pool_size=1, tls_cert=str(pki["server.pem"]),
                          tls_key=str(pki["server.key"]), tls_client_ca=str(pki["ca.pem"]),
                          instance="pytest-mtls")
    target = f"localhost:{server.port}"
    ca = pki["ca.pem"].read_bytes()
    try:
        with Client(target, tls_root_cert=ca, tls_client_cert=pki["client.pem"].read_bytes(),
                    tls_client_key=pki["client.key"].read_bytes()) as c:
            assert c.execute(Program("print('mtls')")).stdout == b"mtls\n"
        with Client(target, tls_root_cert=ca, retry_timeout_s=0.5) as c:
            with pytest.raises(ExecutorError):
                c.execute(Program("print(1)"))
    finally:
        server.stop()
