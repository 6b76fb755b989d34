"""Dedup benchmark: MinHash near-dedup of 120,000 real code documents by us and by the peers that
install from PyPI, in one run, with precision and recall against exact Jaccard.

Methods (each in its own process, so peak memory, children included, is measured apart):
- selfalign: `generator.minhash.near_duplicates` with --num-proc processes, and with one
- selfalign-cli: the user's path, `python -m generator dedup --num-proc N` as a command on the
  documents as JSONL response rows (process start, reading and writing JSONL, the exact dedup
  and the near dedup), timed from outside
- rensa-lsh: rensa's RMinHash per document and its RMinHashLSH, query then insert (keep-first)
- rensa-bulk: rensa's bulk digests (`from_token_sets`), then the same LSH loop
- rensa-dedup: rensa's RMinHashDeduplicator (its LSH plus its own similarity check)
- datatrove: its four MinHash steps (signatures, buckets, clusters, filter) on local executors
  with --num-proc tasks and workers, banded as datasketch bands for the threshold (14 x 9 at
  0.7), its own text normalization, the peers' tokens (`pip install datatrove`; skipped
  without it)
- datasketch: one MinHash per document, one `update` per shingle, MinHashLSH query then insert
The peers get the same shingles a user of them would build: 5-grams of the same tokens, as strings.

Truth: every document that has an earlier document with exact Jaccard >= the threshold on the
same token 5-grams, found exactly (prefix filtering, then exact set intersection). Precision is
the share of removed documents that have such a partner, recall the share of such documents
removed. Documents: every function and method in the installed Python's standard library and
site-packages. Speed is reported as min and median of --repeat runs; ratios are to the fastest
rensa method in the same run.

Scaling: --scale adds a curve of `selfalign` alone over corpus sizes; sizes beyond the real
functions are grown with mutated copies of them (`synthetic`).

Run: python bench/dedup_bench.py [--docs 120000] [--num-proc 2] [--repeat 3] [--scale 10000,30000,1000000]
"""

from __future__ import annotations

import argparse
import ast
import collections
import hashlib
import importlib.util
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "selfalign" / "dedup-bench"
TOKEN = re.compile(r"\w+|[^\w\s]")
FAST = ("selfalign", "selfalign-1proc", "selfalign-cli", "rensa-lsh", "rensa-bulk", "rensa-dedup")
SLOW = ("datatrove", "datasketch")   # run once: a minute or more each


def collect(limit: int) -> list[str]:
    docs: list[str] = []
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen: set[Path] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if path in seen:
                continue
            seen.add(path)
            try:
                src = path.read_text(encoding="utf-8")
                tree = ast.parse(src)
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            lines = src.splitlines()
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                    docs.append("\n".join(lines[node.lineno - 1:node.end_lineno]))
                    if len(docs) >= limit:
                        return docs
    return docs


def synthetic(docs: list[str], n: int, seed: int = 0) -> list[str]:
    """The corpus grown to `n` documents for the scaling curve: each extra document is a real
    one with a random share (2 to 60%) of its tokens replaced by tokens from elsewhere, so the
    larger corpora have every kind of near-duplicate, as generated data does."""
    import random

    rng = random.Random(seed)
    vocabulary = [t for d in docs[:2000] for t in TOKEN.findall(d)]
    out = list(docs)
    while len(out) < n:
        tokens = TOKEN.findall(docs[rng.randrange(len(docs))])
        share = rng.uniform(0.02, 0.6)
        out.append(" ".join(rng.choice(vocabulary) if rng.random() < share else t for t in tokens))
    return out


def string_shingles(text: str, ngram: int) -> list[str]:
    tokens = TOKEN.findall(text)
    if len(tokens) < ngram:
        return [" ".join(tokens)] if tokens else []
    return list({" ".join(tokens[i:i + ngram]) for i in range(len(tokens) - ngram + 1)})


# -- truth -------------------------------------------------------------------------------

def with_earlier_partner(docs: list[str], ngram: int, threshold: float) -> set[int]:
    """Documents with an earlier document at exact Jaccard >= threshold (prefix filtering: two
    sets that similar share a token among the first |x| - ceil(t|x|) + 1 of each, in one global
    order, rarest first)."""
    from generator.minhash import shingle_hashes

    sets = []
    for i in range(0, len(docs), 5000):
        grams, offsets = shingle_hashes(docs[i:i + 5000], ngram)
        bounds = offsets.tolist()
        sets.extend(set(grams[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    freq = collections.Counter(h for s in sets for h in s)
    index: dict[int, list[int]] = collections.defaultdict(list)
    found: set[int] = set()
    for x, sx in enumerate(sets):
        n = len(sx)
        if not n:
            continue
        prefix = sorted(sx, key=lambda h: (freq[h], h))[:n - math.ceil(threshold * n - 1e-9) + 1]
        tried: set[int] = set()
        for token in prefix:
            for y in index.get(token, ()):
                if y in tried or not threshold * n - 1e-9 <= len(sets[y]) <= n / threshold + 1e-9:
                    continue
                tried.add(y)
                inter = len(sx & sets[y])
                if inter / (n + len(sets[y]) - inter) >= threshold - 1e-12:
                    found.add(x)
                    break
            if x in found:
                break
        for token in prefix:
            index[token].append(x)
    return found


# -- methods -----------------------------------------------------------------------------

def run_method(method: str, docs: list[str], threshold: float, num_perm: int, ngram: int, num_proc: int) -> list[int]:
    """The indices of the documents each method removes."""
    if method.startswith("selfalign"):
        from generator.minhash import MinHashParams, near_duplicates

        procs = 1 if method == "selfalign-1proc" else num_proc
        dups = near_duplicates(docs, [str(i) for i in range(len(docs))], MinHashParams(num_perm, ngram, threshold),
                               procs)
        return sorted(int(k) for k in dups)
    if method.startswith("rensa"):
        import rensa

        if method == "rensa-dedup":
            dedup = rensa.RMinHashDeduplicator(threshold=threshold, num_perm=num_perm, use_lsh=True, num_bands=16)
            removed = []
            for i, doc in enumerate(docs):
                m = rensa.RMinHash(num_perm, 42)
                m.update(string_shingles(doc, ngram))
                if not dedup.add(str(i), m):
                    removed.append(i)
            return removed
        lsh = rensa.RMinHashLSH(threshold, num_perm, 16)
        if method == "rensa-bulk":
            minhashes = rensa.RMinHash.from_token_sets([string_shingles(d, ngram) for d in docs], num_perm, 42)
        else:
            minhashes = None
        removed = []
        for i, doc in enumerate(docs):
            if minhashes is not None:
                m = minhashes[i]
            else:
                m = rensa.RMinHash(num_perm, 42)
                m.update(string_shingles(doc, ngram))
            if lsh.query(m):
                removed.append(i)
            else:
                lsh.insert(i, m)
        return removed
    if method == "datatrove":
        return datatrove_removed(docs, threshold, num_perm, ngram, num_proc)
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    removed = []
    for i, doc in enumerate(docs):
        m = MinHash(num_perm=num_perm, seed=1)
        for s in string_shingles(doc, ngram):
            m.update(s.encode())
        if lsh.query(m):
            removed.append(i)
        else:
            lsh.insert(str(i), m)
    return removed


if importlib.util.find_spec("datatrove") is not None:
    from datatrove.utils.word_tokenizers import WordTokenizer

    class CodeTokens(WordTokenizer):
        """The peers' tokens (`TOKEN`) for datatrove: its own word tokenizers need spaCy."""

        def word_tokenize(self, text: str) -> list[str]:
            return TOKEN.findall(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [m.span() for m in TOKEN.finditer(text)]


def datatrove_removed(docs: list[str], threshold: float, num_perm: int, ngram: int, num_proc: int) -> list[int]:
    os.environ.setdefault("LOGURU_LEVEL", "ERROR")
    import gzip

    from datasketch import MinHashLSH
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.writers import JsonlWriter

    banding = MinHashLSH(threshold=threshold, num_perm=num_perm)
    config = MinhashConfig(n_grams=ngram, num_buckets=banding.b, hashes_per_bucket=banding.r)
    work = tempfile.mkdtemp(prefix="datatrove-")
    size = math.ceil(len(docs) / num_proc)

    def shard(data, rank: int = 0, world_size: int = 1):
        for i in range(rank * size, min(len(docs), (rank + 1) * size)):
            yield Document(text=docs[i], id=str(i))

    def run(pipeline, tasks: int, name: str) -> None:
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(tasks, num_proc),
                              logging_dir=f"{work}/logs-{name}").run()

    run([shard, MinhashDedupSignature(output_folder=f"{work}/sigs", config=config, language=CodeTokens())],
        num_proc, "sigs")
    run([MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=config)],
        config.num_buckets, "buckets")
    run([MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove", config=config)],
        1, "cluster")
    run([shard, MinhashDedupFilter(input_folder=f"{work}/remove",
                                   exclusion_writer=JsonlWriter(f"{work}/removed"))], num_proc, "filter")
    removed = []
    for path in sorted(Path(work, "removed").glob("*")):
        with gzip.open(path, "rt") as f:
            removed += [int(json.loads(line)["id"]) for line in f if line.strip()]
    return sorted(removed)


def child(args) -> None:
    docs = json.loads(Path(args.corpus).read_text())[:args.docs]
    start = time.perf_counter()
    removed = run_method(args.method, docs, args.threshold, args.num_perm, args.ngram, args.num_proc)
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    workers_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(args.result).write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024,
                                             "workers_peak_rss_mb": workers_kb / 1024, "removed": removed}))


def measure_cli(corpus: Path, n: int, args, work: Path) -> dict:
    """`generator dedup` as a user runs it, on the documents as response rows."""
    rows = work / f"rows-{n}.jsonl"
    if not rows.exists():
        docs = json.loads(corpus.read_text())[:n]
        with open(rows, "w", encoding="utf-8") as f:
            for i, doc in enumerate(docs):
                f.write(json.dumps({"id": str(i), "instruction": f"task {i}", "response": doc}) + "\n")
    out = work / f"cli-{n}.jsonl"
    for path in work.glob(f"cli-{n}*"):
        path.unlink()
    command = [sys.executable, "-m", "generator", "dedup", "--input", str(rows), "--output", str(out),
               "--num-proc", str(args.num_proc), "--no-progress", f"dedup.threshold={args.threshold}",
               f"dedup.num_perm={args.num_perm}", f"dedup.ngram={args.ngram}"]
    # Through a wrapper whose only child is the command, so its peak RSS is the command's own.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, cwd=ROOT, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    kept = {json.loads(line)["id"] for line in open(out, encoding="utf-8")}
    return {"seconds": seconds, "peak_rss_mb": int(done.stdout.split()[-1]) / 1024, "workers_peak_rss_mb": 0,
            "removed": sorted(i for i in range(n) if str(i) not in kept)}


def measure(method: str, corpus: Path, n: int, args, work: Path) -> dict:
    if method == "selfalign-cli":
        return measure_cli(corpus, n, args, work)
    out = work / f"{method}-{n}.json"
    subprocess.run([sys.executable, __file__, "--method", method, "--corpus", str(corpus), "--result", str(out),
                    "--docs", str(n), "--threshold", str(args.threshold), "--num-perm", str(args.num_perm),
                    "--ngram", str(args.ngram), "--num-proc", str(args.num_proc)], check=True)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=120_000)
    ap.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", default=",".join(FAST + SLOW))
    ap.add_argument("--scale", default="", help="also run selfalign on these corpus sizes, e.g. 10000,30000,60000")
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:
        child(args)
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    corpus = CACHE / f"corpus-{args.docs}.json"
    if not corpus.exists():
        corpus.write_text(json.dumps(collect(args.docs)))
    docs = json.loads(corpus.read_text())
    key = hashlib.sha256(corpus.read_bytes() + f"{args.ngram} {args.threshold}".encode()).hexdigest()[:16]
    truth_file = CACHE / f"truth-{key}.json"
    if not truth_file.exists():
        print("finding every pair at exact Jaccard >= the threshold (once per corpus) ...", file=sys.stderr)
        truth_file.write_text(json.dumps(sorted(with_earlier_partner(docs, args.ngram, args.threshold))))
    truth = set(json.loads(truth_file.read_text()))
    print(f"{len(docs)} documents, {len(truth)} with an earlier partner at >= {args.threshold}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    rows = {}
    for method in args.methods.split(","):
        if method == "datatrove" and importlib.util.find_spec("datatrove") is None:
            print("skipping datatrove: not installed (pip install 'selfalign[bench]')", file=sys.stderr)
            continue
        runs = []
        for _ in range(args.repeat if method in FAST else 1):
            print(f"running {method} ...", file=sys.stderr, flush=True)
            runs.append(measure(method, corpus, len(docs), args, work))
        removed = set(runs[0]["removed"])
        hit = len(removed & truth)
        seconds = [r["seconds"] for r in runs]
        rows[method] = {
            "docs_per_s_median": round(len(docs) / statistics.median(seconds)),
            "docs_per_s_best": round(len(docs) / min(seconds)),
            "seconds": [round(s, 1) for s in seconds],
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
            "workers_peak_rss_mb": round(max(r["workers_peak_rss_mb"] for r in runs)),
            "removed": len(removed),
            "precision": round(hit / len(removed), 4) if removed else None,
            "recall": round(hit / len(truth), 4) if truth else None,
            "same_result_every_run": all(r["removed"] == runs[0]["removed"] for r in runs),
        }
    rensa_best = max((r["docs_per_s_median"] for m, r in rows.items() if m.startswith("rensa")), default=None)
    for row in rows.values():
        row["vs_fastest_rensa"] = round(row["docs_per_s_median"] / rensa_best, 2) if rensa_best else None
    report = {"documents": len(docs), "num_proc": args.num_proc, "threshold": args.threshold,
              "num_perm": args.num_perm, "ngram": args.ngram, "repeat": args.repeat,
              "with_earlier_partner": len(truth), "methods": rows}
    if args.scale:
        curve = []
        for n in sorted({int(x) for x in args.scale.split(",")} | {len(docs)}):
            source = corpus
            if n > len(docs):   # beyond the real functions: grown with mutated copies (see synthetic)
                source = CACHE / f"corpus-{args.docs}-grown-{n}.json"
                if not source.exists():
                    source.write_text(json.dumps(synthetic(docs, n)))
            r = measure("selfalign", source, n, args, work)
            curve.append({"docs": n, "docs_per_s": round(n / r["seconds"]), "peak_rss_mb": round(r["peak_rss_mb"]),
                          "synthetic": n > len(docs)})
        report["scaling"] = curve
    text = json.dumps(report, indent=2)
    print(text)
    print("\n| method | docs/s (median, best) | vs fastest rensa | peak RSS (each worker) | removed | precision "
          "| recall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m, r in rows.items():
        workers = f" ({r['workers_peak_rss_mb']} MB)" if m == "selfalign" else ""
        print(f"| {m} | {r['docs_per_s_median']:,} ({r['docs_per_s_best']:,}) | {r['vs_fastest_rensa']} | "
              f"{r['peak_rss_mb']} MB{workers} | {r['removed']:,} | {r['precision']:.1%} | {r['recall']:.1%} |")
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
