"""Soak: 10,000 jobs through one stream with ~5% hostile programs mixed in.

The hostile programs cover every class of attack the isolation suite and the red-team tests
know: runaway processes, memory and output, escapes from the job's process, changes to the agent
or the sandbox that could reach a later job (limits, signals, message queues, files, descriptors),
forged verdicts, and sockets that reach outside.

Checks and reports: every id answered exactly once; the results equal those of a serial run of
the same jobs; no container or agent process is left once the server stops; the server's
memory before and after, and while a client that stops reading holds a stream of large results.
Run: python bench/soak.py [--jobs 10000] [--output soak.json]

`--hostile-clients SECONDS` runs another soak instead: hostile *clients* next to an honest one,
for that long. The hostile ones hold idle HTTP connections past the cap, send headers one byte
at a time, keep a stream of 1 MiB results they never read, flood unary `Execute` calls, and
queue a long line of slow jobs. The honest one (HTTP, from another loopback address) sends a
`print(1)` every second. Reported: the honest client's latencies against the length of a
hostile job (it should wait about one job), and the server's RSS over the run (bounded).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run from a checkout, as the other benches are

from executor import Limits, Program  # noqa: E402
from executor.client import Client  # noqa: E402

HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", 1.0),
    "memory_balloon": ("x = []\nwhile True:\n    x.append(' ' * (1 << 20))", None),
    "busy_loop": ("while True:\n    pass", 1.0),
    "output_flood": ("while True:\n    print('flood' * 50)", None),
    "kill_parent": ("import os\nos.kill(os.getppid(), 9)\nprint('alive')", None),
    "leave_child": ("import subprocess\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)\nprint('bye')",
                    None),
    "write_etc": ("open('/etc/passwd', 'a').write('x')", None),
    "early_exit": ("import os\nos._exit(0)", None),
    # a job must not change what a later job sees or gets
    "poison_agent": ("import resource\ntry:\n    resource.prlimit(1, resource.RLIMIT_NOFILE, (10, 10))\n"
                     "except PermissionError:\n    print('refused')", None),
    "signal_agent": ("import os, signal\ntry:\n    os.kill(1, signal.SIGTERM)\nexcept PermissionError:\n"
                     "    print('refused')", None),
    "leave_queue": ("import os\nopen('/dev/mqueue/left', 'w').close()\nprint(os.listdir('/dev/mqueue'))", None),
    "fill_tmp": ("import os\nfor i in range(20000):\n    open(f'/tmp/f{i}', 'w').close()\nprint('filled')", 10.0),
    "vsock": ("import socket\ntry:\n    socket.socket(40, socket.SOCK_STREAM)\nexcept OSError as e:\n"
              "    print(e.errno)", None),
    # verdicts must be true
    "close_fds": ("import os\nos.closerange(3, 65536)\nprint('ok')", None),
    "forge_end": ("import os, socket\n"
                  "name = next(l.split()[-1] for l in open('/proc/net/unix') if 'selfalign-outcome' in l)\n"
                  "if os.fork() == 0:\n"
                  "    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'end', '\\0' + name.lstrip('@'))\n"
                  "    os._exit(0)\nos.wait()\nos._exit(0)", None),
    "big_output": ("import sys\nsys.stdout.write('x' * (6 << 20))", None),
}


def make_jobs(n: int, hostile_share: float, seed: int) -> list[Program]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        if rng.random() < hostile_share:
            kind = rng.choice(sorted(HOSTILE))
            code, timeout = HOSTILE[kind]
            output = 8 << 20 if kind == "big_output" else None
            jobs.append(Program(code, id=f"{i}-{kind}",
                                limits=Limits(timeout_s=timeout, memory_mb=256, max_output_bytes=output)))
        else:
            a, b = rng.randrange(1000), rng.randrange(1000)
            code = f"def add(x, y):\n    return x + y\nassert add({a}, {b}) == {a + b}\nprint(add({a}, {b}))"
            if rng.random() < 0.1:
                code = code.replace("return x + y", "return x - y")  # a wrong solution
            jobs.append(Program(code, id=f"{i}-normal", limits=Limits(memory_mb=256)))
    return jobs


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def outcome(r) -> tuple:
    # Timeouts are compared by status only: how far a runaway program got is timing.
    return (r.status.value,) if r.status.value == "TIMEOUT" else (r.status.value, r.stdout)


def run(client: Client, jobs: list[Program], in_flight: int) -> tuple[dict, float, collections.Counter]:
    seen: collections.Counter = collections.Counter()
    results = {}
    start = time.monotonic()
    for r in client.execute_many(jobs, max_in_flight=in_flight):
        seen[r.id] += 1
        results[r.id] = outcome(r)
    return results, time.monotonic() - start, seen


def stalled_reader(port: int, server_pid: int, jobs: int = 400) -> dict:
    """A client that sends `jobs` programs of 1 MiB output each and stops reading: the server
    must hold only the stream's in-flight results (256 by default), not all of them, and give the
    memory back once the client cancels (red-team item 10)."""
    import grpc

    from executor.v1 import executor_pb2 as pb
    from executor.v1 import executor_pb2_grpc as pb_grpc

    before = rss_mb(server_pid)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = pb_grpc.ExecutorStub(channel).ExecuteStream(iter(
        [pb.ExecuteRequest(id=str(i), code="import sys\nsys.stdout.write('x' * (1 << 20))") for i in range(jobs)]))
    time.sleep(15)   # long enough for a pool to run them all, were it allowed to
    held = rss_mb(server_pid)
    call.cancel()
    channel.close()
    time.sleep(2)
    return {"jobs": jobs, "output_mb_each": 1, "server_rss_mb_before": round(before, 1),
            "server_rss_mb_while_held": round(held, 1), "server_rss_mb_after_cancel": round(rss_mb(server_pid), 1)}


SLOW_JOB_S = 1.0


def hostile_clients(port: int, http_port: int, server_pid: int, seconds: float) -> dict:
    """The hostile-clients soak (see the module doc); every loop is bounded by `seconds`."""
    import http.client
    import socket
    import threading

    import grpc

    from executor.v1 import executor_pb2 as pb
    from executor.v1 import executor_pb2_grpc as pb_grpc

    stop = threading.Event()
    deadline = time.monotonic() + seconds
    counts: collections.Counter = collections.Counter()
    slow = f"import time; time.sleep({SLOW_JOB_S})"

    def idle_connections():
        socks = []
        for _ in range(400):
            try:
                socks.append(socket.create_connection(("127.0.0.1", http_port), timeout=5))
            except OSError:
                counts["idle_connect_failed"] += 1
        stop.wait(seconds)
        for s in socks:
            s.close()

    def slow_headers():
        socks = [socket.create_connection(("127.0.0.1", http_port), timeout=5) for _ in range(50)]
        while not stop.wait(1.0):
            for s in list(socks):
                try:
                    s.send(b"X")
                except OSError:
                    counts["slow_header_connections_closed"] += 1
                    socks.remove(s)
        for s in socks:
            s.close()

    def stalled_stream():
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        call = pb_grpc.ExecutorStub(channel).ExecuteStream(iter(
            [pb.ExecuteRequest(id=str(i), code="import sys\nsys.stdout.write('x' * (1 << 20))") for i in range(2000)]))
        stop.wait(seconds)
        call.cancel()
        channel.close()

    def unary_flood():
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.ExecutorStub(channel)

        def one():
            while not stop.is_set():
                try:
                    stub.Execute(pb.ExecuteRequest(code=slow), timeout=seconds)
                    counts["flood_ok"] += 1
                except grpc.RpcError as err:
                    counts[f"flood_{err.code().name}"] += 1
                    stop.wait(0.05)
        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        channel.close()

    def long_queue():
        with Client(f"127.0.0.1:{port}") as client:
            jobs = (Program(slow, id=f"q{i}") for i in range(100_000))
            for _ in client.execute_many(jobs, max_in_flight=200):
                counts["queue_jobs_done"] += 1
                if stop.is_set():
                    break

    latencies: list[float] = []
    rss: list[float] = []

    def honest():
        body = json.dumps({"code": "print(1)"}).encode()
        while time.monotonic() < deadline - 2:
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60, source_address=("127.0.0.2", 0))
                conn.request("POST", "/v1/execute", body=body)
                ok = json.loads(conn.getresponse().read()).get("stdout") == "1\n"
                conn.close()
                latencies.append(time.monotonic() - start)
                counts["honest_ok" if ok else "honest_wrong"] += 1
            except OSError as exc:
                counts[f"honest_{type(exc).__name__}"] += 1
            stop.wait(1.0)

    workers = [threading.Thread(target=f, daemon=True) for f in (idle_connections, slow_headers, stalled_stream,
                                                                    unary_flood, long_queue)]
    for t in workers:
        t.start()
    time.sleep(2)   # let the hostile clients fill the queue first
    honest_thread = threading.Thread(target=honest)
    honest_thread.start()
    while time.monotonic() < deadline:
        rss.append(rss_mb(server_pid))
        time.sleep(1.0)
    stop.set()
    honest_thread.join()
    for t in workers:
        t.join(30)
    latencies.sort()
    return {
        "seconds": seconds, "hostile_job_s": SLOW_JOB_S, "counts": dict(counts),
        "honest_requests": len(latencies),
        "honest_latency_s": {"p50": round(latencies[len(latencies) // 2], 2) if latencies else None,
                             "max": round(latencies[-1], 2) if latencies else None},
        "server_rss_mb": {"first": round(rss[0], 1), "max": round(max(rss), 1), "last": round(rss[-1], 1)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--hostile", type=float, default=0.05)
    ap.add_argument("--pool-size", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--port", type=int, default=50097)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--hostile-clients", type=float, default=0.0, metavar="SECONDS",
                    help="run the hostile-clients soak for this long instead")
    args = ap.parse_args()
    if args.hostile_clients:
        return main_hostile_clients(args)

    instance = f"soak-{os.getpid()}"
    server = subprocess.Popen([sys.executable, "-m", "executor", "serve", "--port", str(args.port),
                               "--pool-size", str(args.pool_size), "--instance", instance], cwd=ROOT)
    report: dict = {"jobs": args.jobs, "hostile_share": args.hostile, "pool_size": args.pool_size}
    try:
        with Client(f"127.0.0.1:{args.port}", retry_timeout_s=180) as client:
            client.wait_until_ready(180)
            client.execute(Program("pass"))
            report["server_rss_mb_before"] = round(rss_mb(server.pid), 1)
            jobs = make_jobs(args.jobs, args.hostile, args.seed)
            report["hostile_jobs"] = sum("normal" not in j.id for j in jobs)
            print(f"streaming {len(jobs)} jobs ({report['hostile_jobs']} hostile) ...", file=sys.stderr)
            streamed, t_stream, seen = run(client, jobs, in_flight=4 * args.pool_size)
            report["stream_seconds"] = round(t_stream, 1)
            report["stream_jobs_per_s"] = round(len(jobs) / t_stream, 1)
            report["ids_answered"] = len(seen)
            report["ids_answered_more_than_once"] = sum(1 for v in seen.values() if v > 1)
            report["ids_missing"] = len({j.id for j in jobs} - set(seen))
            report["server_rss_mb_after_stream"] = round(rss_mb(server.pid), 1)
            print("serial run of the same jobs ...", file=sys.stderr)
            serial, t_serial, _ = run(client, jobs, in_flight=1)
            report["serial_seconds"] = round(t_serial, 1)
            diff = [k for k in serial if serial[k] != streamed.get(k)]
            report["results_differing_from_serial"] = len(diff)
            report["differing_examples"] = diff[:10]
            report["status_counts"] = collections.Counter(v[0] for v in streamed.values())
            report["server_rss_mb_after"] = round(rss_mb(server.pid), 1)
            print("a client that stops reading ...", file=sys.stderr)
            report["stalled_reader"] = stalled_reader(args.port, server.pid)
    finally:
        server.terminate()
        server.wait(120)
    engine = docker.from_env()
    label = {"label": f"org.selfalign.instance={instance}"}
    report["containers_left"] = len(engine.containers.list(all=True, filters=label))
    left = subprocess.run(["pgrep", "-f", "/opt/selfalign/agent.py"], capture_output=True, text=True).stdout.split()
    report["agent_processes_left"] = len(left)
    ok = (report["ids_missing"] == 0 and report["ids_answered_more_than_once"] == 0
          and report["results_differing_from_serial"] == 0 and report["containers_left"] == 0)
    report["ok"] = ok
    text = json.dumps(report, indent=2, default=dict)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0 if ok else 1


def main_hostile_clients(args) -> int:
    instance = f"soak-clients-{os.getpid()}"
    http_port = args.port + 1
    server = subprocess.Popen([sys.executable, "-m", "executor", "serve", "--port", str(args.port),
                               "--http-port", str(http_port), "--pool-size", str(args.pool_size),
                               "--instance", instance], cwd=ROOT)
    try:
        with Client(f"127.0.0.1:{args.port}", retry_timeout_s=180) as client:
            client.wait_until_ready(180)
            client.execute(Program("pass"))
        found = hostile_clients(args.port, http_port, server.pid, args.hostile_clients)
        report = {"pool_size": args.pool_size, **found}
    finally:
        server.terminate()
        server.wait(120)
    latency = report["honest_latency_s"]["max"]
    report["ok"] = bool(report["honest_requests"]) and latency is not None and latency < 3 * SLOW_JOB_S \
        and report["counts"].get("honest_ok", 0) == report["honest_requests"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
