"""The resumable stage: what every pipeline step shares.

A stage reads its input rows in a fixed order, processes them in batches, and appends each
batch's output (and its rejects) to JSONL files. After every batch it atomically writes a
checkpoint: how many input rows are consumed, the byte length of every output file, the stats
so far, and a fingerprint of the stage's config and input. After a crash, resuming truncates
the outputs back to the checkpoint's lengths (dropping a half-written batch) and continues
with the next unconsumed row, so no row is lost or written twice. A stage whose checkpoint
says it finished, with the same fingerprint, is not redone.

Randomness comes from seeds derived from (run seed, stage, row id), never from batch
boundaries, so the same config and seed give the same output however often a run resumes.
"""

from __future__ import annotations

import array
import collections
import contextlib
import copy
import hashlib
import json
import logging
import mmap
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from generator.rows import JsonlRows

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig
    from generator.resources import Resources

log = logging.getLogger(__name__)


@dataclass
class StageStats:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0
    notes: collections.Counter = field(default_factory=collections.Counter)  # other counts worth showing
    unit: str = "rows"   # what rows_in, kept and dropped count: one unit per stage

    @property
    def rows_per_s(self) -> float:
        return round(self.rows_in / self.seconds, 2) if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {"stage": self.stage, "rows_in": self.rows_in, "kept": self.rows_out,
                "dropped": dict(sorted(self.dropped.items())), "dropped_total": sum(self.dropped.values()),
                "seconds": round(self.seconds, 3), "rows_per_s": self.rows_per_s,
                "notes": dict(sorted(self.notes.items())), "unit": self.unit}

    @classmethod
    def from_dict(cls, d: dict) -> StageStats:
        return cls(d["stage"], d["rows_in"], d["kept"], collections.Counter(d["dropped"]), d["seconds"],
                   collections.Counter(d.get("notes", {})), d.get("unit", "rows"))


@dataclass
class BatchResult:
    kept: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)   # each with a "reason"
    extra: dict[str, list[dict]] = field(default_factory=dict)  # other side files, by suffix
    notes: collections.Counter = field(default_factory=collections.Counter)  # added to the stage's notes


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any values, identical across runs, processes and machines."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


WHOLE_INPUT = 1 << 62


class Stage:
    """One pipeline step. Subclasses set `name`, implement `process_batch`, and say in
    `settings()` everything besides the input that changes their output.

    Stages that need every row at once (select, dedup) set `batch_size = WHOLE_INPUT`; one that
    can decide as it reads, holding only a little of each row (dedup), also sets `streams` and
    implements `process_stream`. A stage
    that needs a shared resource (the model, the executor) takes it in `using()`, which runs
    only when the stage has rows left to do, so a finished run loads no model.
    """

    name = "stage"
    batch_size = 256
    side_files: tuple[str, ...] = ()  # suffixes of the side files this stage writes
    unit = "rows"
    distributable = False   # its rows are independent: a cluster may split them among workers
    # A filter: the rows it keeps are input rows, never modified. Read from a JSONL file, they
    # are written out as the bytes they were read from, not encoded again (for dedup, encoding
    # 110k kept rows was 0.6 s of a 5 s command).
    keeps_rows_as_read = False
    # A whole-input filter that need not hold its rows (dedup keeps hashes and signatures, not
    # rows): it implements `process_stream`, and its memory no longer grows with the rows' size.
    streams = False

    def __init__(self, output: str | Path, progress: bool = True) -> None:
        self.output = Path(output)
        self.progress = progress

    # -- to implement ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output: str | Path) -> Stage:
        """This stage as the pipeline config describes it, writing `output`."""
        raise NotImplementedError(f"stage {cls.name} cannot be built from a pipeline config")

    def process_batch(self, rows: list[dict]) -> BatchResult:
        raise NotImplementedError

    def process_stream(self, rows: Iterator[dict], expected: int = 0) -> tuple[BatchResult, list[int]]:
        """For a stage that `streams`: read the whole input once, in order (`expected` rows, 0
        when unknown), and return the result without its kept rows, and the positions of the
        rows it keeps (in input order, each unchanged). The runner then copies those rows from
        the input file, or takes them from the input list."""
        raise NotImplementedError

    def settings(self) -> dict:
        """Everything besides the input rows that this stage's output depends on: its config,
        the assets and files it reads (by content), the model it calls. The fingerprint is made
        from it, so a change to any of them runs the stage again instead of reusing old rows."""
        return {}

    @contextlib.contextmanager
    def using(self, resources: Resources) -> Iterator[None]:
        """Hold the shared resources this stage needs while it runs (none by default)."""
        yield

    def count_in(self, rows: list[dict]) -> int:
        """How many units of this stage's `unit` the rows hold (a row may hold several samples)."""
        return len(rows)

    def with_output(self, output: str | Path, progress: bool | None = None) -> Stage:
        """The same stage writing elsewhere (a part of a cluster run)."""
        clone = copy.copy(self)
        clone.output = Path(output)
        clone.progress = self.progress if progress is None else progress
        return clone

    # -- files ----------------------------------------------------------------------------

    @property
    def rejects_path(self) -> Path:
        return self.output.with_name(self.output.stem + ".rejects.jsonl")

    @property
    def checkpoint_path(self) -> Path:
        return self.output.with_name(self.output.stem + ".checkpoint.json")

    def side_path(self, suffix: str) -> Path:
        return self.output.with_name(f"{self.output.stem}.{suffix}.jsonl")

    def fingerprint(self, input_fingerprint: str) -> str:
        blob = json.dumps({"stage": self.name, "config": self.settings(), "input": input_fingerprint},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def is_done(self, input_fingerprint: str) -> bool:
        ckpt = self._load_checkpoint()
        return bool(ckpt and ckpt.get("done") and ckpt["fingerprint"] == self.fingerprint(input_fingerprint))

    # -- running --------------------------------------------------------------------------

    def run(self, rows: Iterable[dict], input_fingerprint: str, total: int | None = None,
            resources: Resources | None = None) -> StageStats:
        """Process `rows` (always the same rows in the same order for the same input). Rows are
        only iterated when there is work left, so a lazy reader reads nothing for a done stage."""
        from generator.resources import Resources

        fp = self.fingerprint(input_fingerprint)
        ckpt = self._load_checkpoint()
        if ckpt and ckpt["fingerprint"] == fp:
            if ckpt.get("done"):
                return StageStats.from_dict(ckpt["stats"])
            consumed = ckpt["consumed"]
            stats = StageStats.from_dict(ckpt["stats"])
            self._truncate(ckpt["lengths"])
        else:
            if ckpt:
                log.warning("%s: its config, assets or input changed since the last run; running it again",
                            self.name)
            consumed = 0
            stats = StageStats(self.name, unit=self.unit)
            self.output.parent.mkdir(parents=True, exist_ok=True)
            for path in self._all_outputs():
                path.unlink(missing_ok=True)
            self.output.touch()
            self.rejects_path.touch()
        if total is None and hasattr(rows, "__len__"):
            total = len(rows)  # type: ignore[arg-type]
        with self.using(resources or Resources()):
            consumed = self._run_batches(rows, consumed, stats, fp, total)
        self._save_checkpoint(fp, consumed, stats, done=True)
        return stats

    def _run_batches(self, rows: Iterable[dict], consumed: int, stats: StageStats, fp: str,
                     total: int | None) -> int:
        if self.streams and self.batch_size == WHOLE_INPUT and consumed == 0:
            return self._run_stream(rows, stats, total)
        started = time.monotonic()
        base_seconds = stats.seconds
        bar = tqdm(total=total, initial=consumed, desc=self.name, unit="row", disable=not self.progress,
                   dynamic_ncols=True)
        batch: list[dict] = []
        spans: dict[int, tuple[int, int]] = {}   # id(row) -> its bytes in the input file
        copied = rows if self.keeps_rows_as_read and isinstance(rows, JsonlRows) else None
        source = copied.path if copied is not None else None
        pairs: Iterable[tuple[dict, tuple[int, int] | None]] = (
            copied.with_spans() if copied is not None else ((row, None) for row in rows))
        index = 0
        for row, span in pairs:
            index += 1
            if index <= consumed:
                continue
            batch.append(row)
            if span is not None:
                spans[id(row)] = span
            if len(batch) >= self.batch_size:
                consumed = self._commit(batch, consumed, stats, fp, started, base_seconds, source, spans)
                bar.update(len(batch))
                batch, spans = [], {}
        if batch or (self.batch_size == WHOLE_INPUT and consumed == 0):
            # A whole-input stage runs even on no rows, so it still writes its (empty) outputs.
            consumed = self._commit(batch, consumed, stats, fp, started, base_seconds, source, spans)
            bar.update(len(batch))
        bar.close()
        stats.seconds = base_seconds + time.monotonic() - started
        return consumed

    def _run_stream(self, rows: Iterable[dict], stats: StageStats, total: int | None) -> int:
        """A streaming whole-input stage: rows pass through once; of each, only its byte span in
        the input file is kept (or, for rows that come from no file, the row itself, which its
        caller holds anyway). Nothing is written before the end, as for any whole-input stage."""
        started = time.monotonic()
        base_seconds = stats.seconds
        bar = tqdm(total=total, desc=self.name, unit="row", disable=not self.progress, dynamic_ncols=True)
        copied = rows if self.keeps_rows_as_read and isinstance(rows, JsonlRows) else None
        starts, ends = array.array("q"), array.array("q")
        held: list[dict] = []

        def read() -> Iterator[dict]:
            if copied is not None:
                for row, (start, end) in copied.with_spans():
                    starts.append(start)
                    ends.append(end)
                    yield row
                    if len(starts) % 4096 == 0:
                        bar.update(4096)
            else:
                for row in rows:
                    held.append(row)
                    yield row

        result, kept = self.process_stream(read(), total or 0)
        count = len(starts) if copied is not None else len(held)
        bar.update(count - bar.n)
        bar.close()
        stats.rows_in += count
        if copied is not None:
            self._append(result, stats, copied.path, [(starts[i], ends[i]) for i in kept])
        else:
            result.kept = [held[i] for i in kept]
            self._append(result, stats)
        stats.seconds = base_seconds + time.monotonic() - started
        return count

    def adopt(self, parts: list[Stage], input_fingerprint: str, stats: StageStats, consumed: int) -> None:
        """Take as this stage's finished output the outputs of stages that ran on consecutive
        parts of its input, in order (a cluster run): the same files, checkpoint and fingerprint
        a one-machine run writes."""
        fp = self.fingerprint(input_fingerprint)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        for path in self._all_outputs():
            path.unlink(missing_ok=True)
        pairs = [(self.output, lambda s: s.output), (self.rejects_path, lambda s: s.rejects_path)]
        pairs += [(self.side_path(x), lambda s, x=x: s.side_path(x)) for x in self.side_files]
        for target, of in pairs:
            with open(target, "wb") as dst:
                for part in parts:
                    if of(part).exists():
                        dst.write(of(part).read_bytes())
                dst.flush()
                os.fsync(dst.fileno())
        self._save_checkpoint(fp, consumed, stats, done=True)

    def _commit(self, batch: list[dict], consumed: int, stats: StageStats, fp: str,
                started: float, base_seconds: float, source: Path | None = None,
                spans: dict[int, tuple[int, int]] | None = None) -> int:
        result = self.process_batch(batch)
        stats.rows_in += self.count_in(batch)
        kept_spans = None
        if source is not None and spans and all(id(row) in spans for row in result.kept):
            kept_spans = [spans[id(row)] for row in result.kept]
        self._append(result, stats, source, kept_spans)
        stats.seconds = base_seconds + time.monotonic() - started
        consumed += len(batch)
        self._save_checkpoint(fp, consumed, stats, done=False)
        return consumed

    def _append(self, result: BatchResult, stats: StageStats, source: Path | None = None,
                kept_spans: list[tuple[int, int]] | None = None) -> None:
        """Write a batch's outputs; with `kept_spans`, the kept rows are those bytes of `source`."""
        stats.notes.update(result.notes)
        for r in result.rejected:
            stats.dropped[r.get("reason", "unknown")] += 1
        if source is not None and kept_spans is not None:
            stats.rows_out += len(kept_spans)
            _append_spans(self.output, source, kept_spans)
        else:
            stats.rows_out += len(result.kept)
            _append_jsonl(self.output, result.kept)
        _append_jsonl(self.rejects_path, result.rejected)
        for suffix, rows in result.extra.items():
            if suffix not in self.side_files:
                raise ValueError(f"stage {self.name} wrote undeclared side file {suffix!r}")
            _append_jsonl(self.side_path(suffix), rows)

    def _all_outputs(self) -> list[Path]:
        return [self.output, self.rejects_path, self.checkpoint_path,
                *(self.side_path(suffix) for suffix in self.side_files)]

    def _truncate(self, lengths: dict[str, int]) -> None:
        for path in self._all_outputs():
            if path == self.checkpoint_path or not path.exists():
                continue
            keep = lengths.get(path.name, 0)
            with open(path, "r+b") as f:
                f.truncate(keep)

    def _save_checkpoint(self, fp: str, consumed: int, stats: StageStats, done: bool) -> None:
        lengths = {p.name: p.stat().st_size for p in self._all_outputs()
                   if p.exists() and p != self.checkpoint_path}
        data = {"fingerprint": fp, "consumed": consumed, "done": done, "lengths": lengths,
                "stats": stats.to_dict()}
        tmp = self.checkpoint_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)

    def _load_checkpoint(self) -> dict | None:
        try:
            return json.loads(self.checkpoint_path.read_text())
        except (OSError, ValueError):
            return None


_ENCODER = json.JSONEncoder(ensure_ascii=False)   # made once: json.dumps makes one a call with options


def _append_spans(path: Path, source: Path, spans: list[tuple[int, int]]) -> None:
    """Copy these byte spans of `source` (whole JSON lines) to the end of `path`, one a line."""
    if not spans:
        return
    with open(source, "rb") as src, mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as data, \
            open(path, "ab") as f:
        for start, end in spans:
            f.write(data[start:end])
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(_ENCODER.encode(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
