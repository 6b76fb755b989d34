"""Command line: `python -m generator <stage> ...` for one step, `python -m generator run CONFIG
[section.key=value ...]` for the whole pipeline. Every step reads and writes JSONL and can be resumed after a crash."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from executor.cli import make_parser, run_command
from generator.pipeline import STAGES, Pipeline, PipelineConfig, seeds_steps
from generator.resources import Resources
from generator.rows import JsonlRows
from generator.runner import Input, run_stages
from generator.stage import WHOLE_INPUT
from generator.stages.export import Export, push_to_hub
from generator.stages.seeds import seeds_input

ALLOW_EMPTY_HELP = "go on after a stage that kept nothing (by default the run stops there, naming it)"
OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+=")


def _config(args) -> PipelineConfig:
    """The config file (if any), then the `section.key=value` overrides, then the step's flags
    (each one a named override, kept for the commands people already use)."""
    flags = list(args.overrides)
    for value, key in [(getattr(args, "seed", None), "run.seed"), (getattr(args, "num_proc", None), "run.num_proc"),
                       (getattr(args, "dir", None), "run.dir"), (getattr(args, "ray", None), "cluster.ray"),
                       (getattr(args, "ray_workers", None), "cluster.workers"),
                       (getattr(args, "timeout", None), "execute.timeout_s"),
                       (getattr(args, "concurrency", None), "execute.concurrency"),
                       (getattr(args, "threshold", None), "dedup.threshold"),
                       (getattr(args, "dedup_threshold", None), "seeds.dedup_threshold"),
                       (getattr(args, "source", None), "seeds.source")]:
        if value is not None:
            flags.append(f"{key}={json.dumps(value)}")
    if getattr(args, "executor", None):
        flags.append(f"execute.executor={json.dumps([t for item in args.executor for t in item.split(',') if t])}")
    if getattr(args, "benchmark_file", None):
        flags.append(f"benchmarks.files={json.dumps(args.benchmark_file)}")
    if args.no_progress:
        flags.append("run.progress=false")
    if getattr(args, "allow_empty", False):
        flags.append("run.allow_empty=true")
    return PipelineConfig.load(getattr(args, "config", None), flags)


def cmd_run(args) -> int:
    cfg = _config(args)
    stats = Pipeline(cfg).run(until=args.until)
    for s in stats:
        d = s.to_dict()
        print(f"{d['stage']:<16} in {d['rows_in']:>8}  kept {d['kept']:>8}  dropped {d['dropped_total']:>8}"
              f"  {d['seconds']:>8.1f} s  ({d['unit']})", file=sys.stderr)
    print(f"run directory: {cfg.dir} (stats.json, funnel.png, dataset/)", file=sys.stderr)
    return 0


def cmd_seeds(args) -> int:
    cfg = _config(args)
    for s in run_stages(seeds_steps(cfg, args.output), seeds_input(cfg.seeds.source), Resources.of(cfg),
                        allow_empty=cfg.allow_empty):
        print(json.dumps(s.to_dict()), file=sys.stderr)
    return 0


def cmd_stage(args) -> int:
    from generator.stages import REGISTRY

    if args.command in ("concepts", "instructions", "responses") and not args.config:
        print("error: generation steps need --config with a [backend] section", file=sys.stderr)
        return 2
    cfg = _config(args)
    if args.command == "export":
        cfg.dir = str(args.dataset_dir.parent) if args.dataset_dir else str(args.output.parent)
    stage = REGISTRY[args.command].from_config(cfg, args.output)
    if isinstance(stage, Export) and args.dataset_dir:
        stage.dataset_dir = args.dataset_dir
    # Every row's id is checked as it is read. A filter reads its input as it goes (and copies
    # the kept rows' bytes); any other step reads it all first, so a bad row stops it before
    # anything costly (a model call) is spent on the rows before it.
    source = JsonlRows(args.input, require_ids=True)
    step = Input(source if stage.keeps_rows_as_read and not args.shard else list(source), source.fingerprint)
    if args.shard:
        if stage.batch_size == WHOLE_INPUT:
            raise ValueError(f"{args.command} needs its whole input at once (it compares rows with each other): "
                             "run it without --shard, on the merged shards")
        index, count = _shard(args.shard)
        step = Input([r for i, r in enumerate(step.rows) if i % count == index],
                     f"{source.fingerprint}:shard{index}/{count}")
    (stats,) = run_stages([stage], step, Resources.of(cfg), allow_empty=cfg.allow_empty)
    print(json.dumps(stats.to_dict()), file=sys.stderr)
    if isinstance(stage, Export) and args.push_to_hub:
        print(f"pushed to {push_to_hub(stage.dataset_dir, args.push_to_hub)}", file=sys.stderr)
    return 0


def cmd_import_released(args) -> int:
    """The authors' released responses as this pipeline's execute-stage input, so they can be
    filtered again through the sandboxed executor and every step after it."""
    from generator.released import import_released

    report = import_released(args.input, args.output)
    if report.unknown_columns:
        print(f"not in the released schemas, not kept: {', '.join(report.unknown_columns)}", file=sys.stderr)
    print(f"{report.rows} rows, {report.instructions} instructions written to {args.output}; next: "
          f"python -m generator execute --input {args.output} --output OUT.jsonl", file=sys.stderr)
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N, like 0/4, not {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: K must be in [0, N)")
    return index, count


def main(argv: list[str] | None = None) -> int:
    parser, sub = make_parser("python -m generator", __doc__, "WARNING")

    def common(p, needs_input=True):
        if needs_input:
            p.add_argument("--input", type=Path, required=True)
        p.add_argument("--output", type=Path, required=True)
        p.add_argument("--config", type=Path, default=None, help="pipeline TOML (backend and stage settings)")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--num-proc", type=int, default=None, help="processes for CPU-bound steps")
        p.add_argument("--no-progress", action="store_true")
        p.add_argument("--allow-empty", action="store_true", help=ALLOW_EMPTY_HELP)
        p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                       help="config overrides, e.g. responses.temperature=0.8 dedup.threshold=0.8")

    p = sub.add_parser("run", help="run the whole pipeline from a TOML config")
    p.add_argument("config", type=Path)
    p.add_argument("--dir", default=None, help="run directory (overrides [run] dir)")
    p.add_argument("--until", choices=STAGES, default=None, help="stop after this stage")
    p.add_argument("--ray", default=None, metavar="auto|local|HOST:PORT",
                   help="run the generation steps on a Ray cluster (overrides [cluster] ray)")
    p.add_argument("--ray-workers", type=int, default=None,
                   help="generation workers on the cluster (default: one per GPU)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-proc", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-empty", action="store_true", help=ALLOW_EMPTY_HELP)
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                   help="config overrides, e.g. responses.temperature=0.8 dedup.threshold=0.8 (anywhere on the line)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("seeds", help="S: extract seed functions from code")
    p.add_argument("--source", required=True, help="folder, .py/.jsonl/.parquet file, or HF dataset name")
    p.add_argument("--benchmark-file", action="append", default=[], help="extra benchmark (JSONL/JSON)")
    p.add_argument("--dedup-threshold", type=float, default=None)
    common(p, needs_input=False)
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("import-released", help="the authors' released responses (responses-unfiltered, "
                       "exec-filter-500k-raw) as execute-stage input")
    p.add_argument("--input", type=Path, required=True, help="their JSONL or Parquet file")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_import_released)

    for name, help_text in [("concepts", "S->C"), ("instructions", "C->I"), ("responses", "I->R"),
                            ("execute", "run responses' tests in the executor, keep passing"),
                            ("check_format", "keep responses in the four-part format, cut what follows the tests"),
                            ("select", "one passing response per instruction, unseen response and names"),
                            ("dedup", "exact and MinHash near-dedup"),
                            ("rewrite", "vary the training targets; add assertions to some instructions"),
                            ("decontaminate", "drop rows containing benchmark problems or solutions"),
                            ("export", "write the SFT dataset (JSONL + datasets on disk)")]:
        p = sub.add_parser(name, help=help_text)
        common(p)
        p.add_argument("--shard", default=None,
                       help="K/N: process only rows K, K+N, K+2N... (one process per GPU or node)")
        if name == "execute":
            p.add_argument("--executor", action="append", default=[], help="HOST:PORT (default: embedded)")
            p.add_argument("--timeout", type=float, default=None)
            p.add_argument("--concurrency", type=int, default=None)
        if name == "dedup":
            p.add_argument("--threshold", type=float, default=None)
        if name == "decontaminate":
            p.add_argument("--benchmark-file", action="append", default=[])
        if name == "export":
            p.add_argument("--dataset-dir", type=Path, default=None)
            p.add_argument("--push-to-hub", default=None, metavar="REPO",
                           help="also upload the dataset folder to this Hugging Face dataset repo")
        p.set_defaults(func=cmd_stage)

    # Overrides may come after flags too (`run CONFIG --seed 3 a.b=1`): argparse leaves those over.
    args, extra = parser.parse_known_args(argv)
    stray = [token for token in extra if not OVERRIDE.match(token)]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"{args.command} takes no SECTION.KEY=VALUE overrides: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    return run_command(args)

if __name__ == "__main__":
    sys.exit(main())
