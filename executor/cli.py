"""Conventions the three command lines share (`selfalign-executor`, `selfalign-generate`,
`selfalign-train`): every flag shows its default in `--help`, `--version` works, and
`--log-level` is accepted before or after the subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from executor import __version__

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and descriptions (module docstrings) kept as written."""


def make_parser(prog: str, description: str | None, default_level: str) -> tuple[argparse.ArgumentParser, object]:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"selfalign {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("SELFALIGN_LOG_LEVEL", default_level),
                        help="DEBUG, INFO, WARNING or ERROR (or $SELFALIGN_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    original = sub.add_parser

    def add_parser(name, **kwargs):
        p = original(name, formatter_class=HelpFormatter, **kwargs)
        p.add_argument("--log-level", default=argparse.SUPPRESS, help="as before the subcommand")
        return p

    sub.add_parser = add_parser
    return parser, sub


def configure_logging(args) -> None:
    logging.basicConfig(level=str(args.log_level).upper(), format=FORMAT)


def run_command(args, on_executor_error: str = "run the same command again to resume") -> int:
    """Run the chosen subcommand; a user's mistake or an unreachable executor is one line on
    stderr and a non-zero exit, never a traceback."""
    from executor.client import ExecutorError

    configure_logging(args)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # e.g. a model that is neither a local folder nor on a reachable hub
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {first}", file=sys.stderr)
        return 2
    except ExecutorError as exc:
        print(f"error: {exc}; {on_executor_error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
