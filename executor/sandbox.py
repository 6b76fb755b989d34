"""One sandbox container and the line protocol to the agent running inside it.

The container gets every restriction at creation (no network, read-only root, size-limited
tmpfs, no-new-privileges, pids/memory/CPU/ulimit limits, the job's environment only, no mounts)
and is attached before it starts, so the agent's "ready" line is never missed. The agent starts
as root with six capabilities and drops to its own user at once; jobs run as a user of their
own sandbox with no capabilities (see agent._drop_privileges). Jobs go in as JSON lines on the
attached stdin; answers come back on the attached stdout, framed by Docker's stream
multiplexing.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit

from executor import protocol
from executor.agent import AGENT_CAPS, JOB_ENV

log = logging.getLogger(__name__)

LABEL_ROLE = "org.selfalign.role"
LABEL_INSTANCE = "org.selfalign.instance"
LABEL_OWNER = "org.selfalign.owner"
ROLE_SANDBOX = "sandbox"
# Jobs run as a user of their own sandbox, never as the agent's, from a block of JOB_UID_BLOCK
# users picked at random per process. Two servers on one engine may pick the same block, so a
# uid is claimed through the engine: each sandbox container is named after its job uid
# (`selfalign-job-UID`), container names are unique per engine, and a name taken by any other
# server's sandbox makes this one try the next uid (tests/test_isolation.py, 16 allocators).
JOB_UID_BASE = 200_000
JOB_UID_BLOCK = 4096
# The agent's memory beyond the program's limit: its interpreter and the zygote's (shared pages,
# about 20 MiB), plus both output streams it buffers, counted once (see agent._send_reply).
AGENT_BASE_MB = 32


class JobUids:
    """Hands out job users so that no two live sandboxes of this process share one."""

    def __init__(self, block: int | None = None) -> None:
        self.base = JOB_UID_BASE + (secrets.randbelow(256) if block is None else block) * JOB_UID_BLOCK
        self.free = list(range(self.base + JOB_UID_BLOCK - 1, self.base - 1, -1))
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            if not self.free:   # thousands of live sandboxes: share a user rather than fail
                return self.base + secrets.randbelow(JOB_UID_BLOCK)
            return self.free.pop()

    def give_back(self, uid: int) -> None:
        with self.lock:
            if uid not in self.free and self.base <= uid < self.base + JOB_UID_BLOCK:
                self.free.append(uid)

    def taken_elsewhere(self, uid: int) -> None:
        """Another sandbox on the engine holds `uid`: try it again only after every other one."""
        with self.lock:
            if uid not in self.free and self.base <= uid < self.base + JOB_UID_BLOCK:
                self.free.insert(0, uid)


JOB_UIDS = JobUids()


def container_name(job_uid: int) -> str:
    return f"selfalign-job-{job_uid}"


# How many uids a start tries when other servers' sandboxes hold the ones it picks.
UID_CLAIM_TRIES = 64


class SandboxError(Exception):
    """The sandbox itself failed: the container died, hung or broke the protocol."""


@dataclass(frozen=True)
class SandboxConfig:
    image: str
    memory_mb: int = 1024
    cpus: float = 1.0
    pids_limit: int = 128
    tmpfs_mb: int = 64
    shm_mb: int = 64
    nofile: int = 256
    fsize_mb: int = 64
    runtime: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Room for the agent's buffers: 2 x the largest output a job may write (stdout and stderr)
    max_output_bytes: int = 16 << 20

    def container_memory_mb(self, memory_mb: int | None = None) -> int:
        """The container's limit: the program's, plus the agent's own memory and buffers, so a
        program never pays for the agent (the agent holds the program to its own limit)."""
        program = self.memory_mb if memory_mb is None else memory_mb
        return program + AGENT_BASE_MB + -(-2 * self.max_output_bytes // (1 << 20))

    def create_kwargs(self, job_uid: int) -> dict:
        mem = f"{self.container_memory_mb()}m"
        ulimits = [
            Ulimit(name="nofile", soft=self.nofile, hard=self.nofile),
            Ulimit(name="fsize", soft=self.fsize_mb << 20, hard=self.fsize_mb << 20),
            Ulimit(name="core", soft=0, hard=0),
        ]
        pids_limit: int | None = self.pids_limit
        if self.runtime == "runsc":
            # gVisor runs its own kernel: the pids cgroup counts the sandbox's host threads and
            # kills the whole sandbox when reached, while the guest's RLIMIT_NPROC makes fork()
            # fail inside it, which is what a process limit should do. (Under runc RLIMIT_NPROC
            # would count uid 10001 across every container on the host, so runc keeps the cgroup.)
            ulimits.append(Ulimit(name="nproc", soft=self.pids_limit, hard=self.pids_limit))
            pids_limit = None
        return dict(
            image=self.image,
            detach=True,
            stdin_open=True,
            tty=False,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
            shm_size=f"{self.shm_mb}m",
            ipc_mode="private",
            # The agent starts as root with AGENT_CAPS only, becomes uid 10001 keeping them,
            # and runs each job as job_uid with no capabilities (agent._drop_privileges).
            user="0:0",
            command=["--job-uid", str(job_uid)],
            cap_drop=["ALL"],
            cap_add=sorted(AGENT_CAPS),
            security_opt=["no-new-privileges"],
            pids_limit=pids_limit,
            mem_limit=mem,
            memswap_limit=mem,  # swap equal to memory: no swap at all
            nano_cpus=int(self.cpus * 1e9),
            ulimits=ulimits,
            environment=dict(JOB_ENV),
            name=container_name(job_uid),   # claims the uid on this engine (see JOB_UID_BLOCK)
            hostname=f"sandbox-{secrets.token_hex(4)}",  # tells containers apart in logs and tests
            labels={LABEL_ROLE: ROLE_SANDBOX, **self.labels},
            log_config=LogConfig(type=LogConfig.types.NONE),
            runtime=self.runtime,
        )


class Sandbox:
    """A started container with its agent, used by one thread at a time."""

    def __init__(self, client: docker.DockerClient, config: SandboxConfig) -> None:
        self.client = client
        self.config = config
        self.memory_mb = config.memory_mb
        self.job_uid: int | None = None
        self.container: Container | None = None
        self._sock: socket.socket | None = None
        self._raw = None
        self._frames = bytearray()
        self._lines = bytearray()
        self._scanned = 0   # bytes of _lines already searched for a newline

    @property
    def short_id(self) -> str:
        return self.container.short_id if self.container else "-"

    def start(self, timeout_s: float = 60.0) -> None:
        try:
            container = self._create()
            self.container = container
            self._raw = self.client.api.attach_socket(
                str(container.id), params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self._sock = getattr(self._raw, "_sock", self._raw)
            container.start()
            hello = self._read_line(time.monotonic() + timeout_s)
        except (docker.errors.DockerException, OSError) as exc:
            self.remove()
            raise SandboxError(f"could not start a sandbox: {exc}") from exc
        except SandboxError:
            self.remove()
            raise
        if not hello.get("ready"):
            self.remove()
            raise SandboxError(f"agent did not start: {hello}")

    def _create(self) -> Container:
        """A container whose name claims a job uid that no other sandbox on the engine has."""
        uids = JOB_UIDS
        for _ in range(UID_CLAIM_TRIES):
            uid = uids.take()
            try:
                container = self.client.containers.create(**self.config.create_kwargs(uid))
            except docker.errors.APIError as exc:
                if exc.status_code == 409:   # the name, and so the uid, is another sandbox's
                    uids.taken_elsewhere(uid)
                    continue
                uids.give_back(uid)
                raise
            self.job_uid = uid
            return container
        raise SandboxError(f"no free job uid after {UID_CLAIM_TRIES} tries: other sandboxes hold them")

    def run(self, job: protocol.Job, timeout_s: float) -> protocol.Reply:
        """Send one job and wait for its answer; SandboxError if none comes in `timeout_s`."""
        if self._sock is None:
            raise SandboxError("sandbox is not running")
        try:
            self._sock.sendall(protocol.encode(job))
        except OSError as exc:
            raise SandboxError(f"could not send the job to the sandbox: {exc}") from exc
        return self._read_line(time.monotonic() + timeout_s)  # type: ignore[return-value]

    def set_memory(self, memory_mb: int) -> None:
        """Change the memory limit in place (a cgroup update, no restart)."""
        if memory_mb == self.memory_mb:
            return
        mem = f"{self.config.container_memory_mb(memory_mb)}m"
        if self.container is None:
            raise SandboxError("sandbox is not running")
        try:
            self.container.update(mem_limit=mem, memswap_limit=mem)
        except docker.errors.DockerException as exc:
            raise SandboxError(f"could not set the memory limit to {memory_mb} MiB: {exc}") from exc
        self.memory_mb = memory_mb

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended the container's init (the agent)."""
        if self.container is None:
            return False
        try:
            self.container.reload()
            return bool(self.container.attrs["State"].get("OOMKilled"))
        except docker.errors.DockerException:
            return False

    def remove(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()
            except OSError:
                pass
        self._sock = self._raw = None
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                log.warning("could not remove sandbox %s: %s", self.short_id, exc)
                return   # still there, maybe running: its job user is not free yet
        if self.job_uid is not None:
            JOB_UIDS.give_back(self.job_uid)
            self.job_uid = None

    def _read_line(self, deadline: float) -> dict:
        # Only the bytes that arrived since the last search are searched: a reply of many MiB
        # comes in many frames, and searching it all again after each one was quadratic.
        while True:
            newline = self._lines.find(b"\n", self._scanned)
            if newline < 0:
                self._scanned = len(self._lines)
            if newline >= 0:
                line = bytes(self._lines[:newline])
                del self._lines[: newline + 1]
                self._scanned = 0
                try:
                    return protocol.decode(line)
                except ValueError as exc:
                    raise SandboxError(f"agent sent a malformed line: {line[:200]!r}") from exc
            self._read_frame(deadline)

    def _read_frame(self, deadline: float) -> None:
        """Read one frame of Docker's multiplexed stream: 8-byte header, then payload."""
        while True:
            if len(self._frames) >= 8:
                stream, size = self._frames[0], struct.unpack(">I", self._frames[4:8])[0]
                if len(self._frames) >= 8 + size:
                    payload = bytes(self._frames[8 : 8 + size])
                    del self._frames[: 8 + size]
                    if stream == 1:
                        self._lines += payload
                        return
                    log.warning("sandbox %s agent stderr: %s", self.short_id,
                                payload.decode("utf-8", "replace").rstrip())
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("the sandbox did not answer in time")
            if self._sock is None:
                raise SandboxError("sandbox is not running")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(1 << 20)
            except TimeoutError:
                raise SandboxError("the sandbox did not answer in time") from None
            except OSError as exc:
                raise SandboxError(f"lost the connection to the sandbox: {exc}") from exc
            if not chunk:
                raise SandboxError("the sandbox exited")
            self._frames += chunk


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def remove_leftovers(client: docker.DockerClient, instance: str, include_own: bool = False) -> int:
    """Remove sandboxes of an earlier server of this instance, or of a dead process here;
    with `include_own`, this process's own too (at shutdown). Returns how many were removed.
    """
    host = socket.gethostname()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_ROLE}={ROLE_SANDBOX}"}):
        labels = container.labels
        owner_host, _, owner_pid = labels.get(LABEL_OWNER, "").rpartition(":")
        stale = labels.get(LABEL_INSTANCE) == instance or (
            owner_host == host and owner_pid.isdigit() and not _pid_alive(int(owner_pid))
        )
        if stale and (include_own or labels.get(LABEL_OWNER) != owner_label()):
            try:
                container.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                pass   # gone meanwhile
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                # Another server starting on the same engine is removing it already.
                log.info("sandbox %s is being removed by another process", container.short_id)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
