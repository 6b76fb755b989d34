"""The model card's nine numbers from one command, and the LiveCodeBench and DS-1000 evals
that `trainer eval` runs.

Each benchmark keeps the card's settings as its defaults (`CARD`): the sampling the authors
used, the numbers the card reports. Generated samples are saved beside the output as they are
made, with the settings that made them (`samples_meta`), and a run started again generates only
what is missing; samples made another way are refused, never scored as this run's.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CardRow:
    key: str               # how `--suite card` names it
    benchmark: str         # `trainer eval --benchmark`
    scenario: str          # LiveCodeBench's scenario, else ""
    metric: str            # where the number is in the result: "pass@1" or "plus.pass@1"
    card: float            # the model card's number
    n_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int


CARD = (
    CardRow("humaneval", "humaneval+", "", "base.pass@1", 72.6, 1, 0.0, 1.0, 512),
    CardRow("humaneval+", "humaneval+", "", "plus.pass@1", 63.4, 1, 0.0, 1.0, 512),
    CardRow("mbpp", "mbpp+", "", "base.pass@1", 75.2, 1, 0.0, 1.0, 512),
    CardRow("mbpp+", "mbpp+", "", "plus.pass@1", 61.2, 1, 0.0, 1.0, 512),
    CardRow("lcb-codegeneration", "livecodebench", "codegeneration", "pass@1", 20.4, 10, 0.2, 0.95, 1200),
    CardRow("lcb-selfrepair", "livecodebench", "selfrepair", "pass@1", 20.9, 10, 0.2, 0.95, 1200),
    CardRow("lcb-testoutputprediction", "livecodebench", "testoutputprediction", "pass@1", 29.8, 10, 0.2, 0.95, 1200),
    CardRow("lcb-codeexecution", "livecodebench", "codeexecution", "pass@1", 28.1, 10, 0.2, 0.95, 1200),
    CardRow("ds1000", "ds1000", "", "pass@1", 40.6, 40, 0.2, 0.95, 1024),
)


def card_defaults(benchmark: str, scenario: str = "") -> CardRow | None:
    for row in CARD:
        if row.benchmark == benchmark and row.scenario == scenario:
            return row
    return None


def metric_of(result: dict, metric: str) -> float | None:
    value = result
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None


# -- generation with resume ---------------------------------------------------------------------

def raw_completions(path: str) -> dict[str, list[str]]:
    """Rows {"task_id", "completion"}, several per task for n > 1, in order."""
    from trainer.evaluate import read_samples

    return {task: [s.text for s in rows] for task, rows in read_samples(path).items()}


def _append(path: Path, made: dict[str, list[str]]) -> None:
    with open(path, "a") as f:
        for task_id, texts in made.items():
            for text in texts:
                f.write(json.dumps({"task_id": task_id, "completion": text}) + "\n")


def _saved(path: Path) -> dict[str, list[str]]:
    """The samples a run saved; a last line cut short by a crash is dropped (its task is made
    again), any other bad line is an error."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    samples: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
            samples.setdefault(str(row["task_id"]), []).append(str(row["completion"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: expected {{\"task_id\", \"completion\"}}: {exc}") from None
    return samples


def generate_resumable(path: Path, settings: dict, tasks: list, wanted: dict[str, int], make_engine, generate,
                       chunk: int) -> dict[str, list[str]]:
    """Samples for `tasks` (objects with `task_id`), `wanted[task_id]` each, saved to `path` as
    they are made; those already there (made with the same `settings`) are kept."""
    from trainer.evaluate import check_samples_file, samples_meta

    check_samples_file(path, settings)
    done = _saved(path)
    todo = [t for t in tasks if len(done.get(t.task_id, [])) < wanted[t.task_id]]
    for t in todo:   # a task cut short is made again whole: its samples come from one request
        done.pop(t.task_id, None)
    if done and len(todo) < len(tasks):
        print(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} tasks already have samples in {path}, made by "
              f"{settings['model']}", file=sys.stderr)
    if todo:
        kept = {t.task_id: done[t.task_id] for t in tasks if t.task_id in done}
        tmp = path.with_name(path.name + ".tmp")   # rewritten whole, then swapped in: nothing kept is lost
        tmp.write_text("")
        _append(tmp, kept)
        tmp.replace(path)
        engine = make_engine()
        if getattr(engine, "dtype", None):
            settings["dtype"] = engine.dtype
        samples_meta(path).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            made = generate(engine, part)
            _append(path, made)
            done.update(made)
            print(f"generated {min(start + len(part), len(todo))}/{len(todo)} tasks", file=sys.stderr)
    return {t.task_id: done[t.task_id][:wanted[t.task_id]] for t in tasks}


# -- LiveCodeBench --------------------------------------------------------------------------------

def eval_livecodebench(args, engine_holder: dict | None = None) -> dict:
    """`trainer eval --benchmark livecodebench`: one scenario, scored; self repair without
    `--codegen-results` runs code generation first (its result is written beside the output)."""
    from benchmarks.livecodebench import load
    from executor.embedded import connect
    from trainer import livecodebench as lcb

    scenario = args.scenario or "codegeneration"
    bench = load(scenario, args.release, args.data_file, args.start_date, args.end_date, args.data_revision)
    if args.limit:
        bench.problems[:] = bench.problems[: args.limit]
    if not bench.problems:
        raise ValueError(f"LiveCodeBench {scenario}: no problems in {bench.source} for this release and window")
    targets = [t for item in args.executor for t in item.split(",") if t]
    row = card_defaults("livecodebench", scenario)
    assert row is not None
    n, temperature, top_p, max_new_tokens = _sampling(args, row)
    from executor.embedded import check_executor

    check_executor(targets)   # before any generation: an executor that is down costs seconds, not the run
    if not (args.completions or args.model):
        raise ValueError("give --model or --completions")
    engine_holder = engine_holder if engine_holder is not None else {}   # one model load for both steps
    codegen = _codegen_results(args, engine_holder) if scenario == "selfrepair" and not args.completions else None
    wanted = {p.task_id: n for p in bench.problems}
    if codegen is not None:   # one repair per code-generation sample
        wanted = {p.task_id: sum(r["task_id"] == p.task_id for r in codegen["samples"]) for p in bench.problems}

    def generate(eng, part):
        return lcb.generate(bench, eng, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            codegen=codegen, problems=part)

    samples, settings = _samples(args, bench, "lcb-StarCoderInstruct", (n, temperature, top_p, max_new_tokens),
                                 wanted, generate, engine_holder,
                                 {"codegen_results": codegen["_digest"]} if codegen else None)
    with connect(targets) as client:
        result = lcb.score(bench, samples, client, progress=not args.no_progress)
    return {**result, "generation": settings} if settings else result


def _samples(args, bench, prompt_style: str, sampling: tuple, wanted: dict[str, int], generate,
             engine_holder: dict | None, extra: dict | None = None) -> tuple[dict, dict | None]:
    """(samples per task, the settings that made them): `--completions` as given, or generated
    with `--model` (resumably) and the settings recorded."""
    if args.completions:
        return _given_completions(args, bench.problems), None
    if not args.model:
        raise ValueError("give --model or --completions")
    settings = {**_settings(args, bench, prompt_style, *sampling), **(extra or {})}
    samples = generate_resumable(_samples_path(args), settings, bench.problems, wanted,
                                 _engine_factory(args, engine_holder), generate, args.generation_chunk)
    return samples, settings


def _sampling(args, row: CardRow) -> tuple[int, float, float, int]:
    """(n, temperature, top_p, max new tokens): the card's, unless given."""
    return (args.n_samples or row.n_samples, row.temperature if args.temperature is None else args.temperature,
            row.top_p if args.top_p is None else args.top_p, args.max_new_tokens or row.max_new_tokens)


def _given_completions(args, problems: list) -> dict[str, list[str]]:
    """`--completions`, only the problems kept under `--limit`."""
    samples = raw_completions(args.completions)
    if args.limit:
        wanted = {p.task_id for p in problems}
        samples = {k: v for k, v in samples.items() if k in wanted}
    return samples


def _codegen_results(args, engine_holder: dict) -> dict:
    """The code-generation results self repair starts from: `--codegen-results`, or made now."""
    import copy
    import hashlib

    path = Path(args.codegen_results) if args.codegen_results else \
        Path(str(Path(args.output).with_suffix("")) + ".codegeneration.json")
    if not args.codegen_results and not path.exists():
        print(f"self repair: running code generation first ({path})", file=sys.stderr)
        sub = copy.copy(args)
        sub.scenario, sub.output, sub.save_completions = "codegeneration", str(path), None
        result = eval_livecodebench(sub, engine_holder)
        path.write_text(json.dumps(result, indent=2) + "\n")
    if not path.exists():
        raise FileNotFoundError(f"--codegen-results {path}: no such file")
    result = json.loads(path.read_text())
    if result.get("scenario") != "codegeneration" or "samples" not in result:
        raise ValueError(f"{path} is not a LiveCodeBench code-generation result "
                         "(trainer eval --scenario codegeneration)")
    result["_digest"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return result


def _samples_path(args) -> Path:
    return Path(args.save_completions or str(Path(args.output).with_suffix("")) + ".samples.jsonl")


def _settings(args, bench, prompt_style: str, n: int, temperature: float, top_p: float, max_new_tokens: int) -> dict:
    """The EvalPlus settings record (trainer.evaluate.generation_settings), with top_p."""
    from trainer.evaluate import generation_settings, resolve_backend

    return {**generation_settings(args.model, resolve_backend(args.backend)[0], n, temperature, max_new_tokens,
                                  prompt_style, bench, options=_options(args)), "top_p": top_p}


def _options(args) -> dict:
    from trainer.__main__ import engine_args

    options = engine_args(args.engine_arg)
    if args.base_url:
        options["base_url"] = args.base_url
    return options


def _engine_factory(args, holder: dict | None):
    """A function that makes the backend once (and, in a suite, once for all benchmarks)."""
    from trainer.evaluate import make_engine, resolve_backend

    holder = holder if holder is not None else {}

    def make():
        if "engine" not in holder:
            backend = resolve_backend(args.backend)[0]
            if backend == "openai" and args.base_url:
                from generator.backends.openai import check_server

                check_server(args.base_url)
            holder["engine"] = make_engine(args.model, backend, _options(args))
        return holder["engine"]
    return make


# -- DS-1000 ------------------------------------------------------------------------------------------

def eval_ds1000(args, engine_holder: dict | None = None) -> dict:
    """`trainer eval --benchmark ds1000`."""
    from benchmarks.ds1000 import load
    from executor.embedded import check_executor, connect
    from trainer import ds1000

    bench = load(args.data_file, args.data_revision)
    if args.limit:
        bench.problems[:] = bench.problems[: args.limit]
    targets = [t for item in args.executor for t in item.split(",") if t]
    check_executor(targets)
    row = card_defaults("ds1000")
    assert row is not None
    n, temperature, top_p, max_new_tokens = _sampling(args, row)

    def generate(eng, part):
        return ds1000.generate(bench, eng, part, n=n, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens)

    samples, settings = _samples(args, bench, "ds1000-completion", (n, temperature, top_p, max_new_tokens),
                                 {p.task_id: n for p in bench.problems}, generate, engine_holder)
    from executor.server import ServerConfig

    # Embedded: the data-science profile (built the first time); a remote executor runs what it
    # was started with, and problems whose library it lacks are skipped and listed.
    with connect(targets, server_config=ServerConfig(port=0, instance=None, sandbox_profile="ds1000")) as client:
        result = ds1000.score(bench, samples, client, progress=not args.no_progress)
    return {**result, "generation": settings} if settings else result


# -- the card -------------------------------------------------------------------------------------------

def _find(data_dir: Path | None, patterns: tuple[str, ...]) -> str | None:
    if data_dir is None:
        return None
    for pattern in patterns:
        found = sorted(data_dir.glob(pattern))
        if found:
            return str(found[0])
    return None


SUITE_FILES = {
    "humaneval+": ("HumanEvalPlus*.jsonl*", "humaneval+*.jsonl*"),
    "mbpp+": ("MbppPlus*.jsonl*", "mbpp+*.jsonl*"),
    "codegeneration": ("livecodebench-codegeneration*.jsonl", "code_generation*.jsonl", "test.jsonl"),
    "selfrepair": ("livecodebench-codegeneration*.jsonl", "code_generation*.jsonl", "test.jsonl"),
    "testoutputprediction": ("livecodebench-testoutputprediction*", "test_generation*"),
    "codeexecution": ("livecodebench-codeexecution*", "execution*"),
    "ds1000": ("ds1000*.jsonl*", "DS-1000*.jsonl*"),
}


def run_suite(args) -> int:
    """All nine, each with the card's settings; each benchmark's result is kept beside the
    output (`OUTPUT-without-suffix.KEY.json`) and reused when the suite is run again. Given
    flags (--n-samples, --temperature, --top-p, --max-new-tokens) replace the card's settings for
    the sampled benchmarks (LiveCodeBench, DS-1000); EvalPlus stays greedy with one sample."""
    import contextlib
    import copy

    from trainer.__main__ import cmd_eval
    from trainer.evaluate import model_id

    if not (args.model or args.completions is None):
        raise ValueError("--suite card takes --model (completions are per benchmark: use --benchmark)")
    if not args.model:
        raise ValueError("--suite card needs --model")
    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir}: no such folder")
    stem = str(Path(args.output).with_suffix(""))
    holder: dict = {}
    results: dict[str, dict] = {}
    runs = [("humaneval+", "humaneval+", ""), ("mbpp+", "mbpp+", ""),
            ("lcb-codegeneration", "livecodebench", "codegeneration"),
            ("lcb-selfrepair", "livecodebench", "selfrepair"),
            ("lcb-testoutputprediction", "livecodebench", "testoutputprediction"),
            ("lcb-codeexecution", "livecodebench", "codeexecution"), ("ds1000", "ds1000", "")]
    for key, benchmark, scenario in runs:
        path = Path(f"{stem}.{key}.json")
        if path.exists():
            done = json.loads(path.read_text())
            if done.get("generation", {}).get("model") == model_id(args.model):
                print(f"card: {key} already scored ({path})", file=sys.stderr)
                results[key] = done
                continue
        row = card_defaults(benchmark, scenario) if benchmark in ("livecodebench", "ds1000") else \
            next(r for r in CARD if r.benchmark == benchmark)
        assert row is not None
        sub = copy.copy(args)
        sub.suite, sub.benchmark, sub.scenario, sub.output = None, benchmark, scenario or None, str(path)
        sub.save_completions = None
        # EvalPlus is greedy with one sample (the card's); --n-samples sets the sampled ones' n.
        sub.n_samples = row.n_samples if row.n_samples == 1 else (args.n_samples or row.n_samples)
        sampled = row.n_samples > 1
        sub.temperature = args.temperature if sampled and args.temperature is not None else row.temperature
        sub.top_p = args.top_p if sampled and args.top_p is not None else row.top_p
        sub.max_new_tokens = args.max_new_tokens or row.max_new_tokens
        sub.data_file = _find(data_dir, SUITE_FILES[scenario or benchmark])
        if benchmark in ("humaneval+", "mbpp+") and sub.data_file is None:
            raise FileNotFoundError(f"--suite card: no {benchmark} file in --data-dir (EvalPlus's "
                                    f"{'HumanEvalPlus-v0.1.9' if benchmark == 'humaneval+' else 'MbppPlus-v0.1.0'}"
                                    ".jsonl.gz, the card's)")
        if scenario == "selfrepair":
            sub.codegen_results = f"{stem}.lcb-codegeneration.json"
        print(f"card: {key}", file=sys.stderr)
        if benchmark == "livecodebench":
            result = eval_livecodebench(sub, holder)
            path.write_text(json.dumps(result, indent=2) + "\n")
        elif benchmark == "ds1000":
            result = eval_ds1000(sub, holder)
            path.write_text(json.dumps(result, indent=2) + "\n")
        else:
            sub.prompt_style, sub.canonical, sub.completions = "original", None, None
            sub.top_p = None
            with contextlib.redirect_stdout(sys.stderr):   # stdout carries the card's table alone
                code = cmd_eval(sub)
            if code:
                return code
            result = json.loads(path.read_text())
        results[key] = result
    table = []
    for row in CARD:
        run_key = {"humaneval": "humaneval+", "mbpp": "mbpp+"}.get(row.key, row.key)
        value = metric_of(results.get(run_key, {}), row.metric)
        ours = None if value is None else round(100 * value, 1)
        table.append({"benchmark": row.key, "ours": ours, "card": row.card,
                      "difference": None if ours is None else round(ours - row.card, 1)})
    mbpp_tasks = results.get("mbpp+", {}).get("problems")
    notes = []
    if mbpp_tasks is not None and mbpp_tasks != 399:
        notes.append(f"MBPP+ has {mbpp_tasks} tasks here; the card's MBPP numbers are over MBPP+ v0.1.0's 399")
    skipped = results.get("ds1000", {}).get("skipped") or {}
    if skipped:
        notes.append(f"DS-1000: {len(skipped)} problems skipped (their library is not in the executor's image)")
    summary = {"model": args.model, "table": table, "notes": notes,
               "results": {k: str(Path(f"{stem}.{k}.json")) for k in results}}
    Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'benchmark':<26}{'ours':>8}{'card':>8}{'diff':>8}")
    for t in table:
        ours = "-" if t["ours"] is None else f"{t['ours']:.1f}"
        diff = "-" if t["difference"] is None else f"{t['difference']:+.1f}"
        print(f"{t['benchmark']:<26}{ours:>8}{t['card']:>8.1f}{diff:>8}")
    for note in notes:
        print(f"note: {note}")
    return 0
