"""Soak: 10,000 jobs through one stream with ~5% hostile programs mixed in.

Checks and reports: every id answered exactly once; the results equal those of a serial run of
the same jobs; no container or agent process is left once the server stops; the server's
memory before and after. Run: python bench/soak.py [--jobs 10000] [--output soak.json]
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

from executor import Limits, Program
from executor.client import Client

ROOT = Path(__file__).resolve().parent.parent
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
}


def make_jobs(n: int, hostile_share: float, seed: int) -> list[Program]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        if rng.random() < hostile_share:
            kind = rng.choice(sorted(HOSTILE))
            code, timeout = HOSTILE[kind]
            jobs.append(Program(code, id=f"{i}-{kind}", limits=Limits(timeout_s=timeout, memory_mb=256)))
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--hostile", type=float, default=0.05)
    ap.add_argument("--pool-size", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--port", type=int, default=50097)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
