"""MinHash near-duplicate detection with datasketch, made fast for large inputs.

The signatures are datasketch's own: one `update_batch` per document (datasketch's vectorized
path) instead of one `update` per shingle, with the permutations computed once per chunk rather
than once per document, and chunks spread over processes. Clustering follows datasketch's MinHashLSH
(its banding, its query-then-insert rule, in input order), so the duplicates found are the same
as those of the plain one-MinHash-per-document loop (`bench/dedup_bench.py` checks it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SEED = 1


def shingles(text: str, ngram: int) -> set[bytes]:
    """Token n-grams of `text` (words and punctuation), as bytes for hashing."""
    tokens = _TOKEN.findall(text)
    if len(tokens) < ngram:
        return {" ".join(tokens).encode()} if tokens else set()
    return {" ".join(tokens[i:i + ngram]).encode() for i in range(len(tokens) - ngram + 1)}


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7


def _signatures_chunk(args) -> np.ndarray:
    texts, ngram, num_perm = args
    template = MinHash(num_perm=num_perm, seed=_SEED)
    out = np.empty((len(texts), num_perm), dtype=template.hashvalues.dtype)
    for i, text in enumerate(texts):
        # datasketch's own vectorized update, with the permutations made once per chunk.
        m = MinHash(num_perm=num_perm, seed=_SEED, permutations=template.permutations, scheme=template.scheme)
        m.update_batch(shingles(text, ngram))
        out[i] = m.hashvalues
    return out


def signatures(texts: Sequence[str], params: MinHashParams, num_proc: int = 1,
               chunk: int = 2000) -> np.ndarray:
    """One row of datasketch-identical MinHash values per text."""
    jobs = [(list(texts[i:i + chunk]), params.ngram, params.num_perm) for i in range(0, len(texts), chunk)]
    if not jobs:
        return np.empty((0, params.num_perm), dtype=MinHash(params.num_perm, _SEED).hashvalues.dtype)
    if num_proc <= 1 or len(jobs) == 1:
        parts = [_signatures_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(num_proc) as pool:
            parts = list(pool.map(_signatures_chunk, jobs))
    return np.vstack(parts)


def cluster(sigs: np.ndarray, params: MinHashParams, keys: Sequence[str]) -> dict[str, str]:
    """Map each near-duplicate's key to the key of the earliest kept item it collides with.

    Items are visited in order: each is queried against those kept before it and inserted
    only if nothing matched, so the first of a cluster is kept. The banding (b bands of r
    rows) is datasketch MinHashLSH's own choice for the threshold, and a query hits exactly
    when MinHashLSH's would: some band equal. The band tables are plain dicts of band bytes,
    which avoids MinHashLSH's per-call overhead on hundreds of thousands of items.
    """
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    bands, rows = lsh.b, lsh.r
    tables: list[dict[bytes, int]] = [{} for _ in range(bands)]
    duplicate_of: dict[str, str] = {}
    for i, key in enumerate(keys):
        hv = sigs[i]
        band_keys = [hv[j * rows:(j + 1) * rows].tobytes() for j in range(bands)]
        hits = [t[k] for t, k in zip(tables, band_keys, strict=True) if k in t]
        if hits:
            duplicate_of[key] = keys[min(hits)]
        else:
            for t, k in zip(tables, band_keys, strict=True):
                t.setdefault(k, i)
    return duplicate_of


def near_duplicates(texts: Sequence[str], keys: Sequence[str], params: MinHashParams,
                    num_proc: int = 1) -> dict[str, str]:
    return cluster(signatures(texts, params, num_proc), params, keys)
