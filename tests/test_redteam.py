"""What a red-team found beyond the isolation suite, one class of attack a test: a job must not
change what a later job gets, verdicts must be true, and the server and client must stay up and
bounded. Every test runs against a real Docker engine and real gRPC."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import textwrap
import threading
import time

import grpc
import pytest

from executor import Limits, Program, Status
from executor.agent import AGENT_UID
from executor.client import Client, ExecutorError, Rejected
from executor.sandbox import LABEL_INSTANCE, LABEL_OWNER, LABEL_ROLE, ROLE_SANDBOX, remove_leftovers
from executor.v1 import executor_pb2 as pb
from executor.v1 import executor_pb2_grpc as pb_grpc
from tests.conftest import start_server

HOSTNAME = "import socket\nprint(socket.gethostname())"


@pytest.fixture(scope="module")
def one(docker_client, sandbox_image):
    """A server with a single pooled sandbox: every job lands in the same container."""
    server = start_server(docker_client, pool_size=1, instance="pytest-redteam")
    with Client(f"127.0.0.1:{server.port}") as client:
        client.server = server
        yield client
    server.stop()


def run(client, code: str, **limits):
    return client.execute(Program(textwrap.dedent(code), limits=Limits(**limits)))


# -- a job must not change what a later job sees or gets -----------------------------------

@pytest.mark.parametrize("poison", [
    "resource.prlimit(1, resource.RLIMIT_NOFILE, (10, 10))",
    "resource.prlimit(1, resource.RLIMIT_NPROC, (1, 1))",
    "resource.prlimit(1, resource.RLIMIT_AS, (50 << 20, 50 << 20))",
    "os.setpriority(os.PRIO_PROCESS, 1, 19)",
    "os.sched_setaffinity(1, {0})",
])
def test_a_job_cannot_change_the_agent(one, poison):
    """The agent is another user: the change is refused, and later jobs run in the same sandbox
    as before. (Where a runtime lets it through, gVisor's setpriority for one, the agent finds
    its changed state after the job and the sandbox is replaced: test_isolation.)"""
    before = run(one, HOSTNAME).stdout
    r = run(one, f"import os, resource\ntry:\n    {poison}\nexcept PermissionError:\n    print('refused')")
    assert r.status is Status.PASSED and r.stdout == b"refused\n", r
    later = [run(one, "import os\nprint(len(os.listdir('/proc')) > 0)") for _ in range(5)]
    assert all(x.status is Status.PASSED and x.stdout == b"True\n" for x in later), later
    assert run(one, HOSTNAME).stdout == before   # nothing changed: the sandbox is kept


@pytest.fixture(scope="module")
def two(docker_client, sandbox_image):
    server = start_server(docker_client, pool_size=2, instance="pytest-redteam-two")
    with Client(f"127.0.0.1:{server.port}") as client:
        yield client
    server.stop()


WHO = "import os, socket, time\ntime.sleep(0.5)\nprint(socket.gethostname(), os.getuid())"


def test_each_sandbox_runs_its_jobs_as_a_user_of_its_own(two):
    results = two.execute_many([Program(WHO, id=str(i)) for i in range(6)])
    users = {}
    for r in results:
        assert r.status is Status.PASSED, r
        host, uid = r.stdout.decode().split()
        users.setdefault(host, set()).add(int(uid))
    assert len(users) == 2, users
    assert all(len(uids) == 1 for uids in users.values()), users
    (a,), (b,) = users.values()
    assert a != b and AGENT_UID not in (a, b) and 0 not in (a, b)


FILL_QUEUES = """
import os, sys, time
n = 0
try:
    while True:
        open(f"/dev/mqueue/q{n}", "w").close()   # each counts against the user's RLIMIT_MSGQUEUE
        n += 1
except OSError as exc:
    print("full after", n, exc.errno)
sys.stdout.flush()
time.sleep(3)
"""
ONE_QUEUE = "import time\ntime.sleep(1)\nopen('/dev/mqueue/mine', 'w').close()\nprint('created')"


def test_queues_one_sandbox_holds_do_not_exhaust_another(two):
    """Per-user kernel limits are per sandbox: while one job holds every message queue its user
    may have, a job in the other sandbox still gets one (with one host user for all sandboxes,
    it got EMFILE)."""
    results = {r.id: r for r in two.execute_many([Program(FILL_QUEUES, id="fill"), Program(ONE_QUEUE, id="one")])}
    full, other = results["fill"], results["one"]
    assert full.status is Status.PASSED and full.stdout.startswith(b"full after"), full
    assert other.status is Status.PASSED and other.stdout == b"created\n", other


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signalling_the_agent_gives_the_job_its_own_status(one, signame):
    r = run(one, f"import os, signal\ntry:\n    os.kill(1, signal.{signame})\n"
                 "except PermissionError:\n    print('refused')\nprint('still here')")
    assert r.status is Status.PASSED and r.stdout == b"refused\nstill here\n", r


def test_message_queues_are_wiped_between_jobs(one):
    r = run(one, "open('/dev/mqueue/left-behind', 'w').close()\nimport os\nprint(os.listdir('/dev/mqueue'))")
    assert r.status is Status.PASSED and b"left-behind" in r.stdout, r
    r = run(one, "import os\nprint(os.listdir('/dev/mqueue'))")
    assert r.stdout == b"[]\n", r


# -- verdicts must be true ------------------------------------------------------------------

HONEST = {
    "forked_child_runs_to_the_end": "import os\npid = os.fork()\nif pid:\n    os.waitpid(pid, 0)\nprint('done')",
    "closes_stdout_at_the_end": "import sys\nprint('x')\nsys.stdout.close()",
    "closes_every_descriptor": "import os\nos.closerange(3, 65536)\nprint('ok')",
    "byte_order_mark": "\ufeffprint('bom')",
    "reads_its_environ": ("import os\nraw = open('/proc/self/environ', 'rb').read()\n"
                          "print(sorted(raw.decode().split('\\0')[:-1])\n"
                          "      == sorted(f'{k}={v}' for k, v in os.environ.items()))"),
    "recursion_depth": ("import sys\ndef f(n):\n    try:\n        return f(n + 1)\n"
                        "    except RecursionError:\n        return n\nprint(sys.getrecursionlimit(), f(1))"),
    # The agent's own modules are not the program's: a script of that name, or none, is found.
    "imports_like_a_script": ("try:\n    import protocol\n    print('found', protocol.__file__)\n"
                              "except ModuleNotFoundError as e:\n    print('missing', e.name)"),
    "recursion_depth_set": ("import sys\nsys.setrecursionlimit(1500)\ndef f(n):\n    try:\n        return f(n + 1)\n"
                            "    except RecursionError:\n        return n\nprint(sys.getrecursionlimit(), f(1))"),
}


def _plain_python(image: str, code: str) -> subprocess.CompletedProcess:
    """The same program as `python3 main.py` in the same image, for comparison."""
    return subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", "--tmpfs", "/tmp", "--user",
                           "10001:10001", "--entrypoint", "sh", image, "-c", "cat > /tmp/main.py && cd /tmp && "
                           "python3 main.py"], input=code.encode(), capture_output=True, timeout=120)


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_programs_pass_as_they_do_as_plain_scripts(one, sandbox_image, case):
    code = HONEST[case]
    plain = _plain_python(sandbox_image, code)
    assert plain.returncode == 0, plain.stderr
    r = one.execute(Program(code))
    assert r.status is Status.PASSED, r
    assert r.stdout == plain.stdout, (r.stdout, plain.stdout)


FORGE = '''
import os, socket
name = next(line.split()[-1] for line in open("/proc/net/unix") if "selfalign-outcome" in line)
pid = os.fork()
if pid == 0:
    pid2 = os.fork()
    if pid2 == 0:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"end", "\\0" + name.lstrip("@"))
        os._exit(0)
    os.waitpid(pid2, 0)
    os._exit(0)
os.waitpid(pid, 0)
os._exit(0)   # the tests below never run
assert False
'''


BIG_OUTPUT = ("import sys\nheld = bytearray(15 << 20)\n"
              "sys.stdout.write('x' * (12 << 20))\nsys.stderr.write('y' * (12 << 20))")


def test_the_agents_buffers_do_not_count_against_the_program(one):
    """A program using 15 MiB that writes 12 MiB to each stream fits a 96 MiB limit: the agent's
    copies of its output are the agent's, not the program's (it got MEMORY_LIMIT)."""
    r = run(one, BIG_OUTPUT, memory_mb=96, max_output_bytes=13 << 20)
    assert r.status is Status.PASSED, r
    assert r.stdout == b"x" * (12 << 20) and r.stderr == b"y" * (12 << 20)


def test_a_program_over_its_own_limit_gets_memory_limit(one):
    """The container has room beyond the program's limit for the agent; a program that takes it
    still exceeded its own limit."""
    r = run(one, "held = bytearray(120 << 20)\nprint('survived')", memory_mb=96)
    assert r.status is Status.MEMORY_LIMIT and "limit 96 MiB" in r.reason, r
    assert run(one, "print(1)").status is Status.PASSED


OOM_ESCAPE = """
import os
open("/proc/self/oom_score_adj", "w").write("0")   # as low as the agent's
children = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        held = bytearray(45 << 20)   # each under the program's limit, all of them far over
        import time; time.sleep(5)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print("done")
"""


def test_a_job_that_lowers_its_oom_priority_still_gets_memory_limit(one):
    r = run(one, OOM_ESCAPE, memory_mb=96, timeout_s=20)
    assert r.status is Status.MEMORY_LIMIT, r
    later = run(one, "print('next')")
    assert later.status is Status.PASSED and later.stdout == b"next\n", later


def test_a_grandchild_cannot_claim_the_end_for_the_job(one):
    r = run(one, FORGE)
    assert r.status is Status.FAILED and "before reaching its end" in r.reason, r


# -- the server and client must stay up and bounded -----------------------------------------

def test_a_client_that_stops_reading_holds_only_its_in_flight_results(docker_client, sandbox_image):
    server = start_server(docker_client, pool_size=2, max_in_flight_per_stream=4, instance="pytest-noread")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ExecutorStub(channel)
    big = "import sys\nsys.stdout.write('x' * (1 << 20))"
    try:
        call = stub.ExecuteStream(iter([pb.ExecuteRequest(id=str(i), code=big) for i in range(60)]))
        deadline = time.monotonic() + 30
        done = -1
        while time.monotonic() < deadline:   # wait until the server stops taking work
            time.sleep(2)
            now = server.pool.state().completed
            if now == done:
                break
            done = now
        # 4 results held for sending, plus what gRPC's flow-control windows let through.
        assert done <= 4 + 12, done
        assert len(list(call)) == 60   # reading again, every result arrives
    finally:
        channel.close()
        server.stop()


def test_health_and_calls_work_while_a_client_holds_every_stream(docker_client, sandbox_image):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = start_server(docker_client, pool_size=1, max_streams=2, max_total_streams=2,
                          stream_idle_timeout_s=3.0, instance="pytest-lockout")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ExecutorStub(channel)
    release = threading.Event()

    def idle():
        release.wait(60)
        yield from ()

    try:
        held = [stub.ExecuteStream(idle()) for _ in range(2)]
        time.sleep(0.5)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert stub.Execute(pb.ExecuteRequest(code="print(1)"), timeout=30).status == pb.PASSED
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ExecuteStream(iter([pb.ExecuteRequest(id="x", code="print(3)")]), timeout=10))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in held:   # idle streams are closed, and free their places
            with pytest.raises(grpc.RpcError) as err:
                list(call)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert [r.result.status for r in stub.ExecuteStream(iter([pb.ExecuteRequest(id="y", code="print(4)")]),
                                                            timeout=30)] == [pb.PASSED]
    finally:
        release.set()
        channel.close()
        server.stop()


def test_bad_rows_are_refused_at_once_and_alone(one):
    programs = [Program("print(1)", id="a"), Program("print('\ud800')", id="surrogate"),
                Program("print(2)", id="b"), Program("x = 1\n" + "#" * (65 << 20), id="huge"),
                Program("print(3)", id="c")]
    results = {r.id: r for r in one.execute_many(programs, return_rejected=True)}
    assert {k: type(v).__name__ for k, v in results.items()} == {
        "a": "ExecutionResult", "surrogate": "Rejected", "b": "ExecutionResult", "huge": "Rejected",
        "c": "ExecutionResult"}
    assert all(results[k].status is Status.PASSED for k in "abc")
    assert isinstance(results["surrogate"], Rejected) and results["surrogate"].code == "INVALID_ARGUMENT"
    assert results["huge"].code == "RESOURCE_EXHAUSTED"
    with pytest.raises(ExecutorError, match="not valid Unicode"):
        one.execute(Program("print(1)", stdin="\udcff"))


@pytest.mark.parametrize("field,value", [("id", "i" * 2000), ("language", "l" * (1 << 20))])
def test_every_field_is_bounded(one, field, value):
    channel = grpc.insecure_channel(f"127.0.0.1:{one.server.port}")
    try:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.ExecutorStub(channel).Execute(pb.ExecuteRequest(code="print(1)", **{field: value}), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "over the limit" in err.value.details()
    finally:
        channel.close()


def test_two_servers_cleaning_up_the_same_leftovers_both_start(docker_client, sandbox_image):
    labels = {LABEL_ROLE: ROLE_SANDBOX, LABEL_INSTANCE: "pytest-race", LABEL_OWNER: "elsewhere:1"}
    for _ in range(6):
        docker_client.containers.create(sandbox_image, labels=labels)
    errors: list[BaseException] = []

    def clean():
        try:
            remove_leftovers(docker_client, "pytest-race")
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever escaped
            errors.append(exc)

    threads = [threading.Thread(target=clean) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}=pytest-race"}) == []


def test_one_server_per_port_start_is_quiet_about_its_own_sandboxes(docker_client, sandbox_image):
    """Two servers started together on one engine, each with its own instance, both serve."""
    servers = []
    errors: list[BaseException] = []

    def start(name):
        try:
            servers.append(start_server(docker_client, pool_size=1, instance=name))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"pytest-twin-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(servers) == 2
        for s in servers:
            with Client(f"127.0.0.1:{s.port}") as c:
                assert c.execute("print(1)").passed
    finally:
        for s in servers:
            s.stop()


def test_outcome_socket_address_is_private_to_the_container(one):
    r = run(one, "print(sum('selfalign-outcome' in line for line in open('/proc/net/unix')))")
    assert r.stdout == b"1\n", r   # the agent's socket, and no other container's


VSOCK = '''
import errno, socket
for family_user in (lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM),
                    lambda: socket.socketpair(socket.AF_VSOCK, socket.SOCK_STREAM)):
    try:
        family_user()
        print("open")
    except OSError as exc:
        print(errno.errorcode.get(exc.errno))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)   # other families still work
print("unix ok")
'''


def test_vsock_sockets_are_refused(one):
    r = run(one, VSOCK)
    assert r.status is Status.PASSED and r.stdout == b"EAFNOSUPPORT\nEAFNOSUPPORT\nunix ok\n", r


# io_uring makes sockets of its own (IORING_OP_SOCKET) where the socket() filter cannot see them;
# the family's high bits are ignored by the kernel; x32 numbers are another ABI. x86-64 numbers.
RAW_SYSCALLS = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return rc if rc >= 0 else errno.errorcode[ctypes.get_errno()]
params = ctypes.create_string_buffer(120)
print(call(425, 4, ctypes.addressof(params)))          # io_uring_setup
print(call(426, 0, 0, 0, 0, 0, 0))                      # io_uring_enter
print(call(41, (0xDEAD << 32) | 40, 1, 0))              # socket(AF_VSOCK with high bits)
print(call(0x40000000 | 39))                            # x32 getpid
print(call(39) > 0)                                     # getpid
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 syscall numbers")
def test_io_uring_x32_and_disguised_vsock_are_refused(one):
    # The host kernel has io_uring: without the filter, io_uring_setup would give a descriptor.
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(ctypes.c_long(425), ctypes.c_ulong(4), params)
    if fd < 0:
        pytest.skip("this kernel has no io_uring, so refusing it proves nothing here")
    os.close(fd)
    r = run(one, RAW_SYSCALLS)
    assert r.status is Status.PASSED, r
    assert r.stdout.decode().split() == ["ENOSYS", "ENOSYS", "EAFNOSUPPORT", "ENOSYS", "True"], r


# Looks for the secrets by their SHA-256 and a short prefix, so the scanning job never holds a
# secret itself (its search keys would otherwise be the first thing it finds).
SCAN = '''
import hashlib
wanted = {wanted!r}   # [(prefix, length, sha256 hex)]
found = set()
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        addresses, perms = line.split()[:2]
        if not perms.startswith("r"):
            continue
        start, end = (int(x, 16) for x in addresses.split("-"))
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        for i, (prefix, length, digest) in enumerate(wanted):
            at = chunk.find(prefix.encode())
            while at >= 0:
                if hashlib.sha256(chunk[at:at + length]).hexdigest() == digest:
                    found.add(i)
                    break
                at = chunk.find(prefix.encode(), at + 1)
print(sorted(found))
'''


def test_no_earlier_job_data_in_a_later_jobs_memory(one):
    """A job plants a secret in its code, its input and its output; later jobs in the same
    sandbox scan their whole memory for them and find nothing (jobs fork from a zygote that never
    held a job's data)."""
    code_secret, stdin_secret = "code-7f3a9c-secret", "stdin-51be02-secret"
    planted = one.execute(Program(f"data = {code_secret!r}\nprint(input() + '-' + data[::-1])",
                                  stdin=stdin_secret.encode()))
    out_secret = f"{stdin_secret}-{code_secret[::-1]}"
    assert planted.status is Status.PASSED and planted.stdout.decode().strip() == out_secret
    import hashlib

    secrets = [code_secret, stdin_secret, out_secret]
    scan = SCAN.format(wanted=[(s[:6], len(s), hashlib.sha256(s.encode()).hexdigest()) for s in secrets])
    for _ in range(3):
        r = one.execute(Program(scan))
        assert r.status is Status.PASSED and r.stdout == b"[]\n", r
