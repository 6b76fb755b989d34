"""Dedup: exact (whitespace-insensitive) on instruction and on response, then MinHash LSH
near-dedup of each field listed in `fields`, one after the other (the response by default;
"code" is the response's Python code alone, selfcodealign's code representation). Each dropped
row names the row it duplicates, so clusters can be inspected. Either part can be switched off:
after `select`, which already keeps each instruction and response once, the exact part finds
nothing new."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import queue
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from generator.minhash import MinHashParams, SignedChunk, deduplicate, signed_chunks, worker_pool
from generator.response_format import program_of
from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig
    from generator.resources import Resources

T = TypeVar("T")


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7
    fields: list[str] = field(default_factory=lambda: ["response"])   # of instruction, response, code
    num_proc: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.fields) - {"instruction", "response", "code"}
        if unknown or not self.fields:
            raise ValueError(f"[dedup] fields must be some of instruction, response, code; not {sorted(unknown)}")


def _in_background(thread: ThreadPoolExecutor, produce: Callable[[], Iterable[T]]) -> Iterator[T]:
    """The items of `produce()`, made in `thread` and handed over one by one as each is ready;
    an error in `produce` is raised here, after the items made before it."""
    ready: queue.Queue = queue.Queue()
    end = object()

    def run() -> None:
        try:
            for item in produce():
                ready.put(item)
        finally:
            ready.put(end)

    running = thread.submit(run)

    def items() -> Iterator[T]:
        while (item := ready.get()) is not end:
            yield item
        running.result()

    return items()


# The ASCII characters str.split() counts as whitespace (\x1c-\x1f included, unlike bytes.split()).
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _normalized_hash(text: str) -> bytes:
    """The text's hash with every whitespace character removed. ASCII text (nearly all code) is
    stripped by bytes.translate, about twice as fast as the general path and byte-identical to
    it; str.split() drops the same Unicode whitespace as re's whitespace class, three times as fast."""
    if text.isascii():
        return hashlib.sha256(text.encode().translate(None, _ASCII_WHITESPACE)).digest()
    return hashlib.sha256("".join(text.split()).encode()).digest()


class Dedup(Stage):
    name = "dedup"
    keeps_rows_as_read = True
    batch_size = WHOLE_INPUT

    def __init__(self, output, cfg: DedupConfig, progress: bool = True) -> None:
        super().__init__(output, progress)
        self.cfg = cfg
        self._workers: ProcessPoolExecutor | None = None   # while running (see using)

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Dedup:
        return cls(output, dataclasses.replace(cfg.dedup, num_proc=max(cfg.dedup.num_proc, cfg.num_proc)),
                   cfg.progress)

    def settings(self) -> dict:
        # How many processes hash the rows does not change which are duplicates.
        return {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in ("num_proc", "enabled")}

    @contextlib.contextmanager
    def using(self, resources: Resources) -> Iterator[None]:
        """The signature workers, started before the input is read, so their start-up overlaps
        the reading."""
        with worker_pool(self.cfg.num_proc if self.cfg.near else 1) as pool:
            self._workers = pool
            try:
                yield
            finally:
                self._workers = None

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        alive = np.ones(len(rows), bool)
        with ThreadPoolExecutor(1, thread_name_prefix="signatures") as background:
            # The signatures of every row are computed (in worker processes) while the exact
            # part runs: they do not depend on it, and those of its duplicates are skipped below.
            # The LSH then takes each chunk of signatures as it is ready.
            texts: dict[str, list[str]] = {}
            signed: dict[str, Iterator[SignedChunk]] = {}
            params = MinHashParams(self.cfg.num_perm, self.cfg.ngram, self.cfg.threshold)
            if self.cfg.near:
                for name in self.cfg.fields:
                    texts[name] = [program_of(r["response"]) if name == "code" else r[name] for r in rows]
                    signed[name] = _in_background(background, functools.partial(
                        signed_chunks, texts[name], params, self.cfg.num_proc, pool=self._workers))
            if self.cfg.exact:
                self._exact(rows, alive, result)
            ids = [r["id"] for r in rows]
            for name, chunks in signed.items():
                # An empty text (no code) matches every other empty text: those are not compared.
                blank = np.fromiter((not t.strip() for t in texts[name]), bool, len(rows))
                dup_of = deduplicate(chunks, ids, params, skip=~alive | blank)
                reason = "near_duplicate" if name == "response" else f"near_duplicate_{name}"
                for i, row in enumerate(rows):
                    if alive[i] and row["id"] in dup_of:
                        result.rejected.append({"id": row["id"], "reason": reason, "duplicate_of": dup_of[row["id"]]})
                        alive[i] = False
        result.kept.extend(row for row, keep in zip(rows, alive, strict=True) if keep)
        return result

    @staticmethod
    def _exact(rows: list[dict], alive: np.ndarray, result: BatchResult) -> None:
        first_seen: dict[tuple[str, bytes], str] = {}
        for i, row in enumerate(rows):
            keys = [(f, _normalized_hash(row.get(f, ""))) for f in ("instruction", "response")]
            dup = next((k for k in keys if k in first_seen), None)
            if dup:
                result.rejected.append({"id": row["id"], "reason": f"exact_duplicate_{dup[0]}",
                                        "duplicate_of": first_seen[dup]})
                alive[i] = False
                continue
            for k in keys:
                first_seen[k] = row["id"]
