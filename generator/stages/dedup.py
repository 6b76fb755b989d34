"""Dedup: exact (whitespace-insensitive) on instruction and on response, then MinHash LSH
near-dedup of each field listed in `fields`, one after the other (the response by default;
"code" is the response's Python code alone, selfcodealign's code representation). Each dropped
row names the row it duplicates, so clusters can be inspected. Either part can be switched off:
after `select`, which already keeps each instruction and response once, the exact part finds
nothing new."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from generator.minhash import Clusters, MinHashParams, SignedChunk, sign, worker_pool
from generator.response_format import program_of
from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig
    from generator.resources import Resources


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
    streams = True
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
        result, kept = self.process_stream(iter(rows), len(rows))
        result.kept = [rows[i] for i in kept]
        return result

    def process_stream(self, rows: Iterator[dict], expected: int = 0) -> tuple[BatchResult, list[int]]:
        """One pass, chunk by chunk in input order: each chunk's exact duplicates are found as it
        is read, its texts go to the signature workers, and the LSH takes each chunk's signatures
        when they are back, at most 2 x num_proc chunks behind the reading. Keep-first in input
        order holds as in a pass over all rows at once: a chunk's decisions depend only on the
        rows before it. What is kept of each row: its id, a flag, and its hashes and signature,
        not the row."""
        result = BatchResult()
        params = MinHashParams(self.cfg.num_perm, self.cfg.ngram, self.cfg.threshold)
        near = list(self.cfg.fields) if self.cfg.near else []
        clusters = {name: Clusters(params, expected) for name in near}
        ids: list[str] = []
        alive = bytearray()                                    # 1 while a row is kept
        first_seen: dict[str, dict[bytes, str]] = {"instruction": {}, "response": {}}
        in_flight: collections.deque[_Pending] = collections.deque()
        window = 2 * max(self.cfg.num_proc, 1)
        while chunk := list(itertools.islice(rows, CHUNK)):
            start = len(ids)
            ids.extend(row["id"] for row in chunk)
            alive.extend(b"\x01" * len(chunk))
            pending = _Pending(start)
            if self.cfg.exact:
                self._exact(chunk, start, alive, first_seen, pending.rejected)
            for name in near:
                texts = [program_of(r["response"]) if name == "code" else r[name] for r in chunk]
                # An empty text (no code) matches every other empty text: those are not compared.
                pending.blank[name] = np.fromiter((not t.strip() for t in texts), bool, len(texts))
                pending.signed[name] = sign(texts, params, self._workers)
            in_flight.append(pending)
            if len(in_flight) > window:
                self._near(in_flight.popleft(), clusters, ids, alive, result)
        while in_flight:
            self._near(in_flight.popleft(), clusters, ids, alive, result)
        return result, [i for i, keep in enumerate(alive) if keep]

    @staticmethod
    def _exact(chunk: list[dict], start: int, alive: bytearray, first_seen: dict[str, dict[bytes, str]],
               rejected: list[dict]) -> None:
        """A row whose instruction or response, whitespace aside, is an earlier kept row's."""
        for i, row in enumerate(chunk, start):
            keys = [(f, _normalized_hash(row.get(f, ""))) for f in ("instruction", "response")]
            dup = next(((f, h) for f, h in keys if h in first_seen[f]), None)
            if dup:
                rejected.append({"id": row["id"], "reason": f"exact_duplicate_{dup[0]}",
                                 "duplicate_of": first_seen[dup[0]][dup[1]]})
                alive[i] = 0
                continue
            for f, h in keys:
                first_seen[f][h] = row["id"]

    @staticmethod
    def _near(pending: _Pending, clusters: dict[str, Clusters], ids: list[str], alive: bytearray,
              result: BatchResult) -> None:
        """One chunk through each field's LSH in turn; rows dropped already take no part. Its
        rejects are written exact ones first, then each field's, chunk after chunk, whatever
        the number of workers."""
        start = pending.start
        result.rejected.extend(pending.rejected)
        for name, future in pending.signed.items():
            signed = future.result()
            absent = pending.blank[name] | (np.frombuffer(alive, np.uint8, len(signed.sigs), start) == 0)
            reason = "near_duplicate" if name == "response" else f"near_duplicate_{name}"
            for i, match in enumerate(clusters[name].add(signed, absent), start):
                if match is not None:
                    result.rejected.append({"id": ids[i], "reason": reason, "duplicate_of": ids[match]})
                    alive[i] = 0


@dataclass
class _Pending:
    """A chunk read and sent to the signature workers, not yet through the LSH."""
    start: int                                   # its first row's position in the input
    signed: dict[str, Future[SignedChunk]] = field(default_factory=dict)
    blank: dict[str, np.ndarray] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)   # its exact duplicates


CHUNK = 4000   # rows a signature worker takes at once
