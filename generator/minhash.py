"""MinHash near-duplicate detection: hashed token n-grams, rensa signatures, banded LSH, and a
similarity check on every candidate.

Where the time went before (120k functions, CPU seconds): building each 5-gram as a string ~22,
a sha1 per shingle ~22, one MinHash object per document ~12; the MinHash arithmetic itself was
~3. Now each distinct token is hashed once (a dict, so a repeated token costs a lookup), n-gram
hashes are combined from token hashes in numpy, and rensa (Rust) computes the signatures from
the flat hash array. Chunks of documents go to worker processes a few at a time, so memory holds
a window of chunks, the signatures (512 bytes a document) and the band tables, never a copy of
the corpus per process.

Why the similarity check: a band collision alone removed documents with no earlier partner at
the threshold (precision 80% against exact Jaccard on the bench corpus, some removed pairs at
0.14). A candidate counts only when its signatures agree on at least `threshold` of their
positions (the MinHash estimate of Jaccard). `bench/dedup_bench.py` reports precision and recall
against exact Jaccard for this and for the peers.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from datasketch import MinHashLSH
from rensa import RMinHash

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SEED = 1
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)   # odd: combining n token hashes loses no bits
_U64 = np.uint64
CANDIDATE_SLACK = 0.2   # bands are chosen for threshold - this: more candidates, all checked
CHECK_MARGIN = 0.01     # a candidate's estimated Jaccard must reach threshold + this


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7


class _TokenHashes(dict):
    """Stable 64-bit hash per distinct token (the same in every process), computed once."""

    def __missing__(self, token: str) -> int:
        value = self[token] = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return value


def _mix(x: np.ndarray) -> np.ndarray:
    """A 64-bit finalizer (murmur3's), so combined n-gram hashes are well spread."""
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> _U64(33))


def shingle_hashes(texts: Sequence[str], ngram: int, vocab: _TokenHashes | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of each text's token n-grams (words and punctuation), flat, with row offsets.

    A text with fewer than `ngram` tokens has one shingle, all its tokens; an empty one none.
    """
    vocab = _TokenHashes() if vocab is None else vocab
    tokens = [_TOKEN.findall(t) for t in texts]
    counts = np.fromiter(map(len, tokens), np.int64, len(tokens))
    total = int(counts.sum())
    flat = np.fromiter(map(vocab.__getitem__, itertools.chain.from_iterable(tokens)), _U64, total)
    doc = np.repeat(np.arange(len(texts)), counts)
    with np.errstate(over="ignore"):
        m = max(total - ngram + 1, 0)
        grams = np.zeros(m, _U64)
        for k in range(ngram):
            grams = grams * _NGRAM_BASE + flat[k:k + m]
        inside = doc[:m] == doc[ngram - 1:ngram - 1 + m] if m else np.zeros(0, bool)
        grams, owner = grams[inside], doc[:m][inside]
        short = np.flatnonzero((counts > 0) & (counts < ngram))
        if len(short):
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            extra = np.zeros(len(short), _U64)
            for k in range(ngram - 1):
                present = counts[short] > k
                extra[present] = extra[present] * _NGRAM_BASE + flat[starts[short][present] + k]
            grams = np.concatenate((grams, extra))
            owner = np.concatenate((owner, short))
            order = np.argsort(owner, kind="stable")
            grams, owner = grams[order], owner[order]
        grams = _mix(grams)
    offsets = np.zeros(len(texts) + 1, _U64)
    np.cumsum(np.bincount(owner, minlength=len(texts)), out=offsets[1:])
    return grams, offsets


def _signatures_chunk(args) -> np.ndarray:
    texts, ngram, num_perm = args
    grams, offsets = shingle_hashes(texts, ngram)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(grams, offsets, num_perm, _SEED)
    sigs = np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), num_perm)
    sigs[offsets[1:] == offsets[:-1]] = 0   # no shingles: all-zero, never compared (see cluster)
    return sigs


def signature_chunks(texts: Sequence[str], params: MinHashParams, num_proc: int = 1,
                     chunk: int = 4000) -> Iterator[np.ndarray]:
    """Signatures (uint32, num_perm a row) chunk by chunk, in input order; with `num_proc` > 1
    at most 2 x num_proc chunks are in flight."""
    jobs = ((list(texts[i:i + chunk]), params.ngram, params.num_perm) for i in range(0, len(texts), chunk))
    if num_proc <= 1 or len(texts) <= chunk:
        yield from map(_signatures_chunk, jobs)
        return
    # Not forked: rensa's thread pool, once started in this process, does not survive a fork
    # (a forked worker hangs in its first digest).
    with ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("forkserver")) as pool:
        window = [pool.submit(_signatures_chunk, j) for j in itertools.islice(jobs, 2 * num_proc)]
        while window:
            done = window.pop(0).result()
            window.extend(pool.submit(_signatures_chunk, j) for j in itertools.islice(jobs, 1))
            yield done


def signatures(texts: Sequence[str], params: MinHashParams, num_proc: int = 1) -> np.ndarray:
    parts = list(signature_chunks(texts, params, num_proc))
    return np.vstack(parts) if parts else np.zeros((0, params.num_perm), np.uint32)


class Clusters:
    """Keep-first near-duplicate clustering, fed signatures in input order.

    Each document is looked up in the band tables of the documents kept before it; a candidate
    counts when the signatures agree on at least threshold + CHECK_MARGIN of their positions,
    and the document is then a duplicate of the earliest such candidate. Otherwise it is kept
    and its bands are added.

    Candidates are drawn generously, with the banding datasketch's MinHashLSH picks for a
    threshold CANDIDATE_SLACK lower (25 bands of 5 rows at 0.7 and 128 permutations, instead
    of 14 of 9), because every candidate is checked: at the threshold's own banding only 44%
    of pairs at exactly 0.7 share a band. The check sits a point above the threshold because
    a 128-permutation estimate near 0.7 has a standard deviation of about 0.04, and code has
    more pairs just below the threshold than just above it. Measured against exact Jaccard on
    the bench's 120k functions: precision 95.9%, recall 89.2% (unchecked at the threshold's
    banding, as before: 80.5% and 88.7%).
    """

    def __init__(self, params: MinHashParams) -> None:
        self.params = params
        lsh = MinHashLSH(threshold=max(params.threshold - CANDIDATE_SLACK, 0.05), num_perm=params.num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        rng = np.random.default_rng(_SEED)
        self._weights = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | _U64(1)
        self.tables: list[dict[int, int]] = [{} for _ in range(self.bands)]
        self.kept_sigs: list[np.ndarray] = []   # one row per kept document, in keep order
        self._kept_index: dict[int, int] = {}   # document index -> its row in kept_sigs
        self._need = int(np.ceil((params.threshold + CHECK_MARGIN) * params.num_perm - 1e-9))
        self.seen = 0

    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        used = sigs[:, :self.bands * self.rows].astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        with np.errstate(over="ignore"):
            return (used * self._weights).sum(axis=2, dtype=np.uint64)

    def add(self, sigs: np.ndarray) -> list[int | None]:
        """For each row (the next documents in order): the index of the kept document it
        duplicates, or None when it is kept (or has no shingles)."""
        out: list[int | None] = []
        keys = self._band_keys(sigs).tolist()
        empty = ~sigs.any(axis=1)
        for row, band_keys in enumerate(keys):
            index = self.seen
            self.seen += 1
            if empty[row]:
                out.append(None)
                continue
            candidates = {t[k] for t, k in zip(self.tables, band_keys, strict=True) if k in t}
            match = None
            if candidates:
                ordered = sorted(candidates)
                stacked = np.stack([self.kept_sigs[self._kept_index[c]] for c in ordered])
                agree = np.count_nonzero(stacked == sigs[row], axis=1)
                hits = np.flatnonzero(agree >= self._need)
                if len(hits):
                    match = ordered[int(hits[0])]
            out.append(match)
            if match is None:
                self._kept_index[index] = len(self.kept_sigs)
                self.kept_sigs.append(sigs[row].copy())
                for t, k in zip(self.tables, band_keys, strict=True):
                    t.setdefault(k, index)
        return out


def near_duplicates(texts: Sequence[str], keys: Sequence[str], params: MinHashParams,
                    num_proc: int = 1, chunk: int = 4000) -> dict[str, str]:
    """Map each near-duplicate's key to the key of the earliest kept text it matches."""
    clusters = Clusters(params)
    duplicate_of: dict[str, str] = {}
    for sigs in signature_chunks(texts, params, num_proc, chunk):
        first = clusters.seen
        for offset, match in enumerate(clusters.add(sigs)):
            if match is not None:
                duplicate_of[keys[first + offset]] = keys[match]
    return duplicate_of
