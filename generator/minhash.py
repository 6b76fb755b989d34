"""MinHash near-duplicate detection with datasketch, made fast for large inputs.

The signatures are datasketch's own: one `update_batch` per document (datasketch's vectorized
path) instead of one `update` per shingle, with the permutations computed once per chunk rather
than once per document, and chunks spread over processes. Clustering is datasketch's MinHashLSH
with the usual rule, query then insert, in input order, so the duplicates found are the same as
those of the plain one-MinHash-per-document loop (`bench/dedup_bench.py` checks it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SEED = 1
_SCHEME = MinHash(num_perm=1, seed=_SEED).scheme  # the installed datasketch's default


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
    """Map each near-duplicate's key to the key of the earlier item it duplicates.

    Items are visited in order: each is queried against those kept before it and inserted
    only if nothing matched, so the first of a cluster is kept.
    """
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    duplicate_of: dict[str, str] = {}
    for key, hv in zip(keys, sigs, strict=True):
        m = LeanMinHash(seed=_SEED, hashvalues=hv, scheme=_SCHEME)
        hits = lsh.query(m)
        if hits:
            duplicate_of[key] = min(hits, key=_order(keys))
        else:
            lsh.insert(key, m, check_duplication=False)
    return duplicate_of


def _order(keys: Sequence[str]):
    position = {k: i for i, k in enumerate(keys)}
    return position.__getitem__


def near_duplicates(texts: Sequence[str], keys: Sequence[str], params: MinHashParams,
                    num_proc: int = 1) -> dict[str, str]:
    return cluster(signatures(texts, params, num_proc), params, keys)
