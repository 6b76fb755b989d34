"""MinHash near-duplicate detection: token n-gram hashes in numpy, rensa signatures, banded LSH,
and a similarity check on every candidate.

Where the time went before (120k functions, CPU seconds): building each 5-gram as a string ~22,
a sha1 per shingle ~22, one MinHash object per document ~12; the MinHash arithmetic itself was
~3. Now token hashes come from the UTF-8 bytes in numpy (no string per token), n-gram hashes
are combined from token hashes in numpy, and rensa (Rust) computes the signatures from the flat
hash array. The workers also fold each signature into its band keys. Chunks of documents go to
worker processes a few at a time, so memory holds a window of chunks, the signatures (512 bytes
a document) and the band table (a numpy hash table, 12 bytes a slot), never a copy of the
corpus per process. The main process only looks keys up, in bulk, and checks candidates.

Why the similarity check: a band collision alone removed documents with no earlier partner at
the threshold (precision 80% against exact Jaccard on the bench corpus, some removed pairs at
0.14). A candidate counts only when its signatures agree on at least `threshold` of their
positions (the MinHash estimate of Jaccard). `bench/dedup_bench.py` reports precision and recall
against exact Jaccard for this and for the peers.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from rensa import RMinHash  # pyright: ignore[reportAttributeAccessIssue]  (a compiled module)

_SEED = 1
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)   # odd: combining n token hashes loses no bits
_U64 = np.uint64
CANDIDATE_SLACK = 0.1   # bands are chosen for threshold - this: more candidates, all checked


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7


def _mix(x: np.ndarray) -> np.ndarray:
    """A 64-bit finalizer (murmur3's), so combined n-gram hashes are well spread."""
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> _U64(33))


def _byte_classes() -> np.ndarray:
    """0 for whitespace, 1 for a word byte (letters, digits, "_", and every non-ASCII byte, so
    a UTF-8 letter stays inside its word), 2 for ASCII punctuation (a token of its own)."""
    classes = np.zeros(256, np.uint8)
    for b in range(256):
        c = chr(b)
        if b >= 0x80 or c.isalnum() or c == "_":
            classes[b] = 1
        elif not c.isspace():
            classes[b] = 2
    return classes


_CLASSES = _byte_classes()
# One odd weight per byte position in a token (a longer token reuses them, 128 bytes apart).
_POSITION_WEIGHTS = (np.random.default_rng(_SEED).integers(1, 2**62, size=128, dtype=np.uint64) << _U64(1)) | _U64(1)


def token_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of every token (a run of word bytes, or one punctuation byte), flat, and
    the number of tokens per text.

    Computed over the UTF-8 bytes in numpy, no string per token: a token's hash is the sum of
    its bytes, each times a random odd weight for its position in the token, mixed with the
    token's length, so equal tokens hash equally in any text and in any process, and different
    ones almost never do (on the bench's first 4,000 functions: 11,957 distinct tokens, 11,957
    distinct hashes). The Python tokenizer and one dict lookup per token were 60% of the time;
    an earlier numpy version hashing each byte with the two before it took 2.3x as long.
    """
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    buf = np.frombuffer(b"\n".join(encoded) + b"\n", np.uint8)   # whitespace ends every text
    cls = _CLASSES[buf]
    word = cls == 1
    start = cls == 2                          # a byte that starts a token
    start[1:] |= word[1:] & ~word[:-1]
    start[0] |= word[0]
    inside = np.flatnonzero(cls)              # the bytes of tokens, in order
    first = start[inside]
    starts = np.flatnonzero(first)            # where each token begins, within `inside`
    with np.errstate(over="ignore"):
        if len(starts):
            position = np.arange(len(inside)) - starts[np.cumsum(first) - 1]
            per_byte = buf[inside].astype(_U64) * _POSITION_WEIGHTS[position & (len(_POSITION_WEIGHTS) - 1)]
            sums = np.add.reduceat(per_byte, starts)
            sizes = np.diff(np.append(starts, len(inside))).astype(_U64)
            hashes = _mix(sums ^ (sizes * _NGRAM_BASE))
        else:
            hashes = np.zeros(0, _U64)
    text_starts = np.zeros(len(texts), np.int64)
    np.cumsum(lengths[:-1] + 1, out=text_starts[1:])
    counts = np.add.reduceat(start.astype(np.int64), text_starts) if len(texts) else np.zeros(0, np.int64)
    return hashes, counts


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of each text's token n-grams (words and punctuation), flat, with row offsets.

    A text with fewer than `ngram` tokens has one shingle, all its tokens; an empty one none.
    """
    flat, counts = token_hashes(texts)
    total = len(flat)
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


def optimal_banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """The (bands, rows) that minimize the area of false positives below `threshold` plus
    false negatives above it, equally weighted: the rule datasketch's MinHashLSH uses (and
    its choice, tested), computed here with numpy because importing datasketch took 0.7 s of
    every `generator dedup` command."""
    s = np.linspace(0.0, 1.0, 4001)
    below, above = s <= threshold, s >= threshold
    best, choice = np.inf, (1, 1)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            collide = 1.0 - (1.0 - s ** r) ** b   # probability that a pair at similarity s shares a band
            error = np.trapezoid(collide[below], s[below]) + np.trapezoid(1.0 - collide[above], s[above])
            if error < best:
                best, choice = error, (b, r)
    return choice


@functools.lru_cache(maxsize=8)
def banding(params: MinHashParams) -> tuple[int, int, np.ndarray]:
    """(bands, rows per band, the weights that fold a band's rows into one key): the optimal
    banding for a threshold CANDIDATE_SLACK lower, since every candidate is checked (see
    Clusters). The same in every process."""
    bands, rows = optimal_banding(max(params.threshold - CANDIDATE_SLACK, 0.05), params.num_perm)
    weights = np.random.default_rng(_SEED).integers(1, 2**63, size=rows, dtype=np.uint64) | _U64(1)
    return bands, rows, weights


@dataclass
class SignedChunk:
    """A chunk of documents as the LSH needs them, computed in a worker."""
    sigs: np.ndarray       # (n, num_perm) uint32; all zero for a document without shingles
    keys: np.ndarray       # (n, bands) uint64: one key per band, salted by band (never 0)
    repeated: np.ndarray   # (n,) bool: shares a band key with another document of the chunk


def band_keys(sigs: np.ndarray, params: MinHashParams) -> np.ndarray:
    bands, rows, weights = banding(params)
    used = sigs[:, :bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    with np.errstate(over="ignore"):
        keys = _mix((used * weights).sum(axis=2, dtype=np.uint64) + np.arange(bands, dtype=np.uint64) * _NGRAM_BASE)
    keys[keys == 0] = 1   # 0 marks an empty slot of the table
    return keys


def _signed_chunk(args) -> SignedChunk:
    texts, params = args
    grams, offsets = shingle_hashes(texts, params.ngram)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(grams, offsets, params.num_perm, _SEED)
    n = len(texts)
    sigs = np.fromiter(itertools.chain.from_iterable(matrix.to_rows()), np.uint32,
                       count=n * params.num_perm).reshape(n, params.num_perm)
    sigs[offsets[1:] == offsets[:-1]] = 0   # no shingles: all-zero, never compared (see Clusters)
    keys = band_keys(sigs, params)
    flat = keys.ravel()
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    repeated = np.asarray((counts[inverse] > 1).reshape(keys.shape).any(axis=1))
    return SignedChunk(sigs, keys, repeated)


def _started() -> None:
    """A no-op task: submitting one per worker makes the pool start its processes now."""


@contextlib.contextmanager
def worker_pool(num_proc: int) -> Iterator[ProcessPoolExecutor | None]:
    """Processes that compute signatures (None for one process). They start when this is
    entered, without waiting for them: their start-up (a fresh interpreter importing numpy and
    rensa, about 0.3 s) then overlaps whatever the caller does next, such as reading its input."""
    if num_proc <= 1:
        yield None
        return
    # Not forked: rensa's thread pool, once started in this process, does not survive a fork
    # (a forked worker hangs in its first digest).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["generator.minhash"])   # workers start with it imported
    with ProcessPoolExecutor(num_proc, mp_context=context) as pool:
        for _ in range(num_proc):
            pool.submit(_started)
        yield pool


def sign(texts: list[str], params: MinHashParams, pool: ProcessPoolExecutor | None) -> Future[SignedChunk]:
    """One chunk's signatures and band keys, computed in `pool` (a `worker_pool`), or here and
    now when there is none."""
    if pool is not None:
        return pool.submit(_signed_chunk, (texts, params))
    done: Future[SignedChunk] = Future()
    done.set_result(_signed_chunk((texts, params)))
    return done


def signed_chunks(texts: Sequence[str], params: MinHashParams, num_proc: int = 1,
                  chunk: int = 4000) -> Iterator[SignedChunk]:
    """Signatures and band keys chunk by chunk, in input order; with `num_proc` > 1 at most
    2 x num_proc chunks are in flight."""
    jobs = ((list(texts[i:i + chunk]), params) for i in range(0, len(texts), chunk))
    if num_proc <= 1 or len(texts) <= chunk:
        yield from map(_signed_chunk, jobs)
        return
    with worker_pool(num_proc) as pool:
        assert pool is not None
        window = [pool.submit(_signed_chunk, j) for j in itertools.islice(jobs, 2 * num_proc)]
        while window:
            done = window.pop(0).result()
            window.extend(pool.submit(_signed_chunk, j) for j in itertools.islice(jobs, 1))
            yield done


def signatures(texts: Sequence[str], params: MinHashParams, num_proc: int = 1) -> np.ndarray:
    parts = [c.sigs for c in signed_chunks(texts, params, num_proc)]
    return np.vstack(parts) if parts else np.zeros((0, params.num_perm), np.uint32)


class KeyTable:
    """A hash table from uint64 keys (never 0) to document indices, in numpy: open addressing
    with linear probing, looked up and filled a whole array of keys at a time. A dict of Python
    ints took about 80 bytes and a Python call per key; this takes 12 bytes a slot."""

    MAX_LOAD = 0.6

    def __init__(self, expected: int = 0, capacity: int = 1 << 16) -> None:
        """At least `capacity` slots, and room for `expected` keys from the start (growing
        rehashes every key: for 120k documents, six doublings were a quarter of the LSH's time)."""
        while expected > self.MAX_LOAD * capacity:
            capacity *= 2
        self.keys = np.zeros(capacity, np.uint64)
        self.values = np.zeros(capacity, np.int32)
        self.size = 0

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where absent."""
        mask = _U64(len(self.keys) - 1)
        out = np.full(len(keys), -1, np.int32)
        slots = keys & mask
        pending = np.arange(len(keys))
        while len(pending):
            found = self.keys[slots]
            hit = found == keys[pending]
            out[pending[hit]] = self.values[slots[hit]]
            more = ~hit & (found != 0)
            pending, slots = pending[more], (slots[more] + _U64(1)) & mask
        return out

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add keys that are absent and distinct."""
        if (self.size + len(keys)) > self.MAX_LOAD * len(self.keys):
            self._grow(self.size + len(keys))
        mask = _U64(len(self.keys) - 1)
        slots = keys & mask
        pending = np.arange(len(keys))
        while len(pending):
            free = np.flatnonzero(self.keys[slots] == 0)
            # Keys that want the same free slot all write it; the one that stays there has it.
            want, who = slots[free], pending[free]
            self.keys[want] = keys[who]
            won = self.keys[want] == keys[who]
            self.values[want[won]] = values[who[won]]
            placed = np.zeros(len(pending), bool)
            placed[free[won]] = True
            pending, slots = pending[~placed], (slots[~placed] + _U64(1)) & mask
        self.size += len(keys)

    def _grow(self, need: int) -> None:
        capacity = len(self.keys)
        while need > self.MAX_LOAD * capacity:
            capacity *= 2
        used = self.keys != 0
        keys, values = self.keys[used], self.values[used]
        self.keys, self.values, self.size = np.zeros(capacity, np.uint64), np.zeros(capacity, np.int32), 0
        self.insert(keys, values)


class Clusters:
    """Keep-first near-duplicate clustering, fed signed chunks in input order.

    Each document is looked up in the band table of the documents kept before it; a candidate
    counts when the signatures agree on at least `threshold` of their positions, and the
    document is then a duplicate of the earliest such candidate. Otherwise it is kept and its
    band keys are added (a key already present keeps its first document).

    Candidates are drawn generously, with the banding datasketch's MinHashLSH picks for a
    threshold CANDIDATE_SLACK lower (18 bands of 7 rows at 0.7 and 128 permutations, instead of
    14 of 9), because every candidate is checked: at the threshold's own banding only 44% of
    pairs at exactly 0.7 share a band. Measured against exact Jaccard on the bench's 120k
    functions: precision 96.0%, recall 91.1% (unchecked, at the threshold's banding, as before:
    80.5% and 88.7%). More bands (25 of 5) gained 0.1 point of recall for 35% more time in
    this loop.

    Most documents share no band key with anything: those are found for the whole chunk at
    once (no key in the table, none repeated in the chunk) and kept in bulk. Only the others go
    through the keep-first loop, in order, with their table hits looked up beforehand.
    """

    def __init__(self, params: MinHashParams, documents: int = 0) -> None:
        self.bands, _, _ = banding(params)
        self.table = KeyTable(documents * self.bands)   # at most one key per band of each document
        self._chunks: list[np.ndarray] = []   # every document's signature, chunk by chunk
        self._chunk_starts: list[int] = []
        self._need = int(np.ceil(params.threshold * params.num_perm - 1e-9))
        self.seen = 0

    def _signature(self, index: int) -> np.ndarray:
        chunk = bisect.bisect_right(self._chunk_starts, index) - 1
        return self._chunks[chunk][index - self._chunk_starts[chunk]]

    def add(self, chunk: SignedChunk, absent: np.ndarray | None = None) -> list[int | None]:
        """For each document of the chunk (the next ones in order): the index of the kept
        document it duplicates, or None when it is kept (or has no shingles). Documents where
        `absent` is True (dropped already) take no part, as if they had no shingles."""
        sigs, keys = chunk.sigs, chunk.keys
        if absent is not None and absent.any():
            sigs = np.where(absent[:, None], np.uint32(0), sigs)
        first, n = self.seen, len(sigs)
        self._chunks.append(sigs)
        self._chunk_starts.append(first)
        self.seen += n
        hits = self.table.lookup(keys.ravel()).reshape(keys.shape)
        empty = ~sigs.any(axis=1)
        suspect = ((hits >= 0).any(axis=1) | chunk.repeated) & ~empty
        alone = np.flatnonzero(~suspect & ~empty)
        # Their keys are new and unique: no order to keep.
        self.table.insert(keys[alone].ravel(), np.repeat(alone + first, self.bands).astype(np.int32))
        out: list[int | None] = [None] * n
        local: dict[int, int] = {}   # keys this chunk's kept suspects added, not in the table before
        for row in np.flatnonzero(suspect).tolist():
            row_keys, row_hits = keys[row].tolist(), hits[row].tolist()
            candidates = {v for v in row_hits if v >= 0}
            candidates.update(local[k] for k in row_keys if k in local)
            match = None
            if len(candidates) == 1:   # the common case, without stacking
                (only,) = candidates
                if np.count_nonzero(self._signature(only) == sigs[row]) >= self._need:
                    match = only
            elif candidates:
                ordered = sorted(candidates)
                stacked = np.stack([self._signature(c) for c in ordered])
                agree = (stacked == sigs[row]).sum(axis=1)
                matched = np.flatnonzero(agree >= self._need)
                if len(matched):
                    match = ordered[int(matched[0])]
            out[row] = match
            if match is None:
                for k, v in zip(row_keys, row_hits, strict=True):
                    if v < 0 and k not in local:
                        local[k] = first + row
        if local:
            self.table.insert(np.fromiter(local.keys(), np.uint64, len(local)),
                              np.fromiter(local.values(), np.int32, len(local)))
        return out


def near_duplicates(texts: Sequence[str], keys: Sequence[str], params: MinHashParams,
                    num_proc: int = 1, chunk: int = 4000) -> dict[str, str]:
    """Map each near-duplicate's key to the key of the earliest kept text it matches."""
    clusters = Clusters(params, len(keys))
    duplicate_of: dict[str, str] = {}
    for signed in signed_chunks(texts, params, num_proc, chunk):
        first = clusters.seen
        for offset, match in enumerate(clusters.add(signed)):
            if match is not None:
                duplicate_of[keys[first + offset]] = keys[match]
    return duplicate_of
