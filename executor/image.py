"""Builds the sandbox image from files in this repository, with or without a registry.

The tag carries a hash of everything that goes into the image (Dockerfile, agent, base), so a
result names exactly the sandbox that produced it and a changed agent never runs under a stale
tag. Offline, the base is a Debian bookworm root filesystem made with debootstrap and imported
with `docker import`; with a registry, the Dockerfile's default base, python:3.11-slim.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
from importlib import resources

import docker
import docker.errors

log = logging.getLogger(__name__)

SANDBOX_REPOSITORY = "selfalign-sandbox"
BASE_REPOSITORY = "selfalign-base"
REGISTRY_BASE = "python:3.11-slim"
_PACKAGE = resources.files("executor")


def _read(name: str) -> bytes:
    return (_PACKAGE / name).read_bytes()


def _context_files() -> dict[str, bytes]:
    return {
        "Dockerfile": _read("sandbox_image/Dockerfile"),
        "agent.py": _read("agent.py"),
        "protocol.py": _read("protocol.py"),
    }


def offline_base_tag() -> str:
    digest = hashlib.sha256(_read("sandbox_image/build-offline-base.sh")).hexdigest()[:12]
    return f"{BASE_REPOSITORY}:bookworm-{digest}"


def sandbox_image_tag(base_image: str) -> str:
    h = hashlib.sha256(base_image.encode())
    for name, data in sorted(_context_files().items()):
        h.update(name.encode() + b"\0" + data)
    return f"{SANDBOX_REPOSITORY}:{h.hexdigest()[:12]}"


def default_base() -> str:
    """The base a build uses unless told: offline where debootstrap can run, else the registry's."""
    if env := os.environ.get("SELFALIGN_SANDBOX_BASE"):
        return env
    if shutil.which("debootstrap") and hasattr(os, "geteuid") and os.geteuid() == 0:
        return "offline"
    return REGISTRY_BASE


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_offline_base(client: docker.DockerClient) -> str:
    tag = offline_base_tag()
    if image_exists(client, tag):
        return tag
    script = _PACKAGE / "sandbox_image/build-offline-base.sh"
    log.info("building offline base image %s with debootstrap (about a minute)", tag)
    with resources.as_file(script) as path:
        proc = subprocess.run(["bash", str(path), tag], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"offline base build failed:\n{proc.stderr[-4000:]}")
    return tag


PROFILES = ("default", "ds1000")
DS1000_REPOSITORY = "selfalign-sandbox-ds1000"
SITE_PACKAGES = "/usr/local/lib/python3.11/dist-packages"


def ds1000_requirements() -> bytes:
    return _read("sandbox_image/ds1000-requirements.txt")


def ensure_image(client: docker.DockerClient, base: str | None = None, profile: str = "default") -> str:
    """The image for a sandbox profile: `default` (Python and NumPy) or `ds1000` (the default
    image plus the data-science libraries DS-1000's problems import)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown sandbox profile {profile!r}: {', '.join(PROFILES)}")
    tag = ensure_sandbox_image(client, base)
    return ensure_ds1000_image(client, tag) if profile == "ds1000" else tag


def ensure_ds1000_image(client: docker.DockerClient, sandbox_tag: str) -> str:
    """The sandbox image plus DS-1000's libraries (`sandbox_image/ds1000-requirements.txt`),
    installed from wheels on this machine into the image's site-packages: no compiler and no
    registry in the build. Its tag hashes the sandbox image and the requirements."""
    digest = hashlib.sha256(sandbox_tag.encode() + b"\0" + ds1000_requirements()).hexdigest()[:12]
    tag = f"{DS1000_REPOSITORY}:{digest}"
    if image_exists(client, tag):
        return tag
    import tempfile

    log.info("building the data-science sandbox image %s (wheels for DS-1000's libraries; a few minutes)", tag)
    with tempfile.TemporaryDirectory(prefix="selfalign-ds1000-") as work:
        site = os.path.join(work, "site")
        requirements = os.path.join(work, "requirements.txt")
        with open(requirements, "wb") as f:
            f.write(ds1000_requirements())
        env = {**os.environ, "PIP_CONSTRAINT": ""}   # the host's caps are for the host's environment
        proc = subprocess.run(
            ["python3", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", site,
             "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64", "-r", requirements],
            capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"installing DS-1000's libraries failed:\n{proc.stderr[-4000:]}")
        with open(os.path.join(work, "Dockerfile"), "w") as f:
            f.write(f"FROM {sandbox_tag}\nUSER 0:0\nCOPY site/ {SITE_PACKAGES}/\n"
                    # Precompiled: the root filesystem is read-only at run time.
                    f"RUN python3 -m compileall -q -j 0 {SITE_PACKAGES} >/dev/null 2>&1 || true\n"
                    "ENV MPLBACKEND=Agg MPLCONFIGDIR=/tmp/matplotlib TF_CPP_MIN_LOG_LEVEL=3\n"
                    "USER 10001:10001\n")
        try:
            client.images.build(path=work, tag=tag, rm=True, forcerm=True, pull=False,
                                labels={"org.selfalign.base": sandbox_tag, "org.selfalign.profile": "ds1000"})
        except docker.errors.BuildError as exc:
            tail = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-4000:]
            raise RuntimeError(f"data-science sandbox image build failed: {exc}\n{tail}") from exc
    return tag


def ensure_sandbox_image(client: docker.DockerClient, base: str | None = None) -> str:
    """Return the sandbox image tag, building it (and an offline base) when missing."""
    base = base or default_base()
    base_image = ensure_offline_base(client) if base == "offline" else base
    tag = sandbox_image_tag(base_image)
    if image_exists(client, tag):
        return tag
    log.info("building sandbox image %s from %s", tag, base_image)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in _context_files().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    try:
        client.images.build(
            fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
            buildargs={"BASE_IMAGE": base_image}, pull=False,
            labels={"org.selfalign.base": base_image},
        )
    except docker.errors.BuildError as exc:
        tail = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-4000:]
        raise RuntimeError(f"sandbox image build failed: {exc}\n{tail}") from exc
    return tag
