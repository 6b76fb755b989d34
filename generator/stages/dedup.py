"""Dedup: exact (whitespace-insensitive) on instruction and on response, then MinHash LSH
near-dedup of each field listed in `fields`, one after the other (the response by default;
"code" is the response's Python code alone, selfcodealign's code representation). Each dropped
row names the row it duplicates, so clusters can be inspected. Either part can be switched off:
after `select`, which already keeps each instruction and response once, the exact part finds
nothing new."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from generator.minhash import MinHashParams, near_duplicates
from generator.response_format import program_of
from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig


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


def _normalized_hash(text: str) -> str:
    return hashlib.sha256(re.sub(r"\s+", "", text).encode()).hexdigest()


class Dedup(Stage):
    name = "dedup"
    batch_size = WHOLE_INPUT

    def __init__(self, output, cfg: DedupConfig, progress: bool = True) -> None:
        super().__init__(output, progress)
        self.cfg = cfg

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Dedup:
        return cls(output, dataclasses.replace(cfg.dedup, num_proc=max(cfg.dedup.num_proc, cfg.num_proc)),
                   cfg.progress)

    def settings(self) -> dict:
        # How many processes hash the rows does not change which are duplicates.
        return {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in ("num_proc", "enabled")}

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        survivors = rows if not self.cfg.exact else self._exact(rows, result)
        if self.cfg.near:
            params = MinHashParams(self.cfg.num_perm, self.cfg.ngram, self.cfg.threshold)
            for name in self.cfg.fields:
                texts = [program_of(r["response"]) if name == "code" else r[name] for r in survivors]
                # An empty text (no code) matches every other empty text: those are not compared.
                pairs = [(t, r["id"]) for t, r in zip(texts, survivors, strict=True) if t.strip()]
                dup_of = near_duplicates([t for t, _ in pairs], [i for _, i in pairs], params, self.cfg.num_proc)
                for row in survivors:
                    if row["id"] in dup_of:
                        reason = "near_duplicate" if name == "response" else f"near_duplicate_{name}"
                        result.rejected.append({"id": row["id"], "reason": reason, "duplicate_of": dup_of[row["id"]]})
                survivors = [r for r in survivors if r["id"] not in dup_of]
        result.kept.extend(survivors)
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
