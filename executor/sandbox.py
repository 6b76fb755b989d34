"""One sandbox container and the line protocol to the agent running inside it.

The container gets every restriction at creation (no network, read-only root, size-limited
tmpfs, no-new-privileges, pids/memory/CPU/ulimit limits, the job's environment only, no mounts
but its channel's) and the agent starts as root with six capabilities and drops to its own user
at once; jobs run as a user of their own sandbox with no capabilities (see
agent._drop_privileges). Jobs go in as JSON lines and answers come back as JSON lines over one
of two channels:

- socket (the default where it works): the server listens on a Unix socket in a directory of its
  own (mode 0700 on the host), which is bind-mounted read-only into the container; the agent
  connects once, at start, and the server then closes the listener and unlinks the socket, so no
  later process in the sandbox (a job) can connect. Jobs and replies skip dockerd and its shim,
  which copied every byte of both (0.35 ms of CPU a program).
- attach: the container's stdin and stdout, attached before it starts (so the agent's "ready"
  line is never missed), framed by Docker's stream multiplexing. For a remote engine, gVisor, or
  an engine that cannot see the server's directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import LogConfig, Mount, Ulimit

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
CHANNEL_MOUNT = "/run/selfalign"   # where a sandbox sees its channel directory
CHANNEL_SOCKET = "agent.sock"
RECV_BYTES = 256 << 10   # the most one read takes from the agent (a large reply comes in many)
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


class ChannelUnavailable(SandboxError):
    """The engine cannot bind-mount the channel directory: it does not share this process's
    filesystem (this server runs in a container of its own, the engine's socket mounted in)."""


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
    # A host directory (mode 0700, the server's) to make each sandbox's channel in: a Unix socket
    # the agent connects to once, so that jobs and replies skip dockerd. None: the attached
    # stdin and stdout carry them (a remote engine, a server in a container, gVisor).
    channel_dir: str | None = None

    def container_memory_mb(self, memory_mb: int | None = None) -> int:
        """The container's limit: the program's, plus the agent's own memory and buffers, so a
        program never pays for the agent (the agent holds the program to its own limit)."""
        program = self.memory_mb if memory_mb is None else memory_mb
        return program + AGENT_BASE_MB + -(-2 * self.max_output_bytes // (1 << 20))

    def create_kwargs(self, job_uid: int, channel: str | None = None) -> dict:
        """The container's settings; with `channel` (a host directory holding the server's
        socket), that directory is mounted read-only at CHANNEL_MOUNT and the agent told to
        connect there, and nothing is attached."""
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
        command = ["--job-uid", str(job_uid)]
        extra: dict = {}
        if channel is not None:
            command += ["--channel", f"{CHANNEL_MOUNT}/{CHANNEL_SOCKET}"]
            extra["mounts"] = [Mount(CHANNEL_MOUNT, channel, type="bind", read_only=True)]
        return dict(
            **extra,
            image=self.image,
            detach=True,
            stdin_open=channel is None,
            tty=False,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
            shm_size=f"{self.shm_mb}m",
            ipc_mode="private",
            # The agent starts as root with AGENT_CAPS only, becomes uid 10001 keeping them,
            # and runs each job as job_uid with no capabilities (agent._drop_privileges).
            user="0:0",
            command=command,
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
            # With a channel the agent's stderr is kept (1 MB at most) for the error when it fails
            # to start; attached, the server reads it from the stream.
            log_config=(LogConfig(type=LogConfig.types.NONE) if channel is None else
                        LogConfig(type=LogConfig.types.JSON, config={"max-size": "1m", "max-file": "1"})),
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
        self._channel: str | None = None   # this sandbox's directory in config.channel_dir
        self._frames = bytearray()
        self._lines = bytearray()
        self._scanned = 0   # bytes of _lines already searched for a newline
        self._inbox = bytearray(RECV_BYTES)
        self._inview = memoryview(self._inbox)

    @property
    def short_id(self) -> str:
        return self.container.short_id if self.container else "-"

    def start(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        listener = None
        try:
            if self.config.channel_dir is not None:
                self._channel = tempfile.mkdtemp(prefix="sandbox-", dir=self.config.channel_dir)
                os.chmod(self._channel, 0o755)   # the agent's user may enter; the parent is the server's alone
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                path = os.path.join(self._channel, CHANNEL_SOCKET)
                listener.bind(path)
                os.chmod(path, 0o666)
                listener.listen(1)
            container = self._create()
            self.container = container
            if listener is not None:
                container.start()
                self._sock = self._accept_agent(listener, container, deadline)
            else:
                self._raw = self.client.api.attach_socket(
                    str(container.id), params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                )
                self._sock = getattr(self._raw, "_sock", self._raw)
                container.start()
            hello = self._read_line(deadline)
        except (docker.errors.DockerException, OSError) as exc:
            self.remove()
            raise SandboxError(f"could not start a sandbox: {exc}") from exc
        except SandboxError:
            self.remove()
            raise
        finally:
            if listener is not None:
                # One connection, the agent's, taken before any job runs: no later process in the
                # sandbox (a job) can reach the server this way.
                listener.close()
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._channel or "", CHANNEL_SOCKET))
        if not hello.get("ready"):
            self.remove()
            raise SandboxError(f"agent did not start: {hello}")

    def _accept_agent(self, listener: socket.socket, container: Container, deadline: float) -> socket.socket:
        """The agent's connection to the channel; a SandboxError with the agent's last words when
        the container stops first."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("the agent did not connect in time")
            listener.settimeout(min(remaining, 0.5))
            try:
                conn, _ = listener.accept()
                conn.settimeout(None)
                return conn
            except TimeoutError:
                pass
            state = self.client.api.inspect_container(str(container.id))["State"]
            if not state.get("Running"):
                # A runtime that keeps its sandboxes from host sockets (gVisor, unless told to let
                # them through) makes the agent's connect fail: the pool goes over attach then.
                words = container.logs(tail=5).decode("utf-8", "replace").strip()
                raise ChannelUnavailable(f"the agent exited (code {state.get('ExitCode')}) before it connected"
                                         + (f": {words}" if words else ""))

    def _create(self) -> Container:
        """A container whose name claims a job uid that no other sandbox on the engine has."""
        uids = JOB_UIDS
        for _ in range(UID_CLAIM_TRIES):
            uid = uids.take()
            try:
                container = self.client.containers.create(**self.config.create_kwargs(uid, self._channel))
            except docker.errors.APIError as exc:
                if exc.status_code == 409:   # the name, and so the uid, is another sandbox's
                    uids.taken_elsewhere(uid)
                    continue
                uids.give_back(uid)
                if self._channel is not None and "bind source path does not exist" in str(exc.explanation):
                    raise ChannelUnavailable(f"the engine cannot mount {self._channel}: {exc.explanation}") from exc
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
        for stream in (self._raw, self._sock):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
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
        if self._channel is not None:
            shutil.rmtree(self._channel, ignore_errors=True)
            self._channel = None

    def _read_line(self, deadline: float) -> dict:
        # Only the bytes that arrived since the last search are searched: a reply of many MiB
        # comes in many frames, and searching it all again after each one was quadratic.
        while True:
            newline = self._lines.find(b"\n", self._scanned)
            if newline < 0:
                self._scanned = len(self._lines)
            if newline >= 0:
                line = self._lines[:newline]
                del self._lines[: newline + 1]
                self._scanned = 0
                try:
                    return protocol.decode(line)
                except ValueError as exc:
                    raise SandboxError(f"agent sent a malformed line: {line[:200]!r}") from exc
            self._read_frame(deadline)

    def _read_frame(self, deadline: float) -> None:
        """Read one frame of Docker's multiplexed stream: 8-byte header, then payload (over the
        channel: whatever bytes came)."""
        if self._channel is not None:   # the channel carries plain bytes, not Docker's frames
            self._recv_into(self._lines, deadline)
            return
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
            self._recv_into(self._frames, deadline)

    def _recv_into(self, into: bytearray, deadline: float) -> None:
        """Append what the agent sent next to `into`. Read through one buffer kept for the
        sandbox's life: recv(1 MiB) allocates and frees a megabyte for every call, 10 us against
        1 us for a reply of a few hundred bytes."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError("the sandbox did not answer in time")
        if self._sock is None:
            raise SandboxError("sandbox is not running")
        self._sock.settimeout(remaining)
        try:
            size = self._sock.recv_into(self._inbox)
        except TimeoutError:
            raise SandboxError("the sandbox did not answer in time") from None
        except OSError as exc:
            raise SandboxError(f"lost the connection to the sandbox: {exc}") from exc
        if not size:
            raise SandboxError("the sandbox exited")
        into += self._inview[:size]


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def remove_leftovers(client: docker.DockerClient, instance: str, include_own: bool = False) -> int:
    """Remove sandboxes of an earlier server of this instance, or of a dead process here;
    with `include_own`, this process's own too (at shutdown). Returns how many were removed.
    """
    host = socket.gethostname()
    removed = 0
    # The list's own summaries (labels included): the SDK's containers.list() inspects each one
    # after listing, and one removed in between (another server's, a retired spare) raised NotFound.
    for summary in client.api.containers(all=True, filters={"label": f"{LABEL_ROLE}={ROLE_SANDBOX}"}):
        labels = summary.get("Labels") or {}
        owner_host, _, owner_pid = labels.get(LABEL_OWNER, "").rpartition(":")
        stale = labels.get(LABEL_INSTANCE) == instance or (
            owner_host == host and owner_pid.isdigit() and not _pid_alive(int(owner_pid))
        )
        if stale and (include_own or labels.get(LABEL_OWNER) != owner_label()):
            try:
                client.api.remove_container(summary["Id"], force=True)
                removed += 1
            except docker.errors.NotFound:
                pass   # gone meanwhile
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                # Another server starting on the same engine is removing it already.
                log.info("sandbox %s is being removed by another process", summary["Id"][:12])
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
