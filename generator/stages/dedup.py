"""Dedup: exact (whitespace-insensitive) on instruction and on response, then MinHash LSH
near-dedup of responses, then optionally at most N rows per defined function name (diversity).
Each dropped row names the row it duplicates, so clusters can be inspected."""

from __future__ import annotations

import ast
import hashlib
import re
from collections import Counter
from dataclasses import dataclass

from generator.minhash import MinHashParams, near_duplicates
from generator.prompts import program_of
from generator.stage import WHOLE_INPUT, BatchResult, Stage


@dataclass
class DedupConfig:
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7
    field: str = "response"
    max_per_function_name: int = 0   # 0: off
    num_proc: int = 1


def _normalized_hash(text: str) -> str:
    return hashlib.sha256(re.sub(r"\s+", "", text).encode()).hexdigest()


def function_names(response: str) -> set[str]:
    try:
        tree = ast.parse(program_of(response))
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


class Dedup(Stage):
    name = "dedup"
    batch_size = WHOLE_INPUT

    def __init__(self, output, cfg: DedupConfig, config: dict | None = None, progress: bool = True) -> None:
        super().__init__(output, config, progress)
        self.cfg = cfg

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        survivors = []
        first_seen: dict[tuple[str, str], str] = {}
        for row in rows:
            dup = None
            for fieldname in ("instruction", "response"):
                key = (fieldname, _normalized_hash(row.get(fieldname, "")))
                if key in first_seen:
                    dup = (fieldname, first_seen[key])
                    break
            if dup:
                result.rejected.append({"id": row["id"], "reason": f"exact_duplicate_{dup[0]}",
                                        "duplicate_of": dup[1]})
                continue
            for fieldname in ("instruction", "response"):
                first_seen[(fieldname, _normalized_hash(row.get(fieldname, "")))] = row["id"]
            survivors.append(row)
        params = MinHashParams(self.cfg.num_perm, self.cfg.ngram, self.cfg.threshold)
        dup_of = near_duplicates([r[self.cfg.field] for r in survivors], [r["id"] for r in survivors], params,
                                 self.cfg.num_proc)
        per_name: Counter = Counter()
        for row in survivors:
            if row["id"] in dup_of:
                result.rejected.append({"id": row["id"], "reason": "near_duplicate", "duplicate_of": dup_of[row["id"]]})
                continue
            if self.cfg.max_per_function_name:
                names = function_names(row.get("response", ""))
                if names and all(per_name[n] >= self.cfg.max_per_function_name for n in names):
                    result.rejected.append({"id": row["id"], "reason": "function_name_diversity",
                                            "names": sorted(names)})
                    continue
                per_name.update(names)
            result.kept.append(row)
        return result
