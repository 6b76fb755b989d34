"""Dedup benchmark: MinHash near-dedup of 100,000+ real code documents, two ways, one run.

- baseline: the straightforward single-process datasketch loop (one MinHash per document,
  one `update` per shingle, MinHashLSH query then insert)
- selfalign: `generator.minhash.near_duplicates` (vectorized signatures in N processes,
  datasketch's banding in dict tables)

Each runs in its own process so peak memory (max RSS, children included) is measured apart.
Documents: every function and method in the installed Python's standard library and
site-packages. Run: python bench/dedup_bench.py [--docs 120000] [--num-proc 2] [--output f.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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


def run_baseline(docs: list[str], threshold: float, num_perm: int, ngram: int) -> dict[str, str]:
    from datasketch import MinHash, MinHashLSH

    from generator.minhash import shingles

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    duplicate_of = {}
    for i, doc in enumerate(docs):
        m = MinHash(num_perm=num_perm, seed=1)
        for s in shingles(doc, ngram):
            m.update(s)
        hits = lsh.query(m)
        if hits:
            duplicate_of[str(i)] = str(min(int(h) for h in hits))
        else:
            lsh.insert(str(i), m)
    return duplicate_of


def run_fast(docs: list[str], threshold: float, num_perm: int, ngram: int, num_proc: int) -> dict[str, str]:
    from generator.minhash import MinHashParams, near_duplicates

    return near_duplicates(docs, [str(i) for i in range(len(docs))], MinHashParams(num_perm, ngram, threshold),
                           num_proc)


def child(args) -> None:
    docs = json.loads(Path(args.corpus).read_text())
    start = time.perf_counter()
    if args.method == "baseline":
        dups = run_baseline(docs, args.threshold, args.num_perm, args.ngram)
    else:
        dups = run_fast(docs, args.threshold, args.num_perm, args.ngram, args.num_proc)
    seconds = time.perf_counter() - start
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    Path(args.result).write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024,
                                             "duplicates": dups}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=120_000)
    ap.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--method", choices=("baseline", "selfalign"), help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:
        child(args)
        return 0
    docs = collect(args.docs)
    print(f"{len(docs)} documents (functions from the standard library and site-packages)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    corpus = work / "corpus.json"
    corpus.write_text(json.dumps(docs))
    results = {}
    for method in ("selfalign", "baseline"):
        print(f"running {method} ...", file=sys.stderr, flush=True)
        out = work / f"{method}.json"
        subprocess.run([sys.executable, __file__, "--method", method, "--corpus", str(corpus), "--result", str(out),
                        "--threshold", str(args.threshold), "--num-perm", str(args.num_perm),
                        "--ngram", str(args.ngram), "--num-proc", str(args.num_proc)], check=True)
        results[method] = json.loads(out.read_text())
    base, fast = results["baseline"], results["selfalign"]
    report = {
        "documents": len(docs), "num_proc": args.num_proc, "threshold": args.threshold,
        "num_perm": args.num_perm, "ngram": args.ngram,
        "baseline": {"seconds": round(base["seconds"], 1), "docs_per_s": round(len(docs) / base["seconds"]),
                     "peak_rss_mb": round(base["peak_rss_mb"])},
        "selfalign": {"seconds": round(fast["seconds"], 1), "docs_per_s": round(len(docs) / fast["seconds"]),
                      "peak_rss_mb": round(fast["peak_rss_mb"])},
        "speedup": round(base["seconds"] / fast["seconds"], 2),
        "duplicates_found": len(base["duplicates"]),
        "same_duplicates": base["duplicates"] == fast["duplicates"],
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["same_duplicates"] else 1


if __name__ == "__main__":
    sys.exit(main())
