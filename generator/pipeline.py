"""The whole pipeline from one TOML file, into one run directory:

    seeds -> concepts -> instructions -> responses -> execute -> check_format -> select -> dedup
          -> rewrite -> decontaminate -> export

Each stage's output is `NN-stage.jsonl` in the run directory, with its rejects, side files and
checkpoint beside it. A stage's fingerprint covers its config, the assets it reads (prompt
examples, benchmark file contents) and the exact bytes of its input, so after a crash or a
config change only what is affected runs again. `stats.json` and `funnel.png` summarize the run.

The whole config is checked when it is loaded (unknown keys and wrong types name their section
and key), so a typo fails before any model is loaded. Stages that a profile switches off
(`enabled = false`) are skipped and their input passes on unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import tomllib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from generator.backends import Backend, BackendConfig, make_backend
from generator.cluster import GENERATION_STAGES, ClusterConfig
from generator.stage import Stage, StageStats, file_fingerprint, read_jsonl
from generator.stages.dedup import DedupConfig
from generator.stages.generation import GenerationConfig
from generator.stages.instructions import InstructionsConfig
from generator.stages.sanitize import RewriteConfig
from generator.stages.select import SelectConfig

STAGES = ("seeds", "concepts", "instructions", "responses", "execute", "check_format", "select", "dedup",
          "rewrite", "decontaminate", "export")
OPTIONAL_STAGES = ("check_format", "dedup", "rewrite", "decontaminate")
log = logging.getLogger(__name__)


@dataclass
class BenchmarksConfig:
    builtin: list[str] = field(default_factory=lambda: ["humaneval"])
    files: list[str] = field(default_factory=list)   # MBPP, HumanEval+, MBPP+, GSM8K, DS-1000 files


@dataclass
class SeedsConfig:
    source: str = ""
    rules: str = "precise"       # "original": the original's substring rules for markers and imports
    dedup_threshold: float = 0.5
    max_lines: int = 150
    typecheck: bool = False      # drop seeds with Pyright errors
    judge: bool = False          # the base model judges docstring vs function
    judge_samples: int = 1       # votes per seed (majority keeps); 1 with greedy decoding is the original's
    judge_temperature: float = 0.0
    judge_max_new_tokens: int = 5
    judge_k: int = 6             # few-shot examples in the judge prompt


@dataclass
class ExecuteConfig:
    executor: list[str] = field(default_factory=list)   # empty: an embedded executor
    timeout_s: float | None = None
    memory_mb: int | None = None
    concurrency: int = 64
    pool_size: int | None = None
    drop_interactive_main: bool = True   # remove `if __name__ == "__main__":` blocks that read stdin


@dataclass
class StageSwitch:
    enabled: bool = True


@dataclass
class CheckFormatConfig(StageSwitch):
    pass


@dataclass
class PipelineDedupConfig(StageSwitch, DedupConfig):
    pass


@dataclass
class PipelineRewriteConfig(StageSwitch, RewriteConfig):
    pass


@dataclass
class DecontaminateConfig(StageSwitch):
    pass


@dataclass
class PipelineConfig:
    dir: str = "runs/default"
    seed: int = 0
    num_proc: int = 1
    progress: bool = True
    backend: BackendConfig = field(default_factory=BackendConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    concepts: GenerationConfig = field(default_factory=GenerationConfig)
    instructions: InstructionsConfig = field(default_factory=InstructionsConfig)
    responses: GenerationConfig = field(default_factory=lambda: GenerationConfig(k=1, n=10))
    execute: ExecuteConfig = field(default_factory=ExecuteConfig)
    check_format: CheckFormatConfig = field(default_factory=CheckFormatConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    dedup: PipelineDedupConfig = field(default_factory=PipelineDedupConfig)
    rewrite: PipelineRewriteConfig = field(default_factory=PipelineRewriteConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        try:
            data = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the config: {exc.strerror}") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict) -> PipelineConfig:
        data = dict(data)
        run = data.pop("run", {})
        sections = {f.name: f for f in fields(cls) if f.name not in ("dir", "seed", "num_proc", "progress")}
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown config sections: {', '.join(sorted(unknown))} "
                             f"(known: run, {', '.join(sections)})")
        cfg = _build(cls, run, "run", only=("dir", "seed", "num_proc", "progress"), base=cls())
        for name, value in data.items():
            if not isinstance(value, dict):
                raise ValueError(f"[{name}] must be a table")
            if name == "execute" and isinstance(value.get("executor"), str):
                value = {**value, "executor": [t.strip() for t in value["executor"].split(",") if t.strip()]}
            hints = typing.get_type_hints(cls)
            setattr(cfg, name, _build(hints[name], value, name, base=getattr(cfg, name)))
        return cfg


def _check_type(value, hint, where: str) -> None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                _check_type(value, option, where)
                return
            except ValueError as exc:
                errors.append(exc)
        raise errors[0]
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{where} must be empty")
        return
    base = origin or hint
    if base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base in (bool, str, list, dict, tuple):
        ok = isinstance(value, base)
    else:
        return
    if not ok:
        raise ValueError(f"{where} must be {getattr(base, '__name__', base)}, not {value!r}")
    if base is list:
        (item,) = typing.get_args(hint) or (None,)
        for i, v in enumerate(value):
            if item is not None:
                _check_type(v, item, f"{where}[{i}]")


def _build(cls, data: dict, section: str, only: tuple[str, ...] | None = None, base=None):
    """A config dataclass from a TOML table, over the defaults of `base` when given: unknown keys
    and wrong types are errors that name the section and the key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if only is None or f.name in only]
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"[{section}]: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(names)})")
    for key, value in data.items():
        _check_type(value, hints[key], f"[{section}] {key}")
    try:
        return dataclasses.replace(base, **data) if base is not None else cls(**data)
    except TypeError as exc:
        raise ValueError(f"[{section}]: {exc}") from None


@contextlib.contextmanager
def executor_client(cfg: ExecuteConfig, cache_path: str | None = None) -> Iterator:
    """A client for the configured executors, or for an embedded one started here. With a
    `cache_path`, every result is kept as it arrives, so a batch cut short (Ctrl-C, a crash)
    does not run its finished programs again."""
    from executor.embedded import connect

    with connect(cfg.executor, cfg.pool_size, cache_path=cache_path) as client:
        yield client


def run_stage(stage: Stage, rows: list[dict], input_fingerprint: str, execute: ExecuteConfig) -> StageStats:
    """Run one stage on its rows. The execute stage gets an executor client (remote, or an
    embedded executor started here) only when it has work left, so a finished run starts none."""
    from generator.stages.execute import Execute

    if isinstance(stage, Execute) and not stage.is_done(input_fingerprint):
        cache = stage.output.with_name(stage.output.stem + ".results.sqlite")
        with executor_client(execute, str(cache)) as client:
            stage.client = client
            return stage.run(rows, input_fingerprint, total=len(rows))
    return stage.run(rows, input_fingerprint, total=len(rows))


def assets_fingerprint() -> str:
    """A hash of the prompt assets the generation stages read (examples and preambles), so that
    editing them re-runs those stages instead of reusing their old output."""
    import hashlib
    from importlib import resources

    from generator.prompts import PREAMBLE
    from generator.stages.judge import PREAMBLE as JUDGE_PREAMBLE

    h = hashlib.sha256((resources.files("generator.prompts") / "examples.toml").read_bytes())
    h.update(json.dumps([PREAMBLE, JUDGE_PREAMBLE], sort_keys=True).encode())
    return h.hexdigest()[:16]


class Pipeline:
    def __init__(self, cfg: PipelineConfig, backend: Backend | None = None) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.cfg.backend)
        return self._backend

    def path(self, index: int, name: str) -> Path:
        return self.dir / f"{index:02d}-{name}.jsonl"

    def enabled(self, name: str) -> bool:
        return name not in OPTIONAL_STAGES or getattr(self.cfg, name).enabled

    def run(self, until: str | None = None) -> list[StageStats]:
        """Run (or resume) every enabled stage. The run directory gets `run.log` (appended to
        on every run) and `config.resolved.json` (the config with every default filled in)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.resolved.json").write_text(
            json.dumps(dataclasses.asdict(self.cfg), indent=2, sort_keys=True, default=str) + "\n")
        handler = logging.FileHandler(self.dir / "run.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root, ours = logging.getLogger(), logging.getLogger("generator")
        # run.log gets INFO; the console keeps the level it was given.
        console = [(h, h.level) for h in root.handlers]
        for h, _ in console:
            h.setLevel(max(h.level, root.getEffectiveLevel()))
        old_level = ours.level
        ours.setLevel(min(logging.INFO, root.getEffectiveLevel()))
        root.addHandler(handler)
        log.info("run started in %s", self.dir)
        try:
            return self._run(until)
        finally:
            log.info("run stopped")
            root.removeHandler(handler)
            handler.close()
            ours.setLevel(old_level)
            for h, level in console:
                h.setLevel(level)

    def _run(self, until: str | None) -> list[StageStats]:
        all_stats: list[StageStats] = []
        previous: Path | None = None
        for index, name in enumerate(STAGES, 1):
            if self.enabled(name):
                out = self.path(index, name)
                if name == "seeds":
                    judge_backend = self.backend if self.cfg.seeds.judge else None
                    all_stats += run_seeds(self.cfg, out, backend=judge_backend)
                elif name in GENERATION_STAGES and self.cfg.cluster.ray:
                    from generator.cluster import run_stage_on_ray

                    rows = list(read_jsonl(previous))
                    all_stats.append(run_stage_on_ray(self, name, out, rows, file_fingerprint(previous)))
                else:
                    rows = list(read_jsonl(previous))
                    stage = self.stage(name, out)
                    all_stats.append(run_stage(stage, rows, file_fingerprint(previous), self.cfg.execute))
                log.info("%s: %s", name, json.dumps(all_stats[-1].to_dict()))
                previous = out
                self.write_summary(all_stats)
                if name == "export":
                    from generator.stages.export import write_card

                    write_card(self.dir / "dataset", all_stats[-1].rows_out, dataclasses.asdict(self.cfg),
                               [s.to_dict() for s in all_stats])
            if until == name:
                break
        return all_stats

    def stage(self, name: str, out: Path) -> Stage:
        """The configured stage `name`, writing to `out`. Its fingerprint config holds every
        setting and asset that changes its output."""
        from generator.benchmarks import ContaminationIndex, benchmarks_fingerprint, load_benchmarks
        from generator.stages.concepts import Concepts
        from generator.stages.decontaminate import Decontaminate
        from generator.stages.dedup import Dedup
        from generator.stages.execute import Execute
        from generator.stages.export import Export
        from generator.stages.instructions import Instructions
        from generator.stages.responses import Responses
        from generator.stages.sanitize import CheckFormat, Rewrite, RewriteConfig
        from generator.stages.select import Select

        cfg, progress = self.cfg, self.cfg.progress
        gen_stages = {"concepts": Concepts, "instructions": Instructions, "responses": Responses}
        if name in gen_stages:
            gen = getattr(cfg, name)
            conf = {"section": vars(gen), "backend": vars(cfg.backend), "seed": cfg.seed,
                    "assets": assets_fingerprint()}
            return gen_stages[name](out, self.backend, gen, cfg.seed, conf, progress)
        if name == "execute":
            ex = cfg.execute
            return Execute(out, None, ex.timeout_s, ex.memory_mb, ex.concurrency,
                           {"timeout_s": ex.timeout_s, "memory_mb": ex.memory_mb,
                            "drop_interactive_main": ex.drop_interactive_main}, progress,
                           drop_interactive=ex.drop_interactive_main)
        if name == "check_format":
            return CheckFormat(out, {}, progress)
        if name == "select":
            return Select(out, cfg.select, vars(cfg.select), progress)
        if name == "dedup":
            dcfg = DedupConfig(**{k: v for k, v in vars(cfg.dedup).items() if k != "enabled"})
            dcfg.num_proc = max(dcfg.num_proc, cfg.num_proc)
            return Dedup(out, dcfg, {k: v for k, v in vars(dcfg).items() if k != "num_proc"}, progress)
        if name == "rewrite":
            rcfg = RewriteConfig(**{k: v for k, v in vars(cfg.rewrite).items() if k != "enabled"})
            return Rewrite(out, rcfg, vars(rcfg), progress)
        if name == "decontaminate":
            b = cfg.benchmarks
            index = ContaminationIndex(load_benchmarks(b.builtin, b.files))
            return Decontaminate(out, index, {"benchmarks": benchmarks_fingerprint(b.builtin, b.files)}, progress)
        if name == "export":
            return Export(out, self.dir / "dataset", {}, progress)
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")

    def write_summary(self, all_stats: list[StageStats]) -> None:
        summary = [s.to_dict() for s in all_stats]
        (self.dir / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
        funnel_chart(all_stats, self.dir / "funnel.png")


def run_seeds(cfg: PipelineConfig, out: Path, progress: bool | None = None,
              backend: Backend | None = None) -> list[StageStats]:
    """seeds = extract (filters), dedup, then the optional type check and model judge."""
    from generator.benchmarks import ContaminationIndex, benchmarks_fingerprint, load_benchmarks
    from generator.minhash import MinHashParams
    from generator.stages.seeds import DedupSeeds, ExtractSeeds, SeedFilter, iter_sources

    progress = cfg.progress if progress is None else progress
    s, b = cfg.seeds, cfg.benchmarks
    if not s.source:
        raise ValueError("[seeds] source is required (a folder, a .py/.jsonl/.parquet file or a dataset name)")
    # Seeds are checked as the original did: benchmark strings as they are (case-sensitive).
    index = ContaminationIndex(load_benchmarks(b.builtin, b.files), case_sensitive=True)
    seed_filter = SeedFilter(max_lines=s.max_lines, contamination=index, rules=s.rules)
    candidates = out.with_name(out.stem + ".candidates.jsonl")
    extract = ExtractSeeds(candidates, seed_filter, {"max_lines": s.max_lines, "rules": s.rules,
                                                     "benchmarks": benchmarks_fingerprint(b.builtin, b.files)},
                           progress, cfg.num_proc)
    source_fp = _source_fingerprint(s.source)
    extract_stats = extract.run(iter_sources(s.source), source_fp)
    extra_steps = [name for name, on in (("typecheck", s.typecheck), ("judge", s.judge)) if on]
    deduped = out.with_name(out.stem + "-dedup.jsonl") if extra_steps else out
    dedup = DedupSeeds(deduped, MinHashParams(threshold=s.dedup_threshold), cfg.num_proc,
                       {"threshold": s.dedup_threshold}, progress)
    rows = list(read_jsonl(candidates))
    all_stats = [extract_stats, dedup.run(rows, file_fingerprint(candidates), total=len(rows))]
    current = deduped
    for i, name in enumerate(extra_steps):
        target = out if i == len(extra_steps) - 1 else out.with_name(f"{out.stem}-{name}.jsonl")
        if name == "typecheck":
            from generator.stages.seeds import TypecheckSeeds

            stage = TypecheckSeeds(target, {}, progress)
        else:
            from generator.stages.judge import JudgeSeeds

            gen = GenerationConfig(k=s.judge_k, n=s.judge_samples, temperature=s.judge_temperature,
                                   max_new_tokens=s.judge_max_new_tokens)
            stage = JudgeSeeds(target, backend or make_backend(cfg.backend), gen, cfg.seed,
                               {"gen": vars(gen), "backend": vars(cfg.backend), "assets": assets_fingerprint()},
                               progress)
        rows = list(read_jsonl(current))
        all_stats.append(stage.run(rows, file_fingerprint(current), total=len(rows)))
        current = target
    return all_stats


def _source_fingerprint(source: str) -> str:
    path = Path(source)
    if not path.exists():
        return f"dataset:{source}"
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    return "|".join(f"{f}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def funnel_chart(all_stats: list[StageStats], path: Path) -> None:
    """Kept rows per stage, with what each stage dropped stacked beside them and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [s.stage for s in all_stats][::-1]
    kept = [s.rows_out for s in all_stats][::-1]
    dropped = [sum(s.dropped.values()) for s in all_stats][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(names) + 1.5))
    ax.barh(names, kept, color="#4c72b0", label="kept")
    ax.barh(names, dropped, left=kept, color="#c0c0c0", label="dropped")
    for y, s in enumerate(all_stats[::-1]):
        reasons = ", ".join(f"{k} {v}" for k, v in s.dropped.most_common(3))
        more = " ..." if len(s.dropped) > 3 else ""
        unit = f" {s.unit}" if s.unit != "rows" else ""
        label = f"{s.rows_out:,}{unit}" + (f"  (dropped: {reasons}{more})" if reasons else "")
        ax.text(s.rows_out + sum(s.dropped.values()), y, "  " + label, va="center", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rows")
    ax.set_title("selfalign pipeline funnel")
    ax.legend(loc="lower right")
    ax.margins(x=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
