"""The whole pipeline from one TOML file: seeds -> concepts -> instructions -> responses ->
execute -> select -> dedup -> decontaminate -> export, into one run directory.

Each stage's output is `NN-stage.jsonl` in the run directory, with its rejects, side files and
checkpoint beside it. A stage's fingerprint covers its config and the exact bytes of its input,
so after a crash or a config change only what is affected runs again. `stats.json` and
`funnel.png` summarize the run.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from generator.backends import Backend, BackendConfig, make_backend
from generator.stage import Stage, StageStats, file_fingerprint, read_jsonl

STAGES = ("seeds", "concepts", "instructions", "responses", "execute", "select", "dedup",
          "decontaminate", "export")


@dataclass
class SeedsConfig:
    source: str = ""
    benchmarks: list[str] = field(default_factory=lambda: ["humaneval"])
    benchmark_files: list[str] = field(default_factory=list)
    dedup_threshold: float = 0.5
    max_lines: int = 150
    typecheck: bool = False      # drop seeds with Pyright errors
    judge: bool = False          # the base model judges docstring vs function
    judge_samples: int = 5       # votes per seed (majority keeps)
    judge_k: int = 6             # few-shot examples in the judge prompt


@dataclass
class ExecuteConfig:
    executor: list[str] = field(default_factory=list)   # empty: an embedded executor
    timeout_s: float | None = None
    memory_mb: int | None = None
    concurrency: int = 64
    pool_size: int | None = None


@dataclass
class PipelineConfig:
    dir: str = "runs/default"
    seed: int = 0
    num_proc: int = 1
    progress: bool = True
    backend: BackendConfig = field(default_factory=BackendConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    concepts: dict = field(default_factory=lambda: {"k": 8, "n": 1})
    instructions: dict = field(default_factory=lambda: {"k": 8, "n": 1})
    responses: dict = field(default_factory=lambda: {"k": 1, "n": 10})
    execute: ExecuteConfig = field(default_factory=ExecuteConfig)
    dedup: dict = field(default_factory=dict)
    decontaminate: dict = field(default_factory=lambda: {"ngram": 10})

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        try:
            data = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> PipelineConfig:
        data = dict(data)
        run = data.pop("run", {})
        known = {f.name for f in fields(cls)}
        unknown = (set(data) | set(run)) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        cfg = cls(**run)
        if "backend" in data:
            cfg.backend = _build(BackendConfig, data.pop("backend"), "backend")
        if "seeds" in data:
            cfg.seeds = _build(SeedsConfig, data.pop("seeds"), "seeds")
        if "execute" in data:
            ex = dict(data.pop("execute"))
            if isinstance(ex.get("executor"), str):
                ex["executor"] = [t for t in ex["executor"].split(",") if t.strip()]
            cfg.execute = _build(ExecuteConfig, ex, "execute")
        for name, value in data.items():
            setattr(cfg, name, value)
        return cfg


def _build(cls, data: dict, section: str):
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"[{section}]: unknown keys {', '.join(sorted(unknown))}")
    return cls(**data)


def generation_config(section: dict):
    from generator.stages.generation import GenerationConfig

    return _build(GenerationConfig, section, "generation")


@contextlib.contextmanager
def executor_client(cfg: ExecuteConfig) -> Iterator:
    """A client for the configured executors, or for an embedded one started here."""
    from executor.client import Client

    if cfg.executor:
        with Client(cfg.executor) as client:
            yield client
        return
    from executor.server import ExecutorServer, ServerConfig

    server_cfg = ServerConfig(port=0, instance=None)
    if cfg.pool_size:
        server_cfg.pool_size = cfg.pool_size
    server = ExecutorServer(server_cfg).start()
    try:
        if not server.pool.wait_ready(180):
            raise RuntimeError(f"embedded executor not ready: {server.pool.state().engine_error}")
        with Client(f"127.0.0.1:{server.port}") as client:
            yield client
    finally:
        server.stop()


def run_stage(stage: Stage, rows: list[dict], input_fingerprint: str, execute: ExecuteConfig) -> StageStats:
    """Run one stage on its rows. The execute stage gets an executor client (remote, or an
    embedded executor started here) only when it has work left, so a finished run starts none."""
    from generator.stages.execute import Execute

    if isinstance(stage, Execute) and not stage.is_done(input_fingerprint):
        with executor_client(execute) as client:
            stage.client = client
            return stage.run(rows, input_fingerprint, total=len(rows))
    return stage.run(rows, input_fingerprint, total=len(rows))


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

    def run(self, until: str | None = None) -> list[StageStats]:
        self.dir.mkdir(parents=True, exist_ok=True)
        all_stats: list[StageStats] = []
        previous: Path | None = None
        for index, name in enumerate(STAGES, 1):
            out = self.path(index, name)
            stats_list, out = self._run_stage(name, index, out, previous)
            all_stats += stats_list
            previous = out
            self.write_summary(all_stats)
            if until == name:
                break
        return all_stats

    def stage(self, name: str, out: Path) -> Stage:
        from generator.benchmarks import ContaminationIndex, load_benchmarks
        from generator.stages.concepts import Concepts
        from generator.stages.decontaminate import Decontaminate
        from generator.stages.dedup import Dedup, DedupConfig
        from generator.stages.execute import Execute
        from generator.stages.export import Export
        from generator.stages.instructions import Instructions
        from generator.stages.responses import Responses
        from generator.stages.select import Select

        cfg, progress = self.cfg, self.cfg.progress
        gen_stages = {"concepts": Concepts, "instructions": Instructions, "responses": Responses}
        if name in gen_stages:
            section = getattr(cfg, name)
            conf = {"section": section, "backend": vars(cfg.backend), "seed": cfg.seed}
            return gen_stages[name](out, self.backend, generation_config(section), cfg.seed, conf, progress)
        if name == "execute":
            ex = cfg.execute
            return Execute(out, None, ex.timeout_s, ex.memory_mb, ex.concurrency,
                           {"timeout_s": ex.timeout_s, "memory_mb": ex.memory_mb}, progress)
        if name == "select":
            return Select(out, cfg.seed, {"seed": cfg.seed}, progress)
        if name == "dedup":
            dcfg = _build(DedupConfig, {"num_proc": cfg.num_proc, **cfg.dedup}, "dedup")
            return Dedup(out, dcfg, {k: v for k, v in vars(dcfg).items() if k != "num_proc"}, progress)
        if name == "decontaminate":
            ngram = cfg.decontaminate.get("ngram", 10)
            texts = load_benchmarks(cfg.seeds.benchmarks, cfg.seeds.benchmark_files)
            conf = {"ngram": ngram, "benchmarks": cfg.seeds.benchmarks, "files": cfg.seeds.benchmark_files}
            return Decontaminate(out, ContaminationIndex(texts, ngram), conf, progress)
        if name == "export":
            return Export(out, self.dir / "dataset", {}, progress)
        raise ValueError(name)

    def _run_stage(self, name: str, index: int, out: Path, previous: Path | None):
        if name == "seeds":
            judge_backend = self.backend if self.cfg.seeds.judge else None
            return run_seeds(self.cfg, out, backend=judge_backend), out
        rows = list(read_jsonl(previous))
        stage = self.stage(name, out)
        return [run_stage(stage, rows, file_fingerprint(previous), self.cfg.execute)], out

    def write_summary(self, all_stats: list[StageStats]) -> None:
        summary = [s.to_dict() for s in all_stats]
        (self.dir / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
        funnel_chart(all_stats, self.dir / "funnel.png")


def run_seeds(cfg: PipelineConfig, out: Path, progress: bool | None = None,
              backend: Backend | None = None) -> list[StageStats]:
    """seeds = extract (filters), dedup, then the optional type check and model judge."""
    from generator.benchmarks import ContaminationIndex, load_benchmarks
    from generator.minhash import MinHashParams
    from generator.stages.seeds import DedupSeeds, ExtractSeeds, SeedFilter, iter_sources

    progress = cfg.progress if progress is None else progress
    s = cfg.seeds
    if not s.source:
        raise ValueError("[seeds] source is required (a folder, a .py/.jsonl/.parquet file or a dataset name)")
    index = ContaminationIndex(load_benchmarks(s.benchmarks, s.benchmark_files), mode="contains")
    seed_filter = SeedFilter(max_lines=s.max_lines, contamination=index)
    candidates = out.with_name(out.stem + ".candidates.jsonl")
    extract = ExtractSeeds(candidates, seed_filter, {"max_lines": s.max_lines, "benchmarks": s.benchmarks,
                                                     "files": s.benchmark_files}, progress, cfg.num_proc)
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
            from generator.stages.generation import GenerationConfig
            from generator.stages.judge import JudgeSeeds

            gen = GenerationConfig(k=s.judge_k, n=s.judge_samples, temperature=0.7, max_new_tokens=4)
            stage = JudgeSeeds(target, backend or make_backend(cfg.backend), gen, cfg.seed,
                               {"k": s.judge_k, "n": s.judge_samples, "backend": vars(cfg.backend)}, progress)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.stage for s in all_stats]
    kept = [s.rows_out for s in all_stats]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    bars = ax.barh(names[::-1], kept[::-1], color="#4c72b0")
    # execute keeps passing *samples* (several per instruction); every other stage counts rows.
    labels = [f"{k:,} samples" if n == "execute" else f"{k:,}" for n, k in zip(names, kept, strict=True)]
    ax.bar_label(bars, labels=labels[::-1], padding=3)
    ax.set_xlabel("rows kept")
    ax.set_title("selfalign pipeline funnel")
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
