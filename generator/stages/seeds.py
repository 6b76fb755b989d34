"""S: seed functions from real code.

A function is kept as a seed only if it stands alone: every name it uses but does not define is
a builtin or imported at the top of its module, and those imports are copied in front of it.
It must also have a docstring and at least one argument, return a value, have at most 150
lines, contain no TODO/FIXME/BUG, use none of the banned modules, and contain no benchmark
prompt or solution. Near-duplicates (MinHash, Jaccard 0.5) are then removed.

Two rule sets: `original` applies the marker words and banned imports as the original pipeline
did (case-insensitive substrings of the seed, so "debug" counts as "bug" and "import os" also
bans "import ossaudiodev"); `precise` matches marker words as whole words and banned modules by
the imports the function really uses. A file that does not parse as a whole still gives the
top-level functions that parse on their own.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import hashlib
import json
import re
import symtable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.texts import load_benchmarks
from generator.contamination import ContaminationIndex
from generator.minhash import MinHashParams, near_duplicates
from generator.rows import is_dataset_name, read_rows, seed_sha1
from generator.runner import Input
from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig

BANNED_MODULES = frozenset({"os", "sys", "subprocess", "argparse", "setuptools", "distutils",
                            "matplotlib", "seaborn"})
MARKERS = ("todo", "fixme", "bug")
_MARKER_WORDS = re.compile(r"\b(?:todo|fixme|bug)\b", re.I)
BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__"}
CODE_FIELDS = ("seed", "content", "code", "function", "text")
# The authors' released seed sets (the model card lists them): read as they are by default.
RELEASED_SEEDS = ("bigcode/python-stack-v1-functions-filtered", "bigcode/python-stack-v1-functions-filtered-sc2")


@dataclass
class SeedFilter:
    max_lines: int = 150
    banned_modules: frozenset[str] = BANNED_MODULES
    contamination: ContaminationIndex | None = None
    rules: str = "precise"   # or "original"

    def __post_init__(self) -> None:
        if self.rules not in ("original", "precise"):
            raise ValueError(f"[seeds] rules must be 'original' or 'precise', not {self.rules!r}")

    def functions(self, source: str, origin: str) -> Iterator[tuple[dict, str | None]]:
        """Yield (seed row, None) for each kept function and ({"name", "line"}, reason) for each
        dropped one, so a reject says which function of which file it was."""
        try:
            modules = [(ast.parse(source), source)]
        except (SyntaxError, ValueError):
            modules = _parsable_pieces(source)
            if not modules:
                yield {"name": None, "line": None}, "syntax_error"
                return
        imports: dict[str, str] = {}
        for module, _ in modules:
            imports.update(_module_imports(module))
        for module, text_of_module in modules:
            lines = text_of_module.splitlines()
            for node in module.body:
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                text = "\n".join(lines[start - 1:node.end_lineno])
                seed, reason = self.check(node, text, imports, origin)
                if seed is not None and reason is None:
                    yield seed, None
                else:
                    yield {"name": node.name, "line": node.lineno}, reason or "rejected"

    def check(self, node: ast.FunctionDef | ast.AsyncFunctionDef, text: str, imports: dict[str, str],
              origin: str) -> tuple[dict | None, str | None]:
        if ast.get_docstring(node) is None:
            return None, "no_docstring"
        args = node.args
        if not (args.posonlyargs or args.args or args.kwonlyargs or args.vararg or args.kwarg):
            return None, "no_arguments"
        if not _returns_value(node):
            return None, "no_return_value"
        if text.count("\n") + 1 > self.max_lines:
            return None, "too_long"
        if self.rules == "original" and any(m in text.lower() for m in MARKERS):
            return None, "todo_fixme_bug"
        if self.rules == "precise" and _MARKER_WORDS.search(text):
            return None, "todo_fixme_bug"
        free = _free_names(text, node.name)
        if free is None:
            return None, "syntax_error"
        missing = sorted(n for n in free if n not in BUILTINS and n not in imports)
        if missing:
            return None, "not_standalone"
        needed = sorted({imports[n] for n in free if n in imports})
        used_modules = {_top_module(s) for s in needed} | _imported_modules(node)
        seed = ("\n".join(needed) + "\n\n" if needed else "") + text.strip() + "\n"
        if self.rules == "precise" and used_modules & self.banned_modules:
            return None, "banned_import"
        if self.rules == "original" and any(f"{kind} {m}" in seed.lower() for m in self.banned_modules
                                            for kind in ("import", "from")):
            return None, "banned_import"
        if self.contamination is not None and self.contamination.contaminated(seed):
            return None, "benchmark_contamination"
        digest = hashlib.sha256(seed.encode()).hexdigest()[:16]
        return {"id": f"seed-{digest}", "seed": seed, "name": node.name, "origin": origin,
                "lineno": node.lineno, "sha1": seed_sha1(seed)}, None


def _parsable_pieces(source: str) -> list[tuple[ast.Module, str]]:
    """Top-level statements of a file that does not parse as a whole, each parsed on its own.

    A piece starts at a line with no indentation and runs to the next one (decorators stay with
    their function), so one broken function (Python 2 syntax, a merge conflict) does not take
    every other function of its file with it.
    """
    lines = source.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t", "\n", "\r", "#", ")", "]", "}")
              and not (i and lines[i - 1].lstrip().startswith("@"))]
    pieces = []
    for a, b in zip(starts, [*starts[1:], len(lines)], strict=True):
        text = "".join(lines[a:b])
        try:
            pieces.append((ast.parse(text), text))
        except (SyntaxError, ValueError):
            continue
    return pieces


def _module_imports(module: ast.Module) -> dict[str, str]:
    """Name bound by each top-level import -> the import statement that binds it."""
    found: dict[str, str] = {}
    for node in module.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                stmt = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                found[name] = stmt if alias.asname or "." not in alias.name else f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name == "*":
                    continue
                name = alias.asname or alias.name
                found[name] = f"from {node.module} import {alias.name}" + (
                    f" as {alias.asname}" if alias.asname else "")
    return found


def _top_module(stmt: str) -> str:
    return stmt.split()[1].split(".")[0]


def _imported_modules(node: ast.AST) -> set[str]:
    mods = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            mods |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            mods.add(n.module.split(".")[0])
    return mods


def _returns_value(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A `return <value>` in the function itself (not in a nested function or class)."""
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return False
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def _free_names(text: str, own_name: str) -> set[str] | None:
    """Names the function reads from module scope, found with the compiler's own symbol tables."""
    try:
        table = symtable.symtable(text, "<seed>", "exec")
    except SyntaxError:
        return None
    free: set[str] = set()

    def visit(t: symtable.SymbolTable) -> None:
        for sym in t.get_symbols():
            if sym.is_referenced() and sym.is_global():
                free.add(sym.get_name())
        for child in t.get_children():
            visit(child)

    for child in table.get_children():
        visit(child)
    # Names only a decorator or default uses are looked up in the module table itself.
    for sym in table.get_symbols():
        if sym.is_referenced() and not sym.is_assigned() and not sym.is_imported():
            free.add(sym.get_name())
    free.discard(own_name)
    return free


def iter_sources(source: str) -> Iterator[dict]:
    """Rows of {"code", "origin"} from a folder of .py files, a .py file, or rows (a JSONL or
    Parquet file, a saved dataset folder, a Hugging Face dataset name) with a code field."""
    path = Path(source)
    if path.is_dir() and not (path / "state.json").exists():
        for file in sorted(path.rglob("*.py")):
            yield {"code": _read(file), "origin": str(file.relative_to(path))}
    elif path.is_file() and path.suffix == ".py":
        yield {"code": _read(path), "origin": path.name}
    else:
        first = 1 if path.suffix in (".jsonl", ".json") else 0   # JSONL rows by line number
        for i, row in enumerate(read_rows(source, streaming=True), first):
            yield _code_row(row, f"{path.name if path.exists() else source}:{i}")


def seeds_input(source: str) -> Input:
    """The seeds step's input: the source's rows, fingerprinted by its files' names, sizes and
    times (a hub dataset by its name), so that reading gigabytes is not needed to resume."""
    if not source:
        raise ValueError("[seeds] source is required (a folder, a .py/.jsonl/.parquet file or a dataset name)")
    path = Path(source)
    if not path.exists() and not is_dataset_name(source):
        raise FileNotFoundError(f"seed source {source!r} is not a folder, .py, .jsonl, .parquet "
                                "or a Hugging Face dataset name")
    if not path.exists():
        fingerprint = f"dataset:{source}"
    else:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        fingerprint = "|".join(f"{f}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)
    return Input(_Sources(source), fingerprint)


class _Sources:
    def __init__(self, source: str) -> None:
        self.source = source

    def __iter__(self) -> Iterator[dict]:
        return iter_sources(self.source)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _code_row(row: dict, origin: str) -> dict:
    """A source row's code, and the released seed sets' own `sha1` and `id` (kept for the export)."""
    for name in CODE_FIELDS:
        if isinstance(row.get(name), str):
            code = {"code": row[name], "origin": row.get("origin", origin)}
            if isinstance(row.get("sha1"), str):
                code["sha1"] = row["sha1"]
            if isinstance(row.get("id"), int) and not isinstance(row.get("id"), bool):
                code["seed_index"] = row["id"]
            return code
    raise ValueError(f"{origin}: no code field (looked for {', '.join(CODE_FIELDS)})")


def _as_released(row: dict) -> dict:
    """One row of a released seed set, as it is: its code is the seed, unfiltered and unchanged."""
    seed = row["code"]
    name = None
    try:
        name = next((n.name for n in ast.parse(seed).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
                    None)
    except (SyntaxError, ValueError):
        pass
    digest = hashlib.sha256(f"{row['origin']}\x1f{seed}".encode()).hexdigest()[:16]   # one id per row
    released = {"sha1": row.get("sha1") or seed_sha1(seed)}
    if "seed_index" in row:
        released["seed_index"] = row["seed_index"]
    return {"id": f"seed-{digest}", "seed": seed, "name": name, "origin": row["origin"], "lineno": None,
            **released}


_worker_filter: SeedFilter | None = None


def _init_worker(seed_filter: SeedFilter) -> None:
    global _worker_filter
    _worker_filter = seed_filter


def _extract(row: dict, seed_filter: SeedFilter | None = None) -> list[tuple[dict, str | None]]:
    active = seed_filter or _worker_filter
    assert active is not None   # a worker got its filter from _init_worker
    return list(active.functions(row["code"], row["origin"]))


class ExtractSeeds(Stage):
    """Source files or rows -> candidate seed functions (filters applied, not deduplicated)."""

    name = "seeds.extract"
    batch_size = 256

    def __init__(self, output, seed_filter: SeedFilter, progress=True, num_proc: int = 1, as_is: bool = False):
        super().__init__(output, progress)
        self.filter = seed_filter
        self.num_proc = num_proc
        self.as_is = as_is
        self._pool = None

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> ExtractSeeds:
        b = cfg.benchmarks
        # Seeds are checked as the original did: benchmark strings as they are (case-sensitive).
        index = ContaminationIndex(load_benchmarks(b.builtin, b.files), case_sensitive=True)
        seed_filter = SeedFilter(max_lines=cfg.seeds.max_lines, contamination=index, rules=cfg.seeds.rules)
        return cls(output, seed_filter, cfg.progress, cfg.num_proc, as_is=cfg.seeds.seeds_as_is())

    def settings(self) -> dict:
        f = self.filter
        if self.as_is:
            return {"as_is": True}
        return {"max_lines": f.max_lines, "rules": f.rules, "banned": sorted(f.banned_modules),
                "benchmarks": f.contamination.fingerprint if f.contamination else None}

    def process_batch(self, rows: list[dict]) -> BatchResult:
        if self.as_is:
            return BatchResult(kept=[_as_released(row) for row in rows])
        if self.num_proc > 1:
            if self._pool is None:
                from concurrent.futures import ProcessPoolExecutor

                # The filter (with its benchmark index) goes to each worker once, not per row.
                self._pool = ProcessPoolExecutor(self.num_proc, initializer=_init_worker, initargs=(self.filter,))
            found = list(self._pool.map(_extract, rows, chunksize=8))
        else:
            found = [_extract(row, self.filter) for row in rows]
        result = BatchResult()
        for row, functions in zip(rows, found, strict=True):
            for seed, reason in functions:
                if reason is None:
                    result.kept.append(seed)
                else:
                    result.rejected.append({"origin": row["origin"], **seed, "reason": reason})
        return result

    def run(self, *args, **kwargs):
        try:
            return super().run(*args, **kwargs)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


class DedupSeeds(Stage):
    """Exact and near-duplicate removal of candidate seeds (MinHash, Jaccard 0.5 by default)."""

    name = "seeds.dedup"
    keeps_rows_as_read = True
    batch_size = WHOLE_INPUT

    def __init__(self, output, params: MinHashParams, num_proc: int = 1, progress=True):
        super().__init__(output, progress)
        self.params = params
        self.num_proc = num_proc

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> DedupSeeds:
        return cls(output, MinHashParams(threshold=cfg.seeds.dedup_threshold), cfg.num_proc, cfg.progress)

    def settings(self) -> dict:
        return dataclasses.asdict(self.params)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        result = BatchResult()
        unique: dict[str, dict] = {}
        for row in rows:
            if row["id"] in unique:
                result.rejected.append({"id": row["id"], "origin": row["origin"], "reason": "exact_duplicate"})
            else:
                unique[row["id"]] = row
        kept = list(unique.values())
        dup_of = near_duplicates([r["seed"] for r in kept], [r["id"] for r in kept], self.params, self.num_proc)
        for row in kept:
            if row["id"] in dup_of:
                result.rejected.append({"id": row["id"], "origin": row["origin"], "reason": "near_duplicate",
                                        "duplicate_of": dup_of[row["id"]]})
            else:
                result.kept.append(row)
        return result


class TypecheckSeeds(Stage):
    """Optional: drop seeds that Pyright reports errors in (basic mode, one file per seed)."""

    name = "seeds.typecheck"
    keeps_rows_as_read = True
    batch_size = 256

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> TypecheckSeeds:
        return cls(output, cfg.progress)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        import shutil
        import subprocess
        import tempfile

        pyright = shutil.which("pyright")
        if pyright is None:
            raise RuntimeError("the seeds type check needs Pyright: pip install pyright (it fetches Node's package)")
        result = BatchResult()
        with tempfile.TemporaryDirectory(prefix="seeds-pyright-") as tmp:
            files = {}
            for i, row in enumerate(rows):
                path = Path(tmp) / f"seed_{i}.py"
                path.write_text(row["seed"])
                files[str(path)] = row
            proc = subprocess.run([pyright, "--outputjson", tmp], capture_output=True, text=True)
            try:
                report = json.loads(proc.stdout)
            except ValueError:
                raise RuntimeError(f"pyright failed: {proc.stderr[-2000:] or proc.stdout[-2000:]}") from None
        errors: dict[str, str] = {}
        for diag in report.get("generalDiagnostics", []):
            if diag.get("severity") == "error":
                errors.setdefault(diag["file"], diag.get("message", ""))
        for path, row in files.items():
            if path in errors:
                result.rejected.append({"id": row["id"], "reason": "type_error", "message": errors[path]})
            else:
                result.kept.append(row)
        return result
