"""The job agent that runs as PID 1 inside every sandbox container.

It reads jobs, one JSON object a line, from the container's attached stdin and answers each
with one JSON line on stdout (the messages are typed in `protocol.py`, which sits beside this
file in the image). Every job runs in a process forked from an already-initialized
interpreter, so a job costs a fork (about a millisecond) instead of a Python start-up or a
`docker exec` (0.1 to 0.4 s). The forks come from a zygote: a process forked from the agent at
start, before any job, which never receives a job's code, input or output (only the job's pipe
descriptors, and the command to fork). So nothing a job does to the interpreter reaches the next
job, and no job's data is in a later job's memory, not even in freed buffers (the agent's own heap
holds every job it parsed). The zygote forks each job with clone(CLONE_PARENT), so the job is
the agent's own child (where the kernel refuses that, it double-forks and PID 1 adopts the job),
and the agent times, waits for and measures it as before.

Why PID 1: the kernel delivers no signal to a namespace's init unless init installed a
handler, so a program's `os.kill(os.getppid(), 9)` or `os.kill(-1, 9)` cannot kill the agent,
while the agent's own `kill(-1, SIGKILL)` reaches every process the job left behind, whatever
session or process group it moved to. The agent also makes itself non-dumpable, so a job
running as the same user can neither ptrace it nor open its file descriptors.

The agent ignores SIGTERM and SIGINT (a job's `os.kill(1, SIGTERM)` must not end it; the
server removes containers with SIGKILL). After each job it compares its own resource limits,
scheduling priority, policy and CPU affinity with what they were at start: a job runs as the
same user and can change them (`prlimit(1, ...)`), and a changed agent reports itself unclean,
so the server replaces the container instead of handing it to the next job.

How a job's end is told apart from an early exit: the runner in the job's process, after the
program's last statement (and `atexit`), sends "end" (or how it left) as a datagram to the
agent's abstract Unix socket. The kernel stamps every datagram with its sender's pid
(SO_PASSCRED), and the agent accepts only the one from the job's own process: a forked child
or grandchild cannot claim the end for it, and a program that closes every file descriptor
(`os.closerange`) still reports. Under gVisor, whose kernel reports no sender pid, only the
runner's own check (it sends only from the job's process) remains. What is not and cannot be
guarded: the program's own process can always send the message itself; a program is trusted to
run its own tests, not to refrain from cheating.

Only the standard library is used: this file is copied into the sandbox image and must run on
the image's Python (3.9 or newer).
"""

from __future__ import annotations

import _socket
import atexit
import base64
import ctypes
import dataclasses
import functools
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import types

if __package__:   # imported on the host, for its constants
    from executor import protocol
else:             # run as a script in the sandbox, with protocol.py beside it
    import protocol

WORK_DIR = "/tmp/work"
HOME_DIR = "/tmp/home"
WIPED_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
# Cleaning a writable place may take this long before the container is replaced instead
# (millions of empty files would otherwise hold the reply past the server's grace period).
WIPE_BUDGET_S = 2.0
SCRIPT_NAME = "main.py"
# The sandbox container's environment (sandbox.py starts it with this): every job gets back
# exactly what the agent started with, whatever an earlier job set.
JOB_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME_DIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# Imported once here so that jobs using them do not pay for the import. Only pure modules
# that start no threads: a thread in the parent would not survive the fork.
PRELOADED_MODULES = (
    "collections", "itertools", "functools", "math", "re", "string", "typing", "dataclasses",
    "heapq", "bisect", "copy", "json", "unittest", "fractions", "decimal", "statistics",
    "datetime", "enum", "abc", "io", "operator", "textwrap", "hashlib", "struct",
)
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS, PR_CAPBSET_DROP = 8, 24
AGENT_UID = 10001
# What the agent keeps of root when it becomes AGENT_UID (the engine grants no more): CHOWN to
# give the job its files, FOWNER to remove what the job left in sticky /tmp, /dev/shm and
# /dev/mqueue, KILL for a job's leftovers, SETUID/SETGID to become the job's user, SETPCAP to
# empty the job's bounding set. A job has none of them.
AGENT_CAPS = {"CHOWN": 0, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_LIBC = ctypes.CDLL(None, use_errno=True)   # opened once: jobs call into it on every fork
_PYLIBC = ctypes.PyDLL(None)   # the same library, called with the GIL held (for clone)
_RLIMITS = tuple(name for name in dir(resource) if name.startswith("RLIMIT_"))
AF_VSOCK, EAFNOSUPPORT, ENOSYS = 40, 97, 38
SHM_INFO, SEM_INFO, MSG_INFO = 14, 19, 12
READ_CHUNK = 65536
REPLY_CHUNK = 3 * 16384   # a multiple of 3: base64 pieces join with no padding between them
# How long to keep reading pipes that a finished program's leftover children hold open.
DRAIN_AFTER_EXIT_S = 0.05
# While a stream is under a pipe's capacity (Linux's default), how often its pipe is read (see
# _watch).
QUIET_READ_S = 0.005
PIPE_CAPACITY = 65536
# How often a running job's memory is sampled for the limit (after its first interval, so a job
# that ends at once costs nothing). ru_maxrss covers one process; a job that forks could
# otherwise hold its limit once per process, up to the container's hard cap. The sample is the
# container's anonymous and tmpfs memory above what it was when the job started, less the output
# the agent itself holds: everything the job and its children use, each shared page once.
MEMORY_SAMPLE_S = 0.01
OUTCOME_ADDRESS = "\0selfalign-outcome-" + os.urandom(8).hex()
_outcome_sock: socket.socket   # bound in main(), before any job
_baseline: dict | None = None
_senders_verified = True   # False where the kernel does not report sender pids (gVisor's gives 0)
_zygote_pid = 0
_zygote_sock: socket.socket | None = None
_zygote_baseline: dict | None = None
_job_uid: int | None = None   # None: the job runs as the agent's user (an engine that started us unprivileged)
_start_env: dict[str, str] = {}
# Made once in the zygote (_set_job_defaults) for the jobs it forks:
_DEVNULL = _ZYGOTE_STDERR = -1   # what the zygote's own 0, 1 and 2 are between jobs
_CAPS_NONE: tuple = ()           # capset()'s arguments for no capabilities
_DROP_GROUPS = True              # whether the job's supplementary groups must be cleared
_KEPT: list = []   # in a job: objects it must not free (see _child)
_wiped = False   # the last job ended clean: its writable places were emptied after it
_oom_kills: int | None = None   # the cgroup's OOM kills when the last job ended
_channel: socket.socket | None = None   # the server's socket, where jobs come over one
_UNITTEST_RUNS: list[int] = []   # how many tests each unittest.main() ran (_count_unittest_runs)


def main() -> None:
    global _outcome_sock, _baseline, _SECCOMP, _start_env
    # The container starts with the job's environment (see sandbox.py), so a job's os.environ
    # and its /proc/self/environ agree, as they do for `python3 main.py`.
    _start_env = dict(os.environ)
    argv, channel_path = _channel_option(sys.argv[1:])
    _drop_privileges(argv)
    _make_undumpable()
    _SECCOMP = _seccomp_filter()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    _outcome_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    _outcome_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    _outcome_sock.bind(OUTCOME_ADDRESS)
    _outcome_sock.setblocking(False)
    _check_sender_pids()
    for name in PRELOADED_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.collect()
    gc.freeze()  # keep the parent's objects out of the children's collections (copy-on-write)
    _baseline = _own_state()
    jobs, out = _open_channel(channel_path)
    _start_zygote()   # before the first job line is read: the zygote never holds job data
    _send(out, protocol.Hello(ready=True, python=sys.version.split()[0], pid=os.getpid(),
                              agent_uid=os.getuid(), job_uid=_job_uid))
    for line in jobs:
        if not line.strip():
            continue
        try:
            reply = run_job(protocol.decode(line))  # type: ignore[arg-type]
        except Exception as exc:  # the agent must answer every job, even a malformed one
            reply = protocol.Reply(id=None, agent_error=f"{type(exc).__name__}: {exc}", clean=False)
            try:
                job = protocol.decode(line)
                reply["id"], reply["nonce"] = job.get("id"), job.get("nonce")
            except Exception:
                pass
        _send_reply(out, reply)


def _channel_option(argv: list[str]) -> tuple[list[str], str | None]:
    """`--channel PATH` (last on the command line): the server's Unix socket, bind-mounted read-only
    into the container, to talk over instead of the attached stdin and stdout."""
    if len(argv) >= 2 and argv[-2] == "--channel":
        return argv[:-2], argv[-1]
    return argv, None


def _open_channel(path: str | None):
    """Where jobs come from and replies go: the server's socket, connected once, before any job
    runs (the server takes that one connection and no other), or the attached stdin and stdout.
    The socket carries the jobs' bytes past dockerd and its shim, which otherwise copy every
    job and every reply (0.35 ms of CPU a program)."""
    if path is None:
        return sys.stdin.buffer, sys.stdout.buffer
    global _channel
    _channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _channel.connect(path)
    return _channel.makefile("rb"), _channel.makefile("wb")


def _send_reply(out, reply: protocol.Reply) -> None:
    """Write a reply whose output streams are written as base64 in pieces straight from their
    buffers: built whole (bytes, base64, str, JSON, encoded line) a reply took about six times
    the output's size, all of it counted against the job's memory."""
    streams: dict[str, bytearray] = {key: reply.pop(key) for key in protocol.OUTPUT_KEYS  # type: ignore[misc]
                                     if key in reply}
    out.write(protocol.encode(reply)[:-2])   # the reply without its closing brace and newline
    for key, buf in streams.items():
        out.write(b',"' + key.encode() + b'":"')
        view = memoryview(buf)
        for i in range(0, len(view), REPLY_CHUNK):
            out.write(base64.b64encode(view[i:i + REPLY_CHUNK]))
        view.release()
        out.write(b'"')
    out.write(b'}\n')
    out.flush()


def _send(out, message: protocol.Hello) -> None:
    out.write(protocol.encode(message))
    out.flush()


def _drop_privileges(argv: list[str]) -> None:
    """Started as root (with only AGENT_CAPS): become AGENT_UID, keeping those capabilities, so
    that jobs run as a user of their own (`--job-uid`). A job then cannot prlimit, renice, pin or
    signal the agent or the zygote, which belong to another user, and each sandbox's job user is
    distinct, so per-user kernel limits (message queues, inotify instances) are not shared
    between sandboxes. Started unprivileged, jobs run as the agent's own user, as before.
    """
    global _job_uid
    if os.getuid() != 0:
        return
    if len(argv) != 2 or argv[0] != "--job-uid" or not argv[1].isdigit() or int(argv[1]) in (0, AGENT_UID):
        raise SystemExit(f"agent: started as root, expected --job-uid N (not 0 or {AGENT_UID}), got {argv}")
    _job_uid = int(argv[1])
    mask = sum(1 << bit for bit in AGENT_CAPS.values())
    _LIBC.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(AGENT_UID, AGENT_UID, AGENT_UID)
    os.setresuid(AGENT_UID, AGENT_UID, AGENT_UID)
    _capset(mask)   # KEEPCAPS kept them permitted; make them effective again
    _LIBC.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)


def _capset(mask: int) -> None:
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    # two struct __user_cap_data_struct {effective, permitted, inheritable}: low and high words
    data = (ctypes.c_uint32 * 6)(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
    if _LIBC.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _empty_bounding_set() -> None:
    """Once, in the zygote: every job it forks inherits an empty bounding set (the zygote keeps
    its own effective capabilities; the bounding set only limits what an exec could gain)."""
    if _job_uid is None:
        return
    for cap in range(64):
        if _LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:
            break   # EINVAL: past the last capability this kernel knows


def _become_job_user() -> None:
    """In the job, before the program: the job's own user, with no capabilities at all."""
    if _job_uid is None:
        return
    if _DROP_GROUPS:   # each change costs the kernel a new cred
        os.setgroups([])
    os.setresgid(_job_uid, _job_uid, _job_uid)
    os.setresuid(_job_uid, _job_uid, _job_uid)
    # Only a change away from uid 0 clears capabilities: from AGENT_UID they are kept unless
    # emptied here (with arguments the zygote made).
    if _LIBC.capset(*_CAPS_NONE) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _make_undumpable() -> None:
    try:
        _LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception:
        pass


@dataclasses.dataclass
class _Watched:
    """What watching a running job saw: its output, how it ended, and why it was stopped."""
    stdout: bytearray = dataclasses.field(default_factory=bytearray)
    stderr: bytearray = dataclasses.field(default_factory=bytearray)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    status: str | None = None     # set when the agent stopped the job (TIMEOUT, OUTPUT_LIMIT)
    reason: str = ""
    exited: bool = False
    wait_status: int | None = None
    rusage: resource.struct_rusage | None = None
    outcomes: list[str] = dataclasses.field(default_factory=list)   # the job's own end message
    tree_kib: int = 0   # the most memory the job's processes held together, as sampled
    base_kib: int | None = None   # the container's charge when the job started


def run_job(job: protocol.Job) -> protocol.Reply:
    """Run one program and describe what happened; never raises for the program's faults."""
    global _wiped, _oom_kills
    timeout_s = float(job["timeout_s"])
    memory_mb = int(job.get("memory_mb") or 0)
    if not _wiped:   # after a clean job nothing is left that could have sent one
        _drain_outcomes(None)   # nothing left over from an earlier job counts
    clean_before, stdin_fd = _prepare_files(job["code"], base64.b64decode(job.get("stdin_b64") or ""))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    oom_kills_before = _oom_kill_count() if _oom_kills is None else _oom_kills
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = _zygote_fork(stdin_fd, out_w, err_w)
    for fd in (out_w, err_w, stdin_fd):
        os.close(fd)
    if pid <= 0:
        for fd in (out_r, err_r):
            os.close(fd)
        return protocol.Reply(id=job.get("id"), nonce=job.get("nonce"), clean=False,
                              agent_error="the zygote could not start the job" + (" (it is gone)" if pid < 0 else ""))
    watched = _watch(pid, out_r, err_r, int(job["max_output_bytes"]), start + timeout_s)
    wall = time.monotonic() - start
    if watched.status == "TIMEOUT":
        watched.reason = f"exceeded the wall-clock limit of {timeout_s:g} s"
    clean_after = _end(pid, watched)
    for fd in (out_r, err_r):
        os.close(fd)
    _oom_kills = _oom_kill_count()   # also the next job's count before it: nothing runs in between
    status, reason, exit_code, sig = _verdict(watched, _oom_kills > oom_kills_before, memory_mb)
    clean = (clean_before and clean_after and _zygote_sock is not None   # the zygote lives (an OOM kill can take it)
             and _wipe_writable_dirs() and not _sysv_ipc_left()
             and (not _our_state_changeable()
                  or (_own_state() == _baseline and _zygote_state() == _zygote_baseline)))
    _wiped = clean   # the next job needs no wipe before it
    rusage = watched.rusage
    return protocol.Reply(
        id=job.get("id"), nonce=job.get("nonce"), status=status, reason=reason, exit_code=exit_code, signal=sig,
        # bytearrays, encoded as they are written (_send_reply)
        stdout_b64=watched.stdout, stderr_b64=watched.stderr,  # type: ignore[typeddict-item]
        stdout_truncated=watched.stdout_truncated, stderr_truncated=watched.stderr_truncated,
        wall_time_s=round(wall, 6),
        cpu_time_s=round(rusage.ru_utime + rusage.ru_stime, 6) if rusage else 0.0,
        peak_memory_mb=round(rusage.ru_maxrss / 1024, 3) if rusage else 0.0,
        clean=clean,
    )


def _prepare_files(code: str, stdin: bytes) -> tuple[bool, int]:
    """A fresh work and home directory with the script in it, owned by the job user, and the
    job's standard input as an unlinked file; (whether the wipe before was clean, stdin fd)."""
    # After a clean job nothing ran that could write (its leftovers were killed before the
    # wipe), so the wipe is only needed before the first job and after an unclean one.
    global _wiped
    clean_before = True if _wiped else _wipe_writable_dirs()
    _wiped = False   # until this job ends clean
    os.mkdir(WORK_DIR, 0o700)
    os.mkdir(HOME_DIR, 0o700)
    script = os.path.join(WORK_DIR, SCRIPT_NAME)
    _write_new(script, code.encode("utf-8"), 0o644)
    if _job_uid is not None:
        for path in (script, WORK_DIR, HOME_DIR):   # the file first: the agent cannot enter the job's dirs
            os.chown(path, _job_uid, _job_uid)
    stdin_path = "/tmp/.stdin"
    _write_new(stdin_path, stdin, 0o600)
    stdin_fd = os.open(stdin_path, os.O_RDONLY)
    os.unlink(stdin_path)
    return clean_before, stdin_fd


def _write_new(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _watch(pid: int, out_r: int, err_r: int, cap: int, deadline: float) -> _Watched:
    """Collect the job's output until it exits (and its pipes drain), its time is up, or it
    writes more than `cap` bytes to a stream. Woken by the job's pidfd, so a job that ends at
    once costs no polling delay. The outcome socket is read once the job has exited (_end).

    A pipe is read at once only when its stream has passed a pipe's capacity; before that, at
    most every QUIET_READ_S (and as the job exits): each wake-up costs the agent and the writing
    job a context switch, and a failing program's traceback, written line by line, woke the
    agent four times. Below that much output nothing can block: the pipe holds it all."""
    watched = _Watched()
    streams = {out_r: watched.stdout, err_r: watched.stderr}
    # epoll itself, not the selectors module: its keys and maps cost 20 us of every job.
    poller = select.epoll()
    pidfd = _pidfd_open(pid)  # readable when the child exits: no polling delay per job
    if pidfd is not None:
        poller.register(pidfd, select.EPOLLIN)
    open_pipes = {out_r, err_r}
    resting = {out_r, err_r}   # not armed for input; a hang-up is still reported
    for fd in open_pipes:
        os.set_blocking(fd, False)
        poller.register(fd, select.EPOLLONESHOT)
    armed = select.EPOLLIN | select.EPOLLONESHOT
    exited_at = None
    now = time.monotonic()
    arm_at = now + QUIET_READ_S
    next_sample = now + MEMORY_SAMPLE_S
    watched.base_kib = _cgroup_memory_kib()

    def read(fd: int) -> bool:
        """One read of a pipe; False once it is at its end (or would block)."""
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if not data:
            poller.unregister(fd)
            open_pipes.discard(fd)
            return False
        buf = streams[fd]
        room = cap - len(buf)
        if len(data) > room:
            buf += data[:room]
            name = "stdout" if fd == out_r else "stderr"
            setattr(watched, f"{name}_truncated", True)
            watched.status, watched.reason = "OUTPUT_LIMIT", f"wrote more than {cap} bytes to {name}"
            return False
        buf += data
        return True

    while True:
        now = time.monotonic()
        if exited_at is None and now >= next_sample and watched.base_kib is not None:
            charged = _cgroup_memory_kib()
            if charged is not None:
                held = (len(watched.stdout) + len(watched.stderr)) // 1024
                watched.tree_kib = max(watched.tree_kib, charged - watched.base_kib - held)
            next_sample = now + MEMORY_SAMPLE_S
        if exited_at is None:
            done_pid, watched.wait_status, watched.rusage = os.wait4(pid, os.WNOHANG)
            if done_pid == pid:
                exited_at = arm_at = now
                watched.exited = True
                if pidfd is not None:
                    poller.unregister(pidfd)
                # What it wrote is read now, without a wait for each pipe to report it.
                for fd in list(open_pipes):
                    while read(fd):
                        pass
                if watched.status == "OUTPUT_LIMIT":
                    break
        if resting and now >= arm_at:
            for fd in resting & open_pipes:
                poller.modify(fd, armed)
            resting.clear()
        if exited_at is not None and (not open_pipes or now - exited_at > DRAIN_AFTER_EXIT_S):
            break  # pipes still held open by leftover children: those are killed after
        if exited_at is None and now >= deadline:
            for fd in list(open_pipes):   # what it wrote since the last read, a resting pipe's too
                read(fd)
            watched.status = "TIMEOUT"
            break
        if exited_at is not None:
            wait = DRAIN_AFTER_EXIT_S
        else:
            wait = min(deadline, next_sample) - now if pidfd is not None else min(deadline - now, 0.002)
            if resting:
                wait = min(wait, arm_at - now)
        for fd, _ in poller.poll(max(wait, 0.0)):
            if fd == pidfd:
                continue
            if read(fd) and exited_at is None and len(streams[fd]) < PIPE_CAPACITY:
                if not resting:
                    arm_at = now + QUIET_READ_S
                resting.add(fd)
            elif fd in open_pipes:
                poller.modify(fd, armed)
        if watched.status == "OUTPUT_LIMIT":
            break
    poller.close()
    if pidfd is not None:
        os.close(pidfd)
    return watched


def _end(pid: int, watched: _Watched) -> bool:
    """Kill the job if it still runs, and whatever it left behind; True if nothing was left."""
    if not watched.exited:
        os.kill(pid, signal.SIGKILL)
        _, watched.wait_status, watched.rusage = os.wait4(pid, 0)
    clean = _kill_leftovers()
    _drain_outcomes(pid, watched.outcomes)   # what the job sent before it exited
    return clean


def _verdict(watched: _Watched, oom_killed: bool, memory_mb: int) -> tuple[str, str, int | None, int | None]:
    """(status, reason, exit code, signal) of a finished job."""
    assert watched.wait_status is not None   # _end() waited for it
    exit_code = sig = None
    if os.WIFEXITED(watched.wait_status):
        exit_code = os.WEXITSTATUS(watched.wait_status)
    elif os.WIFSIGNALED(watched.wait_status):
        sig = os.WTERMSIG(watched.wait_status)
    status, reason = watched.status, watched.reason
    if status is None:
        status, reason = _classify(exit_code, sig, watched.outcomes[0] if watched.outcomes else "", oom_killed)
    elif status == "OUTPUT_LIMIT" and watched.exited and exit_code is not None:
        reason += f" (then exited with code {exit_code})"
    peak_kib = watched.rusage.ru_maxrss if watched.rusage else 0
    if status != "TIMEOUT" and memory_mb and max(peak_kib, watched.tree_kib) > memory_mb * 1024:
        # The container has room for the agent's buffers beyond the program's limit (see
        # sandbox.py); a program that used that room still went over its own limit, whether in
        # one process or in several together.
        together = " of its processes together" if watched.tree_kib > peak_kib else ""
        status, reason = "MEMORY_LIMIT", (f"exceeded the memory limit (peak{together} "
                                          f"{max(peak_kib, watched.tree_kib) / 1024:.0f} MiB, limit {memory_mb} MiB)")
    return status, reason, exit_code, sig


def _classify(exit_code, sig, outcome: str, oom_killed: bool) -> tuple[str, str]:
    if oom_killed or outcome == "exception:MemoryError":
        return "MEMORY_LIMIT", "exceeded the memory limit" + (
            " (MemoryError)" if outcome == "exception:MemoryError" else " (killed by the kernel)")
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return "FAILED", f"killed by signal {sig} ({name})"
    if exit_code != 0:
        if outcome.startswith("exception:"):
            return "FAILED", f"uncaught {outcome.split(':', 1)[1]}"
        return "FAILED", f"exited with code {exit_code}"
    if outcome == "end":
        return "PASSED", "ran to its end and exited 0"
    if outcome == "unittest-exit:0":
        return "PASSED", "unittest.main() ran its tests and exited 0"
    if outcome == "unittest-no-tests":
        return "FAILED", "unittest.main() found no test to run"
    if outcome.startswith("exit:"):
        return "FAILED", "called sys.exit(0) or exit() before reaching its end"
    return "FAILED", "exited via os._exit(0) before reaching its end"


def _start_zygote() -> None:
    global _zygote_pid, _zygote_sock, _zygote_baseline
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        if _channel is not None:
            # The zygote never talks to the server (and jobs close every descriptor anyway). The
            # descriptor itself: the socket object stays open while its file objects exist.
            os.close(_channel.fileno())
        try:
            global _clone_parent_works
            _empty_bounding_set()
            _set_job_defaults()
            probe = _probe_clone_parent()
            _clone_parent_works = probe > 0
            _zygote_loop(theirs, probe)
        finally:
            os._exit(0)
    theirs.close()
    _zygote_pid, _zygote_sock = pid, ours
    _zygote_baseline = _zygote_state()
    if _zygote_baseline and _zygote_baseline.get("probe"):
        os.waitpid(_zygote_baseline["probe"], 0)   # the zygote's probe of clone(CLONE_PARENT)


def _set_job_defaults() -> None:
    """Once, in the zygote: what every job inherits through fork, so that no job spends time
    (about half a millisecond each) setting it again: signal dispositions as a fresh `python3`
    has them, no core files, the umask and environment a job starts with, and the seccomp
    filter with no_new_privs. None of it matters to the zygote, which only forks jobs, reports
    its state and kills leftovers; a job, of another user, cannot signal it or change it."""
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGALRM,
                   signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as CPython does for every script
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    global _UNITTEST_RUNS, _DEVNULL, _ZYGOTE_STDERR, _CAPS_NONE, _DROP_GROUPS
    _UNITTEST_RUNS = _count_unittest_runs()   # patched once here; each job gets its own empty copy
    os.umask(0o022)
    if dict(os.environ) != (_start_env or JOB_ENV):
        os.environ.clear()
        os.environ.update(_start_env or JOB_ENV)
    _load_seccomp_filter()
    # The interpreter state of a script process, made here and not in each job, where every
    # object a job touches costs a page copy (about 3 us each; a job's start was 340 of them):
    # the std streams (the old ones kept: freeing a text stream runs Python code), the
    # __main__ module, sys.argv and sys.path, capset's arguments; and the descriptors the zygote
    # puts back on its own 0-2 after each fork.
    script = os.path.join(WORK_DIR, SCRIPT_NAME)
    _KEPT.extend((sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__))
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = _job_streams()
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.modules.pop("protocol", None)   # the agent's: a script importing that name finds its own
    sys.dont_write_bytecode = True
    sys.argv = [script]
    sys.path[0] = WORK_DIR
    _DEVNULL = os.open(os.devnull, os.O_RDWR)
    _ZYGOTE_STDERR = os.dup(2)
    _CAPS_NONE = ((ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0), (ctypes.c_uint32 * 6)())
    _DROP_GROUPS = bool(os.getgroups())   # empty already since the agent dropped root


def _zygote_loop(sock: socket.socket, probe: int = 0) -> None:
    """The zygote: fork a job on request (as the agent's child), report its own
    state, or kill every process but the agent and itself."""
    script = os.path.join(WORK_DIR, SCRIPT_NAME)
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    _offset_recursion_limit(depth + 3)   # a job's program runs below _child, _run_as_main and exec
    # Everything the loop uses is bound here and the "run" path is flat, with no call of its own:
    # after each fork, every page the zygote writes while the job lives is copied (a few us
    # each), and each object it touches and each call's frame is such a page.
    recvmsg, send, dup2, close = sock.recvmsg, sock.send, os.dup2, os.close
    unpack_fds, space = _THREE_FDS.unpack, socket.CMSG_SPACE(_THREE_FDS.size)
    sol_socket, scm_rights, truncated = socket.SOL_SOCKET, socket.SCM_RIGHTS, socket.MSG_CTRUNC
    devnull, own_stderr = _DEVNULL, _ZYGOTE_STDERR
    fork = _fork_as_sibling if _clone_parent_works else _fork_by_middle
    while True:
        msg, ancdata, flags, _ = recvmsg(64, space)
        if msg == b"run":
            try:   # exactly the three descriptors of the job's stdin, stdout and stderr
                (level, kind, data), = ancdata
                if level != sol_socket or kind != scm_rights or flags & truncated:
                    raise ValueError
                stdin_fd, out_fd, err_fd = unpack_fds(data)
            except (ValueError, struct.error):
                _close_received(ancdata)
                send(b"0")
                continue
            # The job's stdio on 0-2 before the fork (the job would pay page copies to set them),
            # the zygote's own back after it (the agent reads the pipes to their end).
            dup2(stdin_fd, 0)
            dup2(out_fd, 1)
            dup2(err_fd, 2)
            close(stdin_fd)
            close(out_fd)
            close(err_fd)
            pid = fork(script)
            if pid == 0:
                _child(script, None)   # never returns
            dup2(devnull, 0)
            dup2(devnull, 1)
            dup2(own_stderr, 2)
            send(b"%d" % pid if pid > 0 else b"0")
        elif not msg:
            return
        elif msg == b"state":
            send(json.dumps({**_own_state(), "probe": probe}).encode())
        elif msg == b"kill":
            try:
                os.kill(-1, signal.SIGKILL)   # spares init (the agent) and the caller (us)
            except OSError:
                pass
            send(b"ok")


_THREE_FDS = struct.Struct("3i")


def _close_received(ancdata: list) -> None:
    """Close whatever descriptors came with a malformed "run" message."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for (fd,) in struct.iter_unpack("i", data[:len(data) - len(data) % 4]):
                os.close(fd)


def _fork_by_middle(script: str) -> int:
    """Where clone(CLONE_PARENT) is refused: fork a middle process that forks the job and exits,
    so that the job is orphaned to the agent (PID 1). The job's pid, -1 when a fork failed (the
    job itself never returns from here)."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()   # the job starts when the middle process is gone, reaped too
    try:
        middle = os.fork()
    except OSError:
        middle = -1
    if middle == 0:
        os.close(r)
        try:
            job = os.fork()
        except OSError:
            job = -1
        if job == 0:
            os.close(w)
            os.close(go_w)
            _child(script, go_r)   # never returns
        os.write(w, str(job).encode())
        os._exit(0)
    os.close(w)
    answer = b"0" if middle < 0 else (os.read(r, 32) or b"0")
    os.close(r)
    if middle > 0:
        os.waitpid(middle, 0)   # the job is orphaned now: the agent (PID 1) adopts it
    os.write(go_w, b"1")
    for fd in (go_r, go_w):
        os.close(fd)
    return int(answer) if int(answer) > 0 else -1


def _offset_recursion_limit(depth: int) -> None:
    """A script's module frame is the first on the stack; the runner's own frames must not eat
    into the program's recursion depth, whether it keeps the default limit or sets one."""
    real_set, real_get = sys.setrecursionlimit, sys.getrecursionlimit

    def setrecursionlimit(limit: int) -> None:
        real_set(limit + depth)

    def getrecursionlimit() -> int:
        return real_get() - depth

    setrecursionlimit(real_get())
    sys.setrecursionlimit, sys.getrecursionlimit = setrecursionlimit, getrecursionlimit


CLONE_PARENT, SIGCHLD_SIGNAL = 0x00008000, 17
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)   # None: no clone, double fork
_clone_parent_works = False   # set in the zygote at start when the kernel allows it


def _fork_as_sibling(script: str = "") -> int:
    """fork(), except that the new process is the agent's child, not the zygote's
    (clone(CLONE_PARENT)): no middle process to fork, exit and reap for every job. CPython's own
    before- and after-fork steps run around it, as os.fork() runs them; the zygote has one
    thread, so no lock can be held across it. The GIL stays held (PyDLL), as in os.fork().
    The C functions and the call's arguments are made once (_CLONE): made in each call, they
    were pages written after the fork, in the zygote and in the job."""
    if _CLONE is None:
        return -1
    before, after_child, after_parent, syscall, args = _CLONE
    before()
    pid = syscall(*args)
    if pid == 0:
        after_child()
    else:
        after_parent()
    return pid if pid >= 0 else -1


_CLONE = None if CLONE_SYSCALL is None else (
    ctypes.pythonapi.PyOS_BeforeFork, ctypes.pythonapi.PyOS_AfterFork_Child, ctypes.pythonapi.PyOS_AfterFork_Parent,
    _PYLIBC.syscall, (ctypes.c_long(CLONE_SYSCALL), ctypes.c_ulong(CLONE_PARENT | SIGCHLD_SIGNAL), 0, 0, 0, 0))


def _probe_clone_parent() -> int:
    """Whether clone(CLONE_PARENT) works here and makes a process whose parent is the agent: the
    probe's pid when it does (it exited at once; the agent reaps it), else 0."""
    r, w = os.pipe()
    pid = _fork_as_sibling()
    if pid == 0:
        os.write(w, b"1" if os.getppid() == 1 else b"0")
        os._exit(0)
    os.close(w)
    works = pid > 0 and os.read(r, 1) == b"1"
    os.close(r)
    if pid > 0 and not works:
        try:
            os.waitpid(pid, 0)   # it is the zygote's own child after all
        except ChildProcessError:
            pass
    return pid if works else 0


def _zygote_ask(message: bytes, fds: list[int] | None = None) -> bytes | None:
    if _zygote_sock is None:
        return None
    try:
        if fds:
            socket.send_fds(_zygote_sock, [message], fds)
        else:
            _zygote_sock.send(message)
        return _zygote_sock.recv(4096) or None
    except OSError:
        return None


def _zygote_fork(stdin_fd: int, out_w: int, err_w: int) -> int:
    """The new job's pid; 0 when the zygote could not fork it, -1 when the zygote is gone."""
    answer = _zygote_ask(b"run", [stdin_fd, out_w, err_w])
    return -1 if answer is None else int(answer)


def _our_state_changeable() -> bool:
    """Whether a job could have changed the agent's or the zygote's limits, priority or affinity:
    where it runs as their own user (an unprivileged engine), or under gVisor (whose kernel lets
    any user renice and pin another's process; it is also the one that reports no sender pids).
    Elsewhere the kernel refuses it to a job of another user with no capabilities, and the checks
    are saved: twenty system calls of the agent's and a round trip to the zygote, every job."""
    return _job_uid is None or not _senders_verified


def _zygote_state() -> dict | None:
    answer = _zygote_ask(b"state")
    return json.loads(answer) if answer else None


def _child(script, go_r) -> None:
    """In the forked job: become a fresh script process and run the program (read from its
    script file, as `python3 main.py` does)."""
    # Start only once the zygote has reaped its middle process (so the agent has adopted the
    # job): until then the job would see it, even as a zombie, and an extra process is not what
    # a fresh script sees.
    if go_r is not None:
        try:
            os.read(go_r, 1)
        except OSError:
            pass
    try:
        os.setsid()
        os.closerange(3, 65536)   # the agent's socket and pipes included (0-2 are the job's already)
        _become_job_user()
        # The agent and the zygote stay non-dumpable; the job is an ordinary process, as under
        # `python3 main.py`: its own /proc/self files (mem, environ, oom_score_adj) are its own.
        _LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        try:   # os.open, not open(): a text file object costs a tenth of a millisecond here
            oom = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(oom, b"1000")  # the kernel's OOM killer takes the job first
            finally:
                os.close(oom)
        except OSError:
            pass
        os.chdir(WORK_DIR)
        atexit._clear()
        gc.unfreeze()
        # `random` is reseeded by its own at-fork handler (PyOS_AfterFork_Child runs it). The std
        # streams, __main__, sys.argv and sys.path are the zygote's (_set_job_defaults).
        code = _read_file(script).decode("utf-8")
    except BaseException:
        os._exit(121)
    os._exit(_run_as_main(code, script))


class _ArgCmp(ctypes.Structure):
    """libseccomp's struct scmp_arg_cmp."""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
SCMP_FLTATR_ACT_BADARCH, SCMP_FLTATR_CTL_NNP, SCMP_FLTATR_CTL_SSB = 2, 3, 7
# Refused outright: io_uring runs system calls of its own (IORING_OP_SOCKET makes an AF_VSOCK
# socket without a socket() call the filter could see), and Docker 20.10's default profile allows
# it. ENOSYS, as on a kernel built without io_uring, so libraries fall back to plain calls.
REFUSED_SYSCALLS = ("io_uring_setup", "io_uring_enter", "io_uring_register")


def _scmp_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _seccomp_filter():
    """The job's seccomp filter, on top of the engine's, built with libseccomp (the image has
    libseccomp2 on either base): no AF_VSOCK sockets (on a VM they reach the host), no io_uring,
    and no system call of another ABI: a foreign architecture, or x32 numbers (nr | 0x40000000
    under the x86-64 audit arch), which libseccomp refuses as a bad architecture for an x86-64
    filter. Socket families are compared on their low 32 bits, as the kernel reads them (a family
    with high bits set cannot slip past). Built once, at start; the zygote loads it.
    """
    try:   # the soname both image bases ship; find_library runs ldconfig (20 ms of every start)
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        lib = ctypes.CDLL(find_library("seccomp") or "libseccomp.so", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError("libseccomp could not make a filter")

    def check(rc: int, what: str) -> None:
        if rc < 0:
            raise OSError(-rc, f"libseccomp: {what}: {os.strerror(-rc)}")

    check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, _scmp_errno(ENOSYS)), "bad-arch action")
    check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1), "no_new_privs")
    for call in ("socket", "socketpair"):
        family = (_ArgCmp * 1)(_ArgCmp(0, SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, AF_VSOCK))
        check(lib.seccomp_rule_add_array(ctx, _scmp_errno(EAFNOSUPPORT), lib.seccomp_syscall_resolve_name(
            call.encode()), 1, family), call)
    for call in REFUSED_SYSCALLS:
        nr = lib.seccomp_syscall_resolve_name(call.encode())
        if nr >= 0:   # names this libseccomp does not know are not on this machine's table either
            check(lib.seccomp_rule_add_array(ctx, _scmp_errno(ENOSYS), nr, 0, None), call)
    return lib, ctx


_SECCOMP = None


def _load_seccomp_filter() -> None:
    """Load the filter in this process (the zygote; every job inherits it), with no_new_privs.
    Loaded with the speculative-store-bypass mitigation left as it is (SPEC_ALLOW): a filter
    loaded without it turned that mitigation on for the process, which made every job about 40%
    slower. Where the kernel refuses that flag (older kernels, gVisor), loaded without it."""
    if _SECCOMP is None:
        raise OSError(f"no seccomp filter for this machine ({os.uname().machine})")
    lib, ctx = _SECCOMP
    lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1)
    if lib.seccomp_load(ctx) < 0:
        lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 0)
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise OSError(-rc, "could not install the seccomp filter")


def _read_file(path: str) -> bytes:
    """A file's bytes through plain system calls (open() builds a file object: 10 us each time)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _job_streams() -> tuple:
    """Once, in the zygote: the text streams every job gets as its stdin, stdout and stderr
    (a fork copies them fresh and unused into each job, which saves each job about 0.2 ms).

    A stream records at creation whether its descriptor can seek (and where it is), so each is
    made on a descriptor of the kind the job's will be: stdin an unlinked regular file at its
    start, stdout and stderr pipes. The zygote's own 0, 1 and 2 (the agent's channel) are put
    back at once; the zygote never writes to them."""
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    path = f"/tmp/.zygote-stdin-{os.getpid()}"
    stdin = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    r, w = os.pipe()
    try:
        for fd, target in ((stdin, 0), (w, 1), (w, 2)):
            os.dup2(fd, target)
        return (_text_stream(0, "r", line_buffering=False), _text_stream(1, "w", line_buffering=False),
                _text_stream(2, "w", line_buffering=True, errors="backslashreplace"))
    finally:
        for fd, target in zip(saved, (0, 1, 2), strict=True):
            os.dup2(fd, target)
        for fd in (*saved, stdin, r, w):
            os.close(fd)


def _text_stream(fd: int, mode: str, line_buffering: bool, errors: str = "strict"):
    import io
    raw = io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, line_buffering=line_buffering)


def _run_as_main(code: str, script: str) -> int:
    """Run `code` the way `python3 main.py` would and return the exit code.

    One dict serves as the module's globals, so module-level imports and helper functions
    are visible inside functions (the original pipeline's exec() inside a function used
    separate globals and locals and broke exactly that). The outcome message tells the agent
    whether the program reached its end or left early; only this process's counts.
    """
    module = sys.modules["__main__"]   # made in the zygote, fresh in each job's copy
    if code.startswith("\ufeff"):
        code = code[1:]   # a byte-order mark, which Python drops when it reads a script file
    main_pid = os.getpid()
    tests_run = _UNITTEST_RUNS
    outcome, exit_code, uncaught = "end", 0, None
    try:
        compiled = compile(code, script, "exec", dont_inherit=True)
        exec(compiled, module.__dict__)
    except SystemExit as exc:
        exit_code = _exit_code_of(exc)
        outcome = f"exit:{exit_code}"
        if exit_code == 0 and _raised_by_unittest_main(exc):
            # Python 3.11's unittest.main() exits 0 when it found no test at all: not an end.
            outcome = "unittest-exit:0" if tests_run and tests_run[-1] > 0 else "unittest-no-tests"
    except BaseException as exc:
        exit_code = 1
        outcome = f"exception:{type(exc).__name__}"
        uncaught = exc
    if uncaught is not None:   # printed once no exception is being handled, as CPython prints it
        _print_traceback(uncaught)
    exit_code = _shutdown(exit_code)
    if os.getpid() == main_pid:   # a forked child that ran on to here is not the job
        try:   # the C socket type: socket.socket's Python layer cost the job 0.1 ms of page copies
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
            try:
                # Never waits: the agent reads the socket only once the job has exited, and a
                # queue that the program's own children filled leaves this outcome out.
                sock.sendto(outcome.encode(), _socket.MSG_DONTWAIT, OUTCOME_ADDRESS)
            finally:
                sock.close()
        except OSError:
            pass
    return exit_code


def _exit_code_of(exc: SystemExit) -> int:
    code = exc.code
    if code is None or code is False:
        return 0
    if code is True:
        return 1
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _count_unittest_runs() -> list[int]:
    """A list that gets, for each `unittest.main()` the program runs, how many tests it ran. The
    agent preloads unittest, so the program's `import unittest` finds this very class."""
    ran: list[int] = []
    program = sys.modules.get("unittest.main")
    if program is None:
        return ran
    original = program.TestProgram.runTests

    def runTests(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        finally:
            ran.append(int(getattr(getattr(self, "result", None), "testsRun", 0) or 0))

    runTests.__wrapped__ = original   # pyright: ignore[reportFunctionMemberAccess]
    program.TestProgram.runTests = runTests
    return ran


def _raised_by_unittest_main(exc: BaseException) -> bool:
    """unittest.main() exits only after its tests ran, so its exit 0 counts as the end."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("unittest", "main.py")):
            return True
        tb = tb.tb_next
    return False


def _print_traceback(exc: BaseException) -> None:
    """Report an uncaught exception as `python3 main.py` does: through `sys.excepthook`, which is
    CPython's own printer unless the program set its own, without this runner's frame. (The
    `traceback` module printed the same text in Python: 3.3 ms a failing program, against 0.4.)"""
    try:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        exc.__traceback__ = tb   # the printer reads the exception's own traceback
        try:
            sys.excepthook(type(exc), exc, tb)
        except BaseException as hook_error:   # what CPython prints when the hook itself fails
            hook_tb = hook_error.__traceback__.tb_next if hook_error.__traceback__ else None
            hook_error.__traceback__ = hook_tb
            print("Error in sys.excepthook:", file=sys.stderr)
            sys.__excepthook__(type(hook_error), hook_error, hook_tb)
            print("\nOriginal exception was:", file=sys.stderr)
            sys.__excepthook__(type(exc), exc, tb)
    except BaseException:
        pass


def _shutdown(exit_code: int) -> int:
    """What the interpreter does after a script: join threads, run atexit, flush."""
    # As Py_FinalizeEx does: only a program that imported threading has threads to join. The
    # agent itself never imports it, as `python3 main.py` starts without it, and because with it
    # loaded every fork runs its at-fork handler: 0.2 ms more of each job's CPU.
    threading = sys.modules.get("threading")
    try:
        if threading is not None:
            threading._shutdown()  # pyright: ignore[reportAttributeAccessIssue]
    except BaseException:
        pass
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is None or getattr(stream, "closed", False):
                continue   # CPython skips a closed stream at exit too
            stream.flush()
        except BaseException:
            exit_code = exit_code or 120  # as CPython does when flushing stdout fails
    return exit_code


def _check_sender_pids() -> None:
    """A forked child sends one datagram: does the kernel stamp it with that child's pid?"""
    global _senders_verified
    pid = os.fork()
    if pid == 0:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"probe", OUTCOME_ADDRESS)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    seen: list[int | None] = []
    _drain_outcomes(None, senders=seen)
    _senders_verified = seen == [pid]


def _drain_outcomes(job_pid: int | None, into: list[str] | None = None, senders: list | None = None) -> None:
    """Read every pending outcome message; keep the first one the job's own process sent."""
    space = socket.CMSG_SPACE(struct.calcsize("3i"))
    while True:
        try:
            data, ancdata, _, _ = _outcome_sock.recvmsg(256, space)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        sender = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("3i", payload[:struct.calcsize("3i")])[0]
        if senders is not None:
            senders.append(sender)
        from_job = sender == job_pid or not _senders_verified
        if into is not None and job_pid is not None and from_job and not into:
            into.append(data.decode("utf-8", "replace"))


def _own_state() -> dict:
    """What a job running as the same user could change about the agent."""
    state: dict = {}
    for name in _RLIMITS:
        try:
            state[name] = resource.getrlimit(getattr(resource, name))
        except (ValueError, OSError):
            pass
    for key, get in (("priority", lambda: os.getpriority(os.PRIO_PROCESS, 0)),
                     ("scheduler", lambda: os.sched_getscheduler(0)),
                     ("affinity", lambda: sorted(os.sched_getaffinity(0)))):
        try:
            state[key] = get()
        except (AttributeError, OSError):
            pass
    return state


_CGROUP_USAGE = ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")
_CGROUP_STAT = ("/sys/fs/cgroup/memory.stat", "/sys/fs/cgroup/memory/memory.stat")
# The memory a program holds, as the cgroup counts it: anonymous pages and tmpfs files (v2's
# names, then v1's hierarchical ones; v1's rss leaves shmem out as v2's anon does).
_HELD_FIELDS = {_CGROUP_STAT[0]: (b"\nanon ", b"\nshmem "), _CGROUP_STAT[1]: (b"\ntotal_rss ", b"\ntotal_shmem ")}
_CGROUP_PIDS = ("/sys/fs/cgroup/pids.current", "/sys/fs/cgroup/pids/pids.current")


_CGROUP_EVENTS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


@functools.cache
def _first_readable(paths: tuple[str, ...]) -> str | None:
    """Which of the v2 and v1 cgroup files this container has (asked once per set)."""
    for path in paths:
        try:
            _read_file(path)
            return path
        except OSError:
            continue
    return None


def _cgroup_memory_kib() -> int | None:
    """The memory this container's processes hold, as its cgroup charges it: every physical
    page once, however many processes share it. None where unreadable.

    Anonymous memory and tmpfs only, not the whole charge: the charge also holds page cache,
    which the kernel drops when a job's allocations press on the container's cap. Measured
    against the charge at the job's start, 70 MiB held by a job showed as 28 MiB after an earlier
    job had read 60 MiB of files (the cache it dropped hid the rest)."""
    path = _first_readable(_CGROUP_STAT)
    if path is not None:
        try:
            text, total = b"\n" + _read_file(path), 0
            for key in _HELD_FIELDS[path]:   # found, not split: the file has 40-odd lines
                start = text.find(key)
                if start < 0:
                    break
                start += len(key)
                total += int(text[start:text.find(b"\n", start)])
            else:
                return total // 1024
        except (OSError, ValueError):
            pass
    # A kernel whose stat file lacks these fields (gVisor's has its own): the whole charge.
    path = _first_readable(_CGROUP_USAGE)
    try:
        return int(_read_file(path)) // 1024 if path else None
    except (OSError, ValueError):
        return None


def _pidfd_open(pid: int):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _kill_leftovers() -> bool:
    """Kill every process but this one and the zygote, and reap them; True when none is left.

    The zygote sends the signal (`kill(-1)` spares init and the sender); if it is gone, the agent
    sends it itself and the container is reported unclean (no zygote, no clean next job).
    """
    deadline = time.monotonic() + 2.0
    while True:
        _reap()
        if _only_process():
            return True   # the usual case at once: nothing left, no round trip to the zygote
        if time.monotonic() >= deadline:
            return False
        if _zygote_ask(b"kill") is None:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.001)


def _reap() -> None:
    """Collect every child that has exited (the job's leftovers are the agent's children too)."""
    global _zygote_sock
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == _zygote_pid and _zygote_sock is not None:
            _zygote_sock.close()
            _zygote_sock = None


def _only_process() -> bool:
    """Whether the agent and its zygote are the only processes (all are reaped by now)."""
    # The container's pids cgroup counts its tasks, each until it is reaped (only the agent
    # reaps, so a zygote that died since is still counted): the count alone says so in the usual
    # case, one small read where listing /proc took 40 us. Not trusted under gVisor (the kernel
    # that reports no sender pids), whose cgroup files are its own.
    expected = 1 + (_zygote_sock is not None)
    path = _first_readable(_CGROUP_PIDS) if _senders_verified else None
    try:
        if path is not None and int(_read_file(path)) == expected:
            return True
    except (OSError, ValueError):
        pass
    allowed = {str(os.getpid())} | ({str(_zygote_pid)} if _zygote_sock is not None else set())
    return all(p in allowed for p in os.listdir("/proc") if p.isdigit())


def _wipe_writable_dirs() -> bool:
    """Empty every writable place; True when all of it could be removed in WIPE_BUDGET_S
    (past that, the container is replaced rather than cleaned)."""
    ok = True
    deadline = time.monotonic() + WIPE_BUDGET_S
    for top in WIPED_DIRS:
        try:
            entries = os.scandir(top)   # an iterator: millions of names are never held at once
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    _remove(entry, deadline)
                except TimeoutError:   # before OSError, of which it is a subclass
                    return False
                except (OSError, RecursionError):
                    ok = False
    return ok


def _remove(entry: os.DirEntry, deadline: float) -> None:
    """Remove a file or tree, first giving back any permission a job took from itself. The
    directory listing says what each entry is (no stat of its own)."""
    if time.monotonic() > deadline:
        raise TimeoutError(entry.path)
    if entry.is_dir(follow_symlinks=False):
        # The job's own tree: with FOWNER the agent may change its mode, not read past it.
        os.chmod(entry.path, stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
        with os.scandir(entry.path) as inner:
            for child in inner:
                _remove(child, deadline)
        os.rmdir(entry.path)
    else:
        os.unlink(entry.path)


_IPC_INFO = ctypes.create_string_buffer(256)   # the agent's own: what the *_INFO commands fill


def _sysv_ipc_left() -> bool:
    """SysV shared memory, semaphores and queues outlive processes: a job may not leave any.

    Asked of the kernel with the *_INFO commands (counts of what exists in this IPC namespace),
    which gVisor implements too, unlike /proc/sysvipc.
    """
    try:
        libc, buf = _LIBC, _IPC_INFO
        if libc.shmctl(0, SHM_INFO, buf) >= 0 and ctypes.c_int.from_buffer(buf).value:
            return True  # struct shm_info: used_ids
        if libc.semctl(0, 0, SEM_INFO, buf) >= 0 and (ctypes.c_int * 10).from_buffer(buf)[7]:
            return True  # struct seminfo: semusz, the sets in use
        if libc.msgctl(0, MSG_INFO, buf) >= 0 and ctypes.c_int.from_buffer(buf).value:
            return True  # struct msginfo: msgpool, the queues in use
    except (OSError, AttributeError):
        return True  # cannot tell: assume the worst, the container is replaced
    return False


def _oom_kill_count() -> int:
    """Kernel OOM kills in this container's memory cgroup (v2 or v1); 0 where unreadable."""
    path = _first_readable(_CGROUP_EVENTS)
    try:
        for line in _read_file(path).decode().splitlines() if path else ():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    main()
