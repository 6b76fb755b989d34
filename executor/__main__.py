"""Command line: `python -m executor serve | run-batch | build-image | bench`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from executor.cli import add_dataclass_options, configure_logging, make_parser, options_from, stop_on_closed_stdout
from executor.client import MAX_IN_FLIGHT
from executor.limits import ServerLimits
from executor.server import ServerConfig


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pool-size", type=int, default=os.cpu_count() or 1,
                   help="sandboxes kept warm (default: number of cores)")
    p.add_argument("--spares", type=int, default=1,
                   help="started sandboxes kept ready to replace one retired (something the agent could "
                        "not clean, or a container killed for memory), so that replacing it does not stall "
                        "the queue (default: 1)")
    p.add_argument("--channel", choices=("auto", "socket", "attach"), default="auto",
                   help="how jobs reach the sandboxes: socket (a Unix socket per sandbox, past dockerd), "
                        "attach (the containers' stdin and stdout, through dockerd), auto: socket for a "
                        "local engine with runc, falling back to attach where the engine cannot mount it (default)")
    p.add_argument("--channel-dir", default=None,
                   help="where the socket channel's directories are made (default: the temporary directory); "
                        "a server in a container mounts the same host path there")
    p.add_argument("--isolation", choices=("pooled", "fresh"), default="pooled",
                   help="pooled: reuse a container across jobs (wiped between them); "
                        "fresh: a new container for every job")
    p.add_argument("--sandbox-base", default=None,
                   help="base image for the sandbox: 'offline' (debootstrap) or an image such as "
                        "python:3.11-slim (default: offline when debootstrap is usable)")
    p.add_argument("--sandbox-profile", choices=("default", "ds1000"), default="default",
                   help="default: Python and NumPy; ds1000: plus DS-1000's libraries (pandas, SciPy, "
                        "scikit-learn, Matplotlib, PyTorch, TensorFlow), built from wheels the first time")
    p.add_argument("--runtime", default=None, help="Docker runtime for sandboxes, e.g. runsc (gVisor)")
    # One flag per ServerLimits field, its default taken from the dataclass (the older short
    # names stay as aliases).
    add_dataclass_options(p, ServerLimits, LIMIT_HELP, aliases={
        "default_timeout_s": "--default-timeout", "default_memory_mb": "--default-memory",
        "max_timeout_s": "--max-timeout", "max_memory_mb": "--max-memory"})


LIMIT_HELP = {
    "default_timeout_s": "wall-clock seconds for a program that sets none",
    "default_memory_mb": "memory (MiB) for a program that sets none",
    "default_output_bytes": "bytes per output stream for a program that sets none",
    "max_timeout_s": "the most a program may ask for, seconds",
    "max_memory_mb": "the most memory a program may ask for, MiB",
    "max_output_bytes": "the most output a program may ask for, bytes per stream",
    "max_code_bytes": "largest program source accepted",
    "max_stdin_bytes": "largest stdin accepted",
    "max_id_bytes": "longest id accepted",
    "max_language_bytes": "longest language name accepted",
    "min_memory_mb": "the least memory a program may ask for, MiB",
}


def _server_config(args, host: str, port: int) -> ServerConfig:
    limits = options_from(ServerLimits, args)
    limits = dataclasses.replace(limits, max_timeout_s=max(limits.max_timeout_s, limits.default_timeout_s),
                                 max_memory_mb=max(limits.max_memory_mb, limits.default_memory_mb),
                                 max_output_bytes=max(limits.max_output_bytes, limits.default_output_bytes))
    return ServerConfig(
        host=host, port=port, pool_size=args.pool_size, spares=args.spares, channel=args.channel,
        channel_dir=args.channel_dir,
        isolation=args.isolation, limits=limits,
        sandbox_base=args.sandbox_base, sandbox_profile=args.sandbox_profile, runtime=args.runtime,
    )


def cmd_serve(args) -> int:
    from executor.server import serve

    cfg = _server_config(args, args.host, args.port)
    cfg.metrics_port = args.metrics_port
    cfg.http_port = args.http_port
    cfg.max_streams = args.max_streams
    cfg.max_total_streams = args.max_total_streams
    cfg.stream_idle_timeout_s = args.stream_idle_timeout
    cfg.instance = args.instance
    cfg.token = args.token or os.environ.get("SELFALIGN_EXECUTOR_TOKEN") or None
    cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca = args.tls_cert, args.tls_key, args.tls_client_ca
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    serve(cfg)
    return 0


CLIENT_HELP = {
    "retry_timeout_s": "give up on a target unreachable this long (seconds)",
    "max_attempts": "server failures under one program before it is a SANDBOX_ERROR",
    "backoff_initial_s": "first wait before retrying a target (doubles, with jitter)",
    "backoff_max_s": "longest wait between retries",
    "streams_per_balanced_target": "streams opened on a dns:/ipv4:/ipv6: target",
    "rotate_after": "programs per stream on a balanced target before a new stream",
}


def cmd_run_batch(args) -> int:
    from executor.batch import run_batch
    from executor.client import ExecutorError

    if not args.input.is_file():
        print(f"error: input file {args.input} does not exist", file=sys.stderr)
        return 2
    from executor.embedded import connect

    if not args.target:
        print("no --target: starting an embedded executor for this batch", file=sys.stderr)
    token = args.token or os.environ.get("SELFALIGN_EXECUTOR_TOKEN") or None
    started = interrupted = False
    report = None
    try:
        tuning = {name: getattr(args, name) for name in CLIENT_HELP if hasattr(args, name)}
        with connect(args.target, token=token, cache_path=args.cache, **tuning,
                     server_config=None if args.target else _server_config(args, "127.0.0.1", 0)) as client:
            started = True
            try:
                report = run_batch(args.input, args.output, client, args.concurrency,
                                   progress=not args.no_progress)
            except KeyboardInterrupt:
                interrupted = True
    except ExecutorError as exc:
        if not interrupted:   # after Ctrl-C, a teardown error changes nothing: the results are whole
            if not started:
                print(f"error: {exc}; nothing was run", file=sys.stderr)
            else:
                print(f"error: {exc}\nresults so far are in {args.output}; run again to resume", file=sys.stderr)
            return 1
    if interrupted:
        print(f"\ninterrupted: results so far are in {args.output}; run the same command again to resume",
              file=sys.stderr)
        return 130
    assert report is not None   # started, not interrupted, no error: the batch ran to its end
    print(report.summary(), file=sys.stderr)
    return 2 if report.input_errors or report.rejected else 0


def cmd_health(args) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(args.target) as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(  # pyright: ignore[reportAttributeAccessIssue]
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"{args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"{args.target}: {name}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def cmd_info(args) -> int:
    """What the server says about itself (GetInfo), as JSON."""
    import json

    import grpc
    from google.protobuf.json_format import MessageToDict

    from executor.v1 import executor_pb2 as pb
    from executor.v1 import executor_pb2_grpc as pb_grpc

    token = args.token or os.environ.get("SELFALIGN_EXECUTOR_TOKEN")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        with grpc.insecure_channel(args.target) as channel:
            info = pb_grpc.ExecutorStub(channel).GetInfo(pb.GetInfoRequest(), timeout=args.timeout,
                                                         metadata=metadata)
    except grpc.RpcError as exc:
        print(f"{args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(json.dumps(MessageToDict(info, always_print_fields_with_no_presence=True), indent=2))
    return 0 if info.serving else 1


def cmd_build_image(args) -> int:
    import docker

    from executor.image import ensure_image

    tag = ensure_image(docker.from_env(timeout=600), args.base, args.profile)
    print(tag)
    return 0


def cmd_bench(args) -> int:
    from executor.bench import main as bench_main

    return bench_main(args)


def main(argv: list[str] | None = None) -> int:
    parser, sub = make_parser("python -m executor", __doc__, "WARNING")

    p = sub.add_parser("serve", help="run the gRPC executor service")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this HTTP port (default: off)")
    p.add_argument("--http-port", type=int, default=None,
                   help="also serve the HTTP/JSON API (POST /v1/execute, GET /v1/info) on this port")
    p.add_argument("--max-streams", type=int, default=64,
                   help="open streams per client (its token, or its address); more get RESOURCE_EXHAUSTED")
    p.add_argument("--max-total-streams", type=int, default=256,
                   help="open streams in all; health checks and unary calls are never refused for them")
    p.add_argument("--stream-idle-timeout", type=float, default=300.0,
                   help="close a stream with nothing running or arriving for this many seconds")
    p.add_argument("--instance", default=None,
                   help="name whose leftover containers this server removes on start "
                        "(default: server-PORT)")
    p.add_argument("--token", default=None,
                   help="require 'authorization: Bearer TOKEN' on every call but health "
                        "(or set SELFALIGN_EXECUTOR_TOKEN)")
    p.add_argument("--tls-cert", default=None, help="server certificate (PEM) for TLS")
    p.add_argument("--tls-key", default=None, help="server private key (PEM) for TLS")
    p.add_argument("--tls-client-ca", default=None, help="CA (PEM) that client certificates must chain to (mutual TLS)")
    _add_server_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("run-batch", help="execute a JSONL file of programs")
    p.add_argument("input", type=Path)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--target", action="append", default=[],
                   help="HOST:PORT of an executor; repeat for several (default: embedded executor)")
    p.add_argument("--concurrency", type=int, default=64, help="programs in flight (default 64)")
    p.add_argument("--cache", default=None, help="on-disk result cache (SQLite file)")
    p.add_argument("--token", default=None)
    p.add_argument("--no-progress", action="store_true")
    from executor.cli import add_dataclass_options
    from executor.client import ClientConfig

    add_dataclass_options(p, ClientConfig, CLIENT_HELP, only=tuple(CLIENT_HELP))
    _add_server_options(p)
    p.set_defaults(func=cmd_run_batch)

    p = sub.add_parser("health", help="check a server's gRPC health (exit 0 when SERVING)")
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--service", default="", help="service name (default: the whole server)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("info", help="print the server's GetInfo as JSON (exit 0 when serving)")
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--token", default=None, help="bearer token (default: $SELFALIGN_EXECUTOR_TOKEN)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("build-image", help="build the sandbox image (offline or from a registry)")
    p.add_argument("--base", default=None, help="'offline' or a base image (default: auto)")
    p.add_argument("--profile", choices=("default", "ds1000"), default="default",
                   help="ds1000: the sandbox image plus DS-1000's libraries")
    p.set_defaults(func=cmd_build_image)

    p = sub.add_parser("bench", help="throughput benchmark on HumanEval programs")
    p.add_argument("--runners", default="original,fork,floor,subprocess,docker-run,pooled,fresh,large-output",
                   help="comma-separated runners to compare, in this order each round")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every runner; with more than one, a min/median summary of the "
                        "ratios, each taken within its round")
    p.add_argument("--limit", type=int, default=None, help="use only this many problems")
    p.add_argument("--docker-run-limit", type=int, default=40,
                   help="programs for the slow docker-run runner (default 40)")
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    p.add_argument("--pool-size", type=int, default=os.cpu_count() or 1)
    p.add_argument("--window", type=int, default=MAX_IN_FLIGHT,
                   help="programs the executor's runners keep in flight (execute_many's max_in_flight; "
                        f"default {MAX_IN_FLIGHT}, the client's own)")
    p.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    p.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    configure_logging(args)
    try:
        return args.func(args)
    except BrokenPipeError:
        return stop_on_closed_stdout()


if __name__ == "__main__":
    sys.exit(main())
