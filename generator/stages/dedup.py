"""Dedup: exact (whitespace-insensitive) on instruction and on response, then MinHash LSH
near-dedup of one field (the response by default). Each dropped row names the row it
duplicates, so clusters can be inspected. Either part can be switched off: after `select`,
which already keeps each instruction and response once, the exact part finds nothing new."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from generator.minhash import MinHashParams, near_duplicates
from generator.stage import WHOLE_INPUT, BatchResult, Stage


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7
    field: str = "response"
    num_proc: int = 1


def _normalized_hash(text: str) -> str:
    return hashlib.sha256(re.sub(r"\s+", "", text).encode()).hexdigest()


class Dedup(Stage):
    name = "dedup"
    batch_size = WHOLE_INPUT

    def __init__(self, output, cfg: DedupConfig, config: dict | None = None, progress: bool = True) -> None:
        super().__init__(output, config, progress)
        self.cfg = cfg

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        survivors = rows if not self.cfg.exact else self._exact(rows, result)
        dup_of: dict[str, str] = {}
        if self.cfg.near:
            params = MinHashParams(self.cfg.num_perm, self.cfg.ngram, self.cfg.threshold)
            dup_of = near_duplicates([r[self.cfg.field] for r in survivors], [r["id"] for r in survivors], params,
                                     self.cfg.num_proc)
        for row in survivors:
            if row["id"] in dup_of:
                result.rejected.append({"id": row["id"], "reason": "near_duplicate", "duplicate_of": dup_of[row["id"]]})
            else:
                result.kept.append(row)
        return result

    @staticmethod
    def _exact(rows: list[dict], result: BatchResult) -> list[dict]:
        survivors = []
        first_seen: dict[tuple[str, str], str] = {}
        for row in rows:
            keys = [(f, _normalized_hash(row.get(f, ""))) for f in ("instruction", "response")]
            dup = next((k for k in keys if k in first_seen), None)
            if dup:
                result.rejected.append({"id": row["id"], "reason": f"exact_duplicate_{dup[0]}",
                                        "duplicate_of": first_seen[dup]})
                continue
            for k in keys:
                first_seen[k] = row["id"]
            survivors.append(row)
        return survivors
