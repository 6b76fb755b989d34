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

import dataclasses
import json
import logging
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from generator.backends import Backend, BackendConfig
from generator.cluster import ClusterConfig
from generator.resources import Resources
from generator.runner import run_stages
from generator.stage import Stage, StageStats
from generator.stages.dedup import DedupConfig
from generator.stages.execute import ExecuteConfig
from generator.stages.export import Export, ExportConfig, write_card
from generator.stages.generation import GenerationConfig
from generator.stages.instructions import InstructionsConfig
from generator.stages.sanitize import RewriteConfig
from generator.stages.seeds import seeds_input
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
    judge_k: int = 6             # few-shot examples in the judge prompt ("ours")
    judge_prompt: str = "ours"   # "original": the original's judge prompt and its 7 examples, word for word
    # The seeds as they are, unfiltered: every row's code is one seed. Unset: as they are when the
    # source is one of the authors' released seed sets (generator.stages.seeds.RELEASED_SEEDS),
    # which the original used as released; filtering them again changes the set they published.
    as_is: bool | None = None

    def seeds_as_is(self) -> bool:
        from generator.stages.seeds import RELEASED_SEEDS

        return self.source in RELEASED_SEEDS if self.as_is is None else self.as_is


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


RUN_KEYS = ("dir", "seed", "num_proc", "progress", "allow_empty")   # the [run] table's keys


@dataclass
class PipelineConfig:
    dir: str = "runs/default"
    seed: int = 0
    num_proc: int = 1
    progress: bool = True
    allow_empty: bool = False   # go on after a stage that kept nothing (else the run stops there)
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
    export: ExportConfig = field(default_factory=ExportConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @classmethod
    def load(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
        """The config in the TOML file `path` (or the defaults, without one), with `overrides`
        (`section.key=value`, the value in TOML syntax or a bare string) applied over it."""
        data: dict = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML: {exc}") from None
            except OSError as exc:
                raise ValueError(f"{path}: cannot read the config: {exc.strerror}") from None
            resolve_paths(data, Path(path).resolve().parent)
        apply_overrides(data, overrides)
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}" if path is not None else str(exc)) from None

    @classmethod
    def from_dict(cls, data: dict) -> PipelineConfig:
        data = dict(data)
        run = data.pop("run", {})
        sections = {f.name: f for f in fields(cls) if f.name not in RUN_KEYS}
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown config sections: {', '.join(sorted(unknown))} "
                             f"(known: run, {', '.join(sections)})")
        cfg = _build(cls, run, "run", only=RUN_KEYS, base=cls())
        for name, value in data.items():
            if not isinstance(value, dict):
                raise ValueError(f"[{name}] must be a table")
            if name == "execute" and isinstance(value.get("executor"), str):
                value = {**value, "executor": [t.strip() for t in value["executor"].split(",") if t.strip()]}
            hints = typing.get_type_hints(cls)
            setattr(cfg, name, _build(hints[name], value, name, base=getattr(cfg, name)))
        return cfg


# (section, key) of the values that may be paths. `run.dir` is always one; the others may also be
# hub names (`bigcode/starcoder2-15b`), so they are read as paths only when they look like one.
PATH_KEYS = (("run", "dir"), ("backend", "model"), ("seeds", "source"), ("benchmarks", "files"))


def resolve_paths(data: dict, base: Path) -> None:
    """Relative paths written in a config file are relative to that file, as in most tools, so a
    run reads the same files from any working directory. (Overrides given on the command line are
    relative to the working directory, like any path typed there.) A model, seeds source or
    benchmark file is taken as a path when it starts with ./ or ../ or exists beside the config."""
    for section, key in PATH_KEYS:
        table = data.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        value = table[key]
        if isinstance(value, list):
            table[key] = [_resolve(v, base, always=False) for v in value]
        else:
            table[key] = _resolve(value, base, always=(section, key) == ("run", "dir"))


def _resolve(value, base: Path, always: bool):
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    candidate = base / value
    if always or value.startswith(("./", "../")) or candidate.exists():
        return str(candidate.resolve())
    return value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Set `section.key=value` items in a config's tables (torchtune's command-line pattern):
    `responses.temperature=0.8`, `run.dir=runs/b`, `instructions.categories.class=0`. A value is
    read as TOML (numbers, booleans, quoted strings, arrays, inline tables), else as a string."""
    for item in overrides:
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or len(path) < 2 or not all(path):
            raise ValueError(f"override {item!r}: expected section.key=value, like responses.temperature=0.8")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        table = data
        for i, part in enumerate(path[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ValueError(f"override {item!r}: {'.'.join(path[:i + 1])} is not a table")
        table[path[-1]] = value
    return data


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
    if isinstance(value, list):
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


class Pipeline:
    """The pipeline's stages, configured from one `PipelineConfig`, run by the one runner."""

    def __init__(self, cfg: PipelineConfig, backend: Backend | None = None) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self.resources = Resources.of(cfg, backend)

    def path(self, index: int, name: str) -> Path:
        return self.dir / f"{index:02d}-{name}.jsonl"

    def enabled(self, name: str) -> bool:
        return name not in OPTIONAL_STAGES or getattr(self.cfg, name).enabled

    def plan(self, until: str | None = None) -> list[Stage]:
        """Every enabled stage in order, each writing `NN-name.jsonl` (the seeds steps first)."""
        from generator.stages import REGISTRY

        if until is not None and until not in STAGES:
            raise ValueError(f"unknown stage {until!r} (stages: {', '.join(STAGES)})")
        stages: list[Stage] = []
        for index, name in enumerate(STAGES, 1):
            if self.enabled(name):
                out = self.path(index, name)
                stages += seeds_steps(self.cfg, out) if name == "seeds" else [REGISTRY[name].from_config(self.cfg, out)]
            if until == name:
                break
        return stages

    def check_before_work(self) -> None:
        """What a run needs and a user can get wrong, found in one line before any stage starts
        (not minutes later, after a traceback): the model the backend loads, or the server the
        openai backend talks to."""
        backend = self.cfg.backend
        if self.resources.given_backend is not None:
            return   # a backend object handed in (tests, the cluster's workers): nothing to find
        if backend.kind in ("vllm", "transformers"):
            from generator.backends import check_model_name

            check_model_name(backend.model)
        elif backend.kind == "openai":
            from generator.backends.openai import check_server

            check_server(str(backend.options.get("base_url") or ""))

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
            self.check_before_work()
            return run_stages(self.plan(until), seeds_input(self.cfg.seeds.source), self.resources,
                              after_each=self._after_stage, cluster=self.cfg.cluster,
                              allow_empty=self.cfg.allow_empty)
        finally:
            log.info("run stopped")
            root.removeHandler(handler)
            handler.close()
            ours.setLevel(old_level)
            for h, level in console:
                h.setLevel(level)

    def _after_stage(self, stage: Stage, all_stats: list[StageStats]) -> None:
        log.info("%s: %s", stage.name, json.dumps(all_stats[-1].to_dict()))
        summary = [s.to_dict() for s in all_stats]
        (self.dir / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
        funnel_chart(all_stats, self.dir / "funnel.png")
        if isinstance(stage, Export):
            write_card(stage.dataset_dir, all_stats[-1].rows_out, stage.columns, dataclasses.asdict(self.cfg),
                       summary)


def seeds_steps(cfg: PipelineConfig, out: Path) -> list[Stage]:
    """seeds = extract (filters) and dedup, then the optional type check and model judge; the
    last of them writes `out`, the others files beside it."""
    from generator.stages import REGISTRY

    if cfg.seeds.seeds_as_is():   # the released set as it is: read, nothing filtered
        return [REGISTRY["seeds.extract"].from_config(cfg, out)]
    later = ["seeds.dedup"] + [name for name, on in (("seeds.typecheck", cfg.seeds.typecheck),
                                                      ("seeds.judge", cfg.seeds.judge)) if on]
    stages = [REGISTRY["seeds.extract"].from_config(cfg, out.with_name(out.stem + ".candidates.jsonl"))]
    for i, name in enumerate(later):
        target = out if i == len(later) - 1 else out.with_name(f"{out.stem}-{name.split('.')[1]}.jsonl")
        stages.append(REGISTRY[name].from_config(cfg, target))
    return stages


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
