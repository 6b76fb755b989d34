"""Near-duplicate detection (generator.minhash): what counts as a duplicate, against exact
Jaccard on the same shingles, and the same answer however the work is split."""

from __future__ import annotations

import random

import numpy as np

from generator.minhash import MinHashParams, near_duplicates, shingle_hashes, signatures

PARAMS = MinHashParams(num_perm=128, ngram=5, threshold=0.7)


def _corpus(n_bases: int = 40, variants: int = 4, seed: int = 0) -> list[str]:
    """Functions of 60 to 120 tokens, each followed by variants with a share of tokens changed,
    so pairs span every similarity."""
    rng = random.Random(seed)
    words = [f"name{i}" for i in range(400)]
    docs = []
    for _ in range(n_bases):
        base = [rng.choice(words) for _ in range(rng.randrange(60, 120))]
        docs.append("def f():\n    return " + " + ".join(base))
        for _ in range(variants):
            share = rng.choice([0.0, 0.02, 0.05, 0.15, 0.3, 0.6])
            changed = [rng.choice(words) if rng.random() < share else w for w in base]
            docs.append("def f():\n    return " + " + ".join(changed))
    rng.shuffle(docs)
    return docs


def _exact_jaccard(docs: list[str]) -> list[set[int]]:
    grams, offsets = shingle_hashes(docs, PARAMS.ngram)
    bounds = offsets.tolist()
    return [set(grams[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_removed_documents_have_a_close_earlier_partner_and_close_pairs_are_removed():
    docs = _corpus()
    sets = _exact_jaccard(docs)
    dups = near_duplicates(docs, [str(i) for i in range(len(docs))], PARAMS)

    def jaccard(a: int, b: int) -> float:
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b])

    for key, of in dups.items():
        x, y = int(key), int(of)
        assert y < x and str(y) not in dups   # the earliest kept document of its cluster
        assert jaccard(x, y) > 0.55, (x, y, jaccard(x, y))   # never a distant pair (estimate noise aside)
    for x in range(len(docs)):
        if any(jaccard(x, y) >= 0.9 for y in range(x) if str(y) not in dups):
            assert str(x) in dups, x   # a clear duplicate of a kept document is always found
    assert dups   # the corpus has duplicates: an empty answer would pass the loops above


def test_short_and_empty_texts():
    grams, offsets = shingle_hashes(["a b", "", "a b", "x y z w v u"], 5)
    counts = np.diff(offsets.astype(np.int64)).tolist()
    assert counts == [1, 0, 1, 2]   # all tokens as one shingle; none; ...; two 5-grams
    assert grams[0] == grams[1]
    dups = near_duplicates(["", "", "a b", "a b"], ["e1", "e2", "s1", "s2"], PARAMS)
    assert dups == {"s2": "s1"}   # empty texts are never compared


def test_shingles_do_not_depend_on_the_batch():
    docs = _corpus(5, 1)
    alone = [shingle_hashes([d], 5)[0].tolist() for d in docs]
    grams, offsets = shingle_hashes(docs, 5)
    bounds = offsets.tolist()
    assert [grams[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)] == alone


def test_the_same_answer_in_one_process_or_several_and_any_chunking():
    docs = _corpus(30, 5, seed=3)
    keys = [str(i) for i in range(len(docs))]
    signatures(docs[:10], PARAMS)   # rensa's threads started here must not hang the workers
    one = near_duplicates(docs, keys, PARAMS)
    assert near_duplicates(docs, keys, PARAMS, num_proc=2, chunk=37) == one
    assert near_duplicates(docs, keys, PARAMS, num_proc=1, chunk=11) == one


def test_banding_is_datasketchs_choice():
    """Our banding rule is datasketch's MinHashLSH rule (we compute it to spare its import)."""
    from datasketch import MinHashLSH

    from generator.minhash import optimal_banding

    for num_perm in (64, 128, 256):
        for threshold in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9):
            lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
            assert optimal_banding(threshold, num_perm) == (lsh.b, lsh.r), (threshold, num_perm)


def test_the_key_table_finds_what_was_put_in_and_nothing_else():
    from generator.minhash import KeyTable

    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(1, 2**64 - 1, size=200_000, dtype=np.uint64))
    table = KeyTable(capacity=16)   # grows many times on the way
    assert len(KeyTable(expected=1_000_000).keys) >= 1_000_000 / KeyTable.MAX_LOAD   # or sized at once
    half = len(keys) // 2
    for start in range(0, half, 7_001):
        part = keys[start:min(start + 7_001, half)]
        table.insert(part, np.arange(start, start + len(part), dtype=np.int32))
    assert table.size == half and table.size <= KeyTable.MAX_LOAD * len(table.keys)
    assert (table.lookup(keys[:half]) == np.arange(half)).all()
    assert (table.lookup(keys[half:]) == -1).all()
    # Keys that collide on their slot (same low bits) all find their place.
    crowded = (np.arange(1, 50, dtype=np.uint64) << np.uint64(40)) | np.uint64(3)
    small = KeyTable(capacity=128)
    small.insert(crowded, np.arange(len(crowded), dtype=np.int32))
    assert (small.lookup(crowded) == np.arange(len(crowded))).all()
