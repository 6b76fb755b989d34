"""Where the pooled executor's CPU goes, per program: the client, the server, dockerd and the
shims, the agents, and the jobs with their zygotes (README, "Benchmark").

Runs `python -m executor serve` (pool of 2) and a client in this process over the bench's
HumanEval workload, and reads each part's CPU time before and after: processes from
/proc/PID/stat, the sandboxes from their cgroups (v1 cpuacct or v2 cpu.stat), whose total less
the agents' own time is the jobs' and the zygotes'.

    python bench/executor_cpu.py [--programs 1968] [--window 64] [-- serve options...]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from executor.bench import humaneval_programs  # noqa: E402
from executor.client import MAX_IN_FLIGHT, Client  # noqa: E402
from executor.jobs import Program  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def named(*names: str) -> float:
    total = 0.0
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            if Path(comm).read_text().strip() in names:
                total += process_cpu(int(comm.split("/")[2]))
        except (OSError, ValueError):
            pass
    return total


def container_cpu(container_id: str) -> float:
    """Seconds of CPU the container's cgroup has used (v1 or v2), 0 where unreadable."""
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpuacct.usage"):
            return int(text) / 1e9
        usage = re.search(r"usage_usec (\d+)", text)
        return int(usage.group(1)) / 1e6 if usage else 0.0
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=1968)
    parser.add_argument("--window", type=int, default=MAX_IN_FLIGHT,
                        help="programs in flight (execute_many's max_in_flight; its default)")
    parser.add_argument("serve_options", nargs="*", help="after --: options for `executor serve`")
    args = parser.parse_args()
    import docker

    engine = docker.from_env()
    work = humaneval_programs()
    programs = [Program(p.code, id=str(i), limits=p.limits) for i, p in enumerate((work * 100)[:args.programs])]
    instance = f"cpu-bench-{os.getpid()}"
    server = subprocess.Popen([sys.executable, "-m", "executor", "serve", "--port", "0", "--pool-size", "2",
                               "--instance", instance, *args.serve_options], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert server.stdout is not None
        port = re.search(r":(\d+)", server.stdout.readline())
        if not port:
            raise SystemExit("the executor did not start")
        with Client(f"127.0.0.1:{port.group(1)}") as client:
            client.wait_until_ready(120)
            list(client.execute_many(programs[:50]))   # warm
            boxes = {c.id: c.attrs["State"]["Pid"] for c in engine.containers.list(
                filters={"label": f"org.selfalign.instance={instance}"})}

            def snapshot() -> dict[str, float]:
                return {"client": process_cpu(os.getpid()), "server": process_cpu(server.pid),
                        "dockerd": named("dockerd"),
                        "shims": named("containerd", "containerd-shim", "containerd-shim-runc-v2"),
                        "sandboxes": sum(container_cpu(cid) for cid in boxes),
                        "agents": sum(process_cpu(pid) for pid in boxes.values())}

            before, start = snapshot(), time.perf_counter()
            results = list(client.execute_many(programs, max_in_flight=args.window))
            seconds, after = time.perf_counter() - start, snapshot()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    used = {k: (after[k] - before[k]) / len(programs) * 1000 for k in before}
    used["jobs and zygotes"] = used.pop("sandboxes") - used["agents"]
    print(f"{len(programs)} programs in {seconds:.2f} s: {len(programs) / seconds:.0f}/s, "
          f"{sum(r.passed for r in results)} passed (a retired sandbox's CPU is not counted)")
    print("ms of CPU a program: " + ", ".join(f"{k} {v:.2f}" for k, v in used.items())
          + f"; all {sum(used.values()):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
