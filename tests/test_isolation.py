"""Hostile programs: each must get a truthful status and leave the executor unaffected.

A server with ONE sandbox runs all of them, so "the next job" really is the next job in the
same container whenever the container is kept (and in its replacement when it is not).
"""

from __future__ import annotations

import os
import textwrap

import pytest

from executor import Limits, Program, Status
from executor.agent import AGENT_UID
from executor.client import Client
from executor.sandbox import JOB_UID_BASE
from tests.conftest import start_server

HEALTHY = "import os\nprint(repr((sorted(p for p in os.listdir('/proc') if p.isdigit()), os.listdir('/tmp'))))"
ISOLATED_SECRET = "SELFALIGN_TEST_HOST_SECRET"


def _runsc_available(docker_client) -> bool:
    return "runsc" in docker_client.info().get("Runtimes", {})


@pytest.fixture(scope="module", params=["runc", "runsc"])
def solo(request, docker_client, sandbox_image):
    """One sandbox, under the default runtime and again under gVisor where it is registered."""
    runtime = request.param
    if runtime == "runsc" and not _runsc_available(docker_client):
        pytest.skip("gVisor (runsc) is not installed and registered with Docker")
    os.environ[ISOLATED_SECRET] = "must-not-leak"
    server = start_server(docker_client, pool_size=1, instance=f"pytest-isolation-{runtime}",
                          runtime=None if runtime == "runc" else runtime)
    with Client(f"127.0.0.1:{server.port}") as client:
        client.port = server.port
        client.runtime = runtime
        yield client
    server.stop()
    os.environ.pop(ISOLATED_SECRET, None)


def run(client, code: str, timeout_s: float | None = None, memory_mb: int | None = None,
        max_output_bytes: int | None = None, stdin: bytes = b""):
    return client.execute(Program(textwrap.dedent(code), stdin=stdin,
                                  limits=Limits(timeout_s, memory_mb, max_output_bytes)))


def assert_next_job_is_clean(client) -> None:
    r = run(client, HEALTHY)
    assert r.status is Status.PASSED, r
    pids, tmp = eval(r.stdout.decode())  # noqa: S307 - our own program's output
    # Only the agent (PID 1), its zygote and this job's process are alive; /tmp holds only fresh dirs.
    assert len(pids) == 3 and "1" in pids, pids
    assert sorted(tmp) == ["home", "work"], tmp


def container_of(client) -> str:
    """Which container ran the job (every sandbox gets its own hostname)."""
    r = run(client, "import os\nprint(os.uname().nodename)")
    assert r.status is Status.PASSED and r.stdout.startswith(b"sandbox-"), r
    return r.stdout.decode()


GVISOR_LIMITS = {
    "procfd": "gVisor does not restrict /proc/1/fd by PR_SET_DUMPABLE; a forged answer written there "
              "lacks the job's nonce and is rejected (the container is replaced)",
}


def xfail_under_gvisor(client, key: str) -> None:
    if client.runtime == "runsc":
        pytest.xfail(GVISOR_LIMITS[key])


# -- processes ----------------------------------------------------------------------------

def test_fork_bomb_is_stopped_on_time_and_nothing_survives(solo):
    r = run(solo, """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, timeout_s=3)
    # Under gVisor the bomb's 128 interpreters can fill the sandbox's memory before the time is up.
    assert r.status is Status.TIMEOUT or (solo.runtime == "runsc" and r.status is Status.MEMORY_LIMIT)
    assert_next_job_is_clean(solo)


def test_a_timeout_or_a_memory_kill_keeps_a_sandbox_the_agent_cleaned(solo):
    """A job stopped at its time limit, with a child still running, or killed for memory leaves a
    sandbox the agent kills, reaps, wipes and checks as after any other end: it is kept (it used
    to be replaced, about 240 ms of CPU each time) and the next job finds nothing of it."""
    before = container_of(solo)
    r = run(solo, """
        import os, time
        open("/tmp/left-behind", "w").write("x")
        if os.fork() == 0:
            time.sleep(1000)
        while True:
            pass
    """, timeout_s=0.3)
    assert r.status is Status.TIMEOUT, r
    assert container_of(solo) == before
    assert_next_job_is_clean(solo)
    if solo.runtime == "runsc":
        return   # gVisor cannot change a running container's memory limit: such a job gets its own
    for balloon in ("block = b'x' * (400 << 20)",   # past the container's cap: the kernel kills the job
                    "import os, time\npid = os.fork()\nblock = b'x' * (35 << 20)\ntime.sleep(0.3)\n"
                    "os._exit(0) if pid == 0 else os.waitpid(pid, 0)"):   # the agent's own check
        r = run(solo, balloon, memory_mb=64)
        assert r.status is Status.MEMORY_LIMIT, r
        assert container_of(solo) == before
        assert_next_job_is_clean(solo)


def test_children_in_new_sessions_and_double_forks_are_gone(solo):
    before = container_of(solo)
    r = run(solo, """
        import os, subprocess
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import time
                time.sleep(1000)
            os._exit(0)
        os.wait()
    """)
    assert r.status is Status.PASSED, r
    assert container_of(solo) == before  # the same container: the agent cleaned it
    assert_next_job_is_clean(solo)


@pytest.mark.parametrize("code", [
    # refused: the agent is another user (and, under runc, an init with no handler for them)
    "import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept PermissionError:\n    pass\nprint('still here')",
    # ESRCH when there is nothing else to kill
    "import os\ntry:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass\nprint('still here')",
    "import os, signal\ntry:\n    os.kill(1, signal.SIGSTOP)\nexcept PermissionError:\n    pass\nprint('still here')",
])
def test_killing_the_parent_does_not_take_the_service_down(solo, code):
    r = run(solo, code)
    assert r.status is Status.PASSED and r.stdout == b"still here\n"
    assert_next_job_is_clean(solo)


def test_ptrace_and_fds_of_the_agent_are_out_of_reach(solo):
    xfail_under_gvisor(solo, "procfd")
    r = run(solo, """
        import os
        for path in ("/proc/1/fd/0", "/proc/1/fd/1", "/proc/1/mem"):
            try:
                open(path, "rb")
                print("opened", path)
            except OSError as e:
                print("denied", path)
    """)
    assert r.status is Status.PASSED
    assert b"opened" not in r.stdout


# -- time ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, code", [
    ("busy loop", "while True:\n    pass"),
    ("ignores SIGALRM and SIGTERM", """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, lambda *a: None)
        signal.alarm(1)
        while True:
            pass
    """),
    ("endless sleep", "import time\ntime.sleep(10**6)"),
    ("spinning threads", """
        import threading
        def spin():
            while True:
                pass
        for _ in range(4):
            threading.Thread(target=spin).start()
    """),
    ("catastrophic regex", "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')"),
])
def test_runaway_programs_time_out_at_the_wall_limit(solo, name, code):
    r = run(solo, code, timeout_s=1.5)
    assert r.status is Status.TIMEOUT, name
    assert r.wall_time_s >= 1.5
    assert r.cpu_time_s >= 0 and "wall-clock limit of 1.5 s" in r.reason
    if name != "endless sleep":
        assert r.cpu_time_s > 0.5
    assert_next_job_is_clean(solo)


# -- memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [
    "x = bytearray(600 << 20)\nx[::4096] = b'1' * len(x[::4096])",
    "x = []\nwhile True:\n    x.append('y' * (1 << 20))",
    "import numpy as np\na = np.ones((1 << 30,), dtype=np.uint8)",
])
def test_memory_balloons_hit_the_memory_limit(solo, code):
    r = run(solo, code, memory_mb=256)
    assert r.status is Status.MEMORY_LIMIT, r
    assert_next_job_is_clean(solo)


SPLIT_MEMORY = """
import os, time
pid = os.fork() if {fork} else -1    # before allocating: each process holds only its own block
block = b"x" * ({mb} << 20)          # touched: it counts
time.sleep(0.3)
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
print("done")
"""


# Reads 60 MiB of the image's files, each dropped from the page cache first, so that the pages
# come back charged to this container's cgroup.
FILL_PAGE_CACHE = """
import os
n = 0
for root, dirs, files in os.walk("/usr"):
    for name in files:
        try:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while chunk := os.read(fd, 1 << 20):
                n += len(chunk)
        except OSError:
            pass
        finally:
            os.close(fd)
    if n > 60 << 20:
        break
print(n >> 20)
"""


def test_memory_split_over_processes_counts_together(solo):
    """70 MiB as 35 + 35 in two processes under a 64 MiB limit is over it (it passed while only
    the largest single process was measured, and stays under the container's own cap of the
    limit + 64 MiB, so the agent's check is what catches it); 40 MiB in one process, or 2 x 15,
    is within it. Also after an earlier job filled the container's page cache: the kernel drops
    that cache as the job allocates, which hid most of the job's memory while the check measured
    the container's whole charge (seen once in CI, and every time after this fill)."""
    for fill in (False, True):
        if fill:
            r = run(solo, FILL_PAGE_CACHE)
            assert r.status is Status.PASSED and int(r.stdout) > 60, r
        r = run(solo, SPLIT_MEMORY.format(mb=35, fork=True), memory_mb=64)
        assert r.status is Status.MEMORY_LIMIT, (fill, r)
        if solo.runtime == "runc":
            # gVisor's own kernel charges the sandbox differently: there the container's cap (the
            # limit + 64 MiB) stops the job, which is also MEMORY_LIMIT.
            assert "of its processes together" in r.reason, (fill, r)
    assert_next_job_is_clean(solo)
    for mb, fork in ((40, False), (15, True)):
        r = run(solo, SPLIT_MEMORY.format(mb=mb, fork=fork), memory_mb=64)
        assert r.status is Status.PASSED and r.stdout == b"done\n", (mb, fork, r)


def test_job_uids_are_unique_across_servers_that_pick_the_same_block(docker_client, sandbox_image,
                                                                       monkeypatch):
    """16 uid allocators, as 16 servers on one engine would have, all forced onto the same block
    (random blocks collide with probability ~38% for 16 servers): every sandbox still gets a job
    user of its own, because its container's name claims the uid on the engine."""
    from executor import sandbox as sandbox_module

    boxes = []
    try:
        for _ in range(16):
            monkeypatch.setattr(sandbox_module, "JOB_UIDS", sandbox_module.JobUids(block=255))
            box = sandbox_module.Sandbox(docker_client, sandbox_module.SandboxConfig(
                image=sandbox_image, labels={"org.selfalign.instance": "pytest-uids"}))
            box.start()
            boxes.append(box)
        uids = [box.job_uid for box in boxes]
        assert len(set(uids)) == 16, uids
        names = {docker_client.containers.get(box.container.id).name for box in boxes}
        assert names == {sandbox_module.container_name(uid) for uid in uids}
    finally:
        for box in boxes:
            box.remove()


# -- output -------------------------------------------------------------------------------

@pytest.mark.parametrize("code, stream", [
    ("while True:\n    print('flood' * 100)", "stdout"),
    ("import sys\nsys.stdout.write('x' * (50 << 20))", "stdout"),
    ("import sys\nsys.stderr.write('e' * (5 << 20))\nprint('done')", "stderr"),
])
def test_output_floods_hit_the_output_limit(solo, code, stream):
    r = run(solo, code, max_output_bytes=100_000, timeout_s=5)
    assert r.status is Status.OUTPUT_LIMIT, r.reason
    assert getattr(r, f"{stream}_truncated")
    assert len(getattr(r, stream)) == 100_000
    assert_next_job_is_clean(solo)


# -- network ------------------------------------------------------------------------------

def test_only_loopback_exists_and_the_executor_port_is_unreachable(solo):
    r = run(solo, f"""
        import os, socket
        print(sorted(os.listdir('/sys/class/net')))
        print(len(open('/proc/net/route').read().splitlines()) - 1)
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", {solo.port}))
            print("connected")
        except OSError as e:
            print("refused", e.errno)
    """)
    assert r.status is Status.PASSED
    interfaces, routes, connect = r.stdout.decode().splitlines()
    assert interfaces == "['lo']"
    assert routes == "0"  # no route anywhere: nothing leaves the container
    assert connect.startswith("refused")


# -- filesystem ---------------------------------------------------------------------------

def test_system_paths_are_read_only(solo):
    r = run(solo, """
        import os, sysconfig
        targets = ["/etc/passwd", "/usr/bin/evil", os.path.join(sysconfig.get_paths()["stdlib"], "evil.py"),
                   "/opt/selfalign/agent.py", "/root/x", "/var/tmp/x"]
        for path in targets:
            try:
                with open(path, "a") as f:
                    f.write("x")
                print("WROTE", path)
            except OSError as e:
                print("denied", path, e.errno)
    """)
    assert r.status is Status.PASSED
    assert b"WROTE" not in r.stdout
    assert r.stdout.count(b"denied") == 6


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm"])
def test_filling_the_tmpfs_fails_with_enospc(solo, where):
    r = run(solo, f"""
        import errno, os
        total = 0
        try:
            for i in range(1000):
                with open("{where}/fill-%d" % i, "wb") as f:
                    f.write(b"0" * (8 << 20))
                total += 8 << 20
        except OSError as e:
            print(errno.errorcode[e.errno], total)
    """, timeout_s=30)
    assert r.status is Status.PASSED, r
    code, total = r.stdout.split()
    assert code == b"ENOSPC"
    assert int(total) <= 64 << 20
    assert_next_job_is_clean(solo)


def test_files_and_environment_do_not_reach_the_next_job(solo):
    before = container_of(solo)
    r = run(solo, """
        import os
        for d in ("/tmp", "/dev/shm", os.path.expanduser("~"), os.getcwd()):
            with open(os.path.join(d, "left-behind"), "w") as f:
                f.write("secret")
        os.makedirs("/tmp/locked/deeper")
        os.chmod("/tmp/locked", 0)
        os.environ["LEAK"] = "1"
        os.putenv("LEAK2", "1")
    """)
    assert r.status is Status.PASSED, r
    r = run(solo, """
        import os, glob
        found = [p for d in ("/tmp", "/dev/shm", os.path.expanduser("~"), os.getcwd())
                 for p in glob.glob(os.path.join(d, "**"), recursive=True)]
        print(sorted(found))
        print("LEAK" in os.environ, "LEAK2" in os.environ)
    """)
    assert container_of(solo) == before
    found, env = r.stdout.decode().splitlines()
    assert "left-behind" not in found and "locked" not in found
    assert env == "False False"


def test_sysv_shared_memory_does_not_survive(solo):
    before = container_of(solo)
    r = run(solo, """
        import ctypes
        libc = ctypes.CDLL(None)
        print(libc.shmget(0x1234, 4096, 0o1000 | 0o600) >= 0)
    """)
    assert r.status is Status.PASSED and r.stdout == b"True\n"
    assert container_of(solo) != before  # a SysV segment outlives processes: container replaced
    r = run(solo, "import ctypes\nbuf = ctypes.create_string_buffer(256)\n"
                  "ctypes.CDLL(None).shmctl(0, 14, buf)\nprint(ctypes.c_int.from_buffer(buf).value)")  # SHM_INFO
    assert r.stdout == b"0\n"


# -- odd programs -------------------------------------------------------------------------

def test_c_level_crash_is_failed(solo):
    r = run(solo, """
        import sys
        sys.setrecursionlimit(10 ** 7)
        def f(n):
            return list(map(f, [n + 1]))  # through C: each level takes C stack
        f(0)
    """, timeout_s=20)
    assert r.status is Status.FAILED
    assert r.signal == 11 and r.exit_code is None
    assert_next_job_is_clean(solo)


def test_stdin_is_closed_binary_stdout_numpy_non_ascii(solo):
    r = run(solo, """
        import sys, numpy as np
        try:
            input()
        except EOFError:
            print("eof")
        sys.stdout.flush()
        sys.stdout.buffer.write(bytes(range(256)))
        print("\\nπ≈", round(float(np.pi), 2))
    """)
    assert r.status is Status.PASSED, r.stderr
    assert r.stdout.startswith(b"eof\n" + bytes(range(256)))
    assert r.stdout.endswith("π≈ 3.14\n".encode())


# -- privileges ---------------------------------------------------------------------------

def test_no_root_no_capabilities_no_docker_socket_no_host_environment(solo):
    r = run(solo, """
        import os
        status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
        print(os.getuid(), os.geteuid(), os.getgid())
        import ctypes
        no_new_privs = ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS
        caps = [status[k].strip() for k in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb") if k in status]
        print(" ".join(caps), no_new_privs)
        print(open("/proc/1/status").read().split("Uid:")[1].split()[0])
        print(os.path.exists("/var/run/docker.sock"), os.path.exists("/run/docker.sock"))
        print(sorted(os.environ))
        print(open("/proc/1/environ", "rb").read() if os.access("/proc/1/environ", os.R_OK) else b"")
    """)
    assert r.status is Status.PASSED, r.stderr
    ids, caps, agent_uid, sockets, env, init_env = r.stdout.decode().splitlines()
    uid, euid, gid = map(int, ids.split())
    # the job's own user (one per sandbox), neither root nor the agent's
    assert uid == euid == gid >= JOB_UID_BASE, ids
    assert agent_uid == str(AGENT_UID)
    *sets, no_new_privs = caps.split()
    assert set(sets) == {"0000000000000000"} and len(sets) >= 4 and no_new_privs == "1", caps
    assert sockets == "False False"
    assert ISOLATED_SECRET not in env and "DOCKER_HOST" not in env
    assert ISOLATED_SECRET not in init_env


def test_the_job_cannot_touch_the_agent_or_the_zygote(solo):
    """The agent and the zygote run as another user: a job can neither signal them nor change
    their limits, priority or CPUs (each would reach every later job in the sandbox)."""
    before = container_of(solo)
    r = run(solo, """
        import os, resource
        others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        attacks = {
            "kill": lambda pid: os.kill(pid, 0),
            "prlimit": lambda pid: resource.prlimit(pid, resource.RLIMIT_NOFILE, (10, 10)),
            "setpriority": lambda pid: os.setpriority(os.PRIO_PROCESS, pid, 19),
            "affinity": lambda pid: os.sched_setaffinity(pid, {0}),
            "scheduler": lambda pid: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)),
        }
        for pid in sorted(others):
            for name, attack in attacks.items():
                try:
                    attack(pid)
                    print(name, "allowed")
                except OSError:
                    pass
        print(len(others))
    """)
    assert r.status is Status.PASSED, r
    *allowed, count = r.stdout.decode().splitlines()
    assert count == "2", r.stdout
    if solo.runtime == "runsc":
        # gVisor (Debian's runsc 2022) checks no user for these two; the agent sees its changed
        # state after the job and the sandbox is replaced (what runc makes unnecessary).
        assert set(allowed) <= {"setpriority allowed", "affinity allowed"}, allowed
        if allowed:
            assert container_of(solo) != before
    else:
        assert allowed == [], allowed
    assert_next_job_is_clean(solo)


def test_the_job_is_the_oom_killers_first_choice_and_the_agent_and_zygote_are_not(solo):
    """A job runs with oom_score_adj 1000 (raised before its program starts), so the kernel's OOM
    killer takes it first; the agent and the zygote keep their own, lower one, job after job."""
    code = """
        import os
        me = open("/proc/self/oom_score_adj").read().strip()
        others = [open(f"/proc/{p}/oom_score_adj").read().strip()
                  for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        print(me, len(others), "1000" in others)
    """
    for _ in range(3):
        r = run(solo, code)
        assert r.status is Status.PASSED and r.stdout == b"1000 2 False\n", r


def test_sudo_and_setuid_do_not_help(solo):
    r = run(solo, """
        import os
        try:
            os.setuid(0)
            print("root")
        except PermissionError:
            print("denied")
    """)
    assert r.stdout == b"denied\n"


def test_a_forged_answer_is_rejected(solo):
    """A program that writes a fake result into the agent's output must not get PASSED."""
    r = run(solo, """
        import json, os
        fake = json.dumps({"id": "", "nonce": "guess", "status": "PASSED", "clean": True}) + "\\n"
        try:
            with open("/proc/1/fd/1", "w") as out:
                out.write(fake)
        except OSError:
            pass
        raise SystemExit(1)
    """)
    assert r.status is not Status.PASSED
    assert_next_job_is_clean(solo)


def test_vsock_and_foreign_syscalls_are_refused(solo):
    from tests.test_redteam import VSOCK

    r = run(solo, VSOCK)
    assert r.status is Status.PASSED and r.stdout == b"EAFNOSUPPORT\nEAFNOSUPPORT\nunix ok\n", r


def test_signalling_the_agent_with_term_or_int_changes_nothing(solo):
    for sig in ("SIGTERM", "SIGINT"):
        r = run(solo, f"import os, signal\ntry:\n    os.kill(1, signal.{sig})\n"
                      "except PermissionError:\n    print('refused')\nprint('still here')")
        assert r.status is Status.PASSED and r.stdout == b"refused\nstill here\n", (sig, r)
    assert_next_job_is_clean(solo)
