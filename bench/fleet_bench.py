"""Fleet benchmark: the HumanEval workload through 1, 2, ... executor servers behind one balanced
client target (`ipv4:` list: gRPC round_robin with health checking), items/s for each fleet size
and how the work was split, in one run.

Each server is its own process with its own pool (`--pool-size`), as on separate machines; here
they share this machine's cores, so the curve shows the fleet's overhead and balance, not more
hardware. Run: python bench/fleet_bench.py [--servers 1,2,3] [--pool-size 1] [--repeat 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from executor.bench import humaneval_programs  # noqa: E402
from executor.client import Client  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(count: int, pool_size: int) -> list[tuple[subprocess.Popen, int]]:
    servers = []
    for i in range(count):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "executor", "serve", "--port", str(port),
                                 "--pool-size", str(pool_size), "--instance", f"fleet-bench-{os.getpid()}-{i}"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append((proc, port))
    for _, port in servers:
        with Client(f"127.0.0.1:{port}", retry_timeout_s=180) as c:
            c.wait_until_ready(180)
    return servers


def completed(port: int) -> int:
    with Client(f"127.0.0.1:{port}", retry_timeout_s=10) as c:
        return c.info().pool.completed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="1,2,3")
    ap.add_argument("--pool-size", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--copies", type=int, default=2, help="times the 328-program workload is repeated")
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    base = humaneval_programs()
    programs = [dataclasses.replace(p, id=f"{copy}:{p.id}") for copy in range(args.copies) for p in base]
    rows = []
    for count in [int(x) for x in args.servers.split(",")]:
        print(f"{count} server(s) ...", file=sys.stderr, flush=True)
        servers = start_servers(count, args.pool_size)
        try:
            target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in servers)
            rates = []
            with Client(target, retry_timeout_s=120) as client:
                list(client.execute_many(programs[:40]))   # connect to every server first
                before = [completed(port) for _, port in servers]
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    answered = sum(1 for _ in client.execute_many(programs, max_in_flight=8 * count * args.pool_size))
                    rates.append(answered / (time.perf_counter() - start))
                split = [completed(port) - b for (_, port), b in zip(servers, before, strict=True)]
            rows.append({"servers": count, "sandboxes": count * args.pool_size, "programs": len(programs),
                         "items_per_s_median": round(statistics.median(rates), 1),
                         "items_per_s": [round(r, 1) for r in rates], "split": split})
        finally:
            for proc, _ in servers:
                proc.terminate()
            for proc, _ in servers:
                proc.wait(120)
    one = rows[0]["items_per_s_median"] if rows else 0
    print(json.dumps(rows, indent=2))
    print("\n| servers | sandboxes | items/s (median) | vs 1 server | work split |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['servers']} | {r['sandboxes']} | {r['items_per_s_median']} | "
              f"{r['items_per_s_median'] / one:.2f}x | {' / '.join(map(str, r['split']))} |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
