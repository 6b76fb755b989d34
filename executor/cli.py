"""Conventions the three command lines share (`selfalign-executor`, `selfalign-generate`,
`selfalign-train`): every flag shows its default in `--help`, `--version` works, and
`--log-level` is accepted before or after the subcommand."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing

from executor import __version__

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Help for the flags the commands share, so none is left without a line in --help.
COMMON_HELP = {
    "--input": "the input file (JSONL)",
    "input": "the input file (JSONL)",
    "--output": "where the result goes (written as it is made; run again to resume)",
    "--no-progress": "no progress bars (for logs)",
    "--seed": "the run seed (default: the config's)",
    "--num-proc": "processes for CPU-bound steps (default: the config's)",
    "--timeout": "seconds",
    "--target": "the executor's HOST:PORT",
    "--token": "bearer token (default: $SELFALIGN_EXECUTOR_TOKEN)",
    "--concurrency": "programs in flight at once",
    "--executor": "an executor HOST:PORT, repeatable (default: an embedded one)",
    "--benchmark-file": "a benchmark file in its published format, repeatable (MBPP, HumanEval+, ...)",
    "--model": "a model folder or hub name",
    "--tokenizer": "a tokenizer folder or hub name (default: the model's)",
    "--max-length": "tokens per example, prompt included",
    "--port": "the gRPC port",
    "--pool-size": "sandboxes kept warm",
    "--max-timeout": "the largest wall-time limit a request may ask for (s)",
    "--max-memory": "the largest memory limit a request may ask for (MiB)",
    "config": "the pipeline's TOML config",
    "dir": "the folder to write it to",
    "--dedup-threshold": "MinHash Jaccard threshold for seeds",
    "--threshold": "MinHash Jaccard threshold",
    "--dataset-dir": "the dataset folder (default: beside the output)",
    "--dedup": "also exact and near-duplicate removal",
    "--no-decontaminate": "skip decontamination",
    "--benchmark": "which benchmark",
    "--n-samples": "samples per problem (pass@k for every k up to it)",
    "--max-new-tokens": "tokens generated per sample",
    "--vocab-size": "tokenizer vocabulary size",
    "--hidden-size": "model width",
    "--layers": "transformer layers",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and descriptions (module docstrings) kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text   # said already, or nothing worth saying
        return super()._get_help_string(action)


def make_parser(prog: str, description: str | None,
                default_level: str) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"selfalign {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("SELFALIGN_LOG_LEVEL", default_level),
                        help="DEBUG, INFO, WARNING or ERROR (or $SELFALIGN_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    original = sub.add_parser

    def add_parser(name, **kwargs):
        p = original(name, formatter_class=HelpFormatter, **kwargs)
        p.add_argument("--log-level", default=argparse.SUPPRESS, help="as before the subcommand")
        add_argument = p.add_argument

        def add_argument_with_help(*flags, **options):
            if "help" not in options:
                options["help"] = COMMON_HELP.get(flags[0], "")
            return add_argument(*flags, **options)

        p.add_argument = add_argument_with_help  # type: ignore[method-assign]
        return p

    sub.add_parser = add_parser  # type: ignore[method-assign]
    return parser, sub


def configure_logging(args) -> None:
    logging.basicConfig(level=str(args.log_level).upper(), format=FORMAT)


def stop_on_closed_stdout() -> int:
    """The reader of our output went away (`... | head`): stop quietly, as `cat` does, with the
    shell's code for SIGPIPE. stdout goes to /dev/null first, or the interpreter's own flush at
    exit would fail again and print a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def run_command(args, on_executor_error: str = "run the same command again to resume") -> int:
    """Run the chosen subcommand; a user's mistake or an unreachable executor is one line on
    stderr and a non-zero exit, never a traceback."""
    from executor.client import ExecutorError
    from generator.backends import BackendError  # the wheel always holds the generator

    configure_logging(args)
    try:
        return args.func(args)
    except BrokenPipeError:
        return stop_on_closed_stdout()
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
    except BackendError as exc:
        print(f"error: {exc}; what was generated is saved: run the same command again to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130


def add_dataclass_options(parser: argparse.ArgumentParser, cls, helps: dict[str, str],
                          aliases: dict[str, str] | None = None, only: tuple[str, ...] | None = None) -> None:
    """One flag per field of `cls` (or of the fields named in `only`), its default and type taken
    from the dataclass itself (never repeated by hand). Flags not given are absent from the
    parsed namespace, so a config file can fill them (`options_from`)."""
    hints = typing.get_type_hints(cls)
    aliases = aliases or {}
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        names = [f"--{f.name.replace('_', '-')}"] + ([aliases[f.name]] if f.name in aliases else [])
        default = f.default if f.default is not dataclasses.MISSING else None
        text = helps.get(f.name, "") + (f" (default: {default})" if default is not None else " (required)")
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(*names, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                                help=helps.get(f.name, ""))
            continue
        kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        parser.add_argument(*names, dest=f.name, type=kind, default=argparse.SUPPRESS, help=text)


def options_from(cls, args, config_file: str | None = None):
    """An instance of `cls` from a YAML or JSON file, overridden by the flags given."""
    values: dict = {}
    if config_file:
        text = open(config_file, encoding="utf-8").read()
        if config_file.endswith((".yaml", ".yml")):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"{config_file}: expected a mapping of option names to values")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{config_file}: unknown options {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(names))})")
    values.update({k: v for k, v in vars(args).items() if k in names})
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"missing required options: {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return cls(**values)
