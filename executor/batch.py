"""`run-batch`: execute a JSONL file of programs into a JSONL file of results.

Resumable: results are appended and flushed as they arrive, and a re-run with the same output
file skips ids that already have a result (a line cut short by a crash is dropped and redone).

Every input row gets exactly one output row, so the output lines up with the input: a bad input
line gets `{"id", "line", "status": "INVALID_INPUT", "reason"}` (its id, or null when it has
none), and a program the server refused (too large, bad limits) gets `{"id", "line", "status":
"REJECTED", "code", "reason"}`. Both are reported in the summary with their line numbers too.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from executor.client import Client, Rejected
from executor.jobs import ExecutionResult, Limits, Program


@dataclass
class BatchReport:
    total_rows: int = 0
    skipped_done: int = 0
    executed: int = 0
    by_status: collections.Counter = field(default_factory=collections.Counter)
    input_errors: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.executed} executed, {self.skipped_done} already done, "
                 f"{len(self.input_errors)} bad input line(s), {len(self.rejected)} rejected"]
        for status, n in sorted(self.by_status.items()):
            lines.append(f"  {status:<14} {n}")
        for msg in self.input_errors[:20] + self.rejected[:20]:
            lines.append(f"  ! {msg}")
        hidden = max(0, len(self.input_errors) - 20) + max(0, len(self.rejected) - 20)
        if hidden:
            lines.append(f"  ! ... and {hidden} more")
        return "\n".join(lines)


INVALID_INPUT, REJECTED = "INVALID_INPUT", "REJECTED"


def read_done_ids(output: Path) -> set[str]:
    """Ids that already have a result, and `line:N` for input lines already answered as invalid.
    A partial last line left by a crash is dropped, and so are SANDBOX_ERROR rows: a sandbox
    failure says nothing about the program, so it runs again."""
    done: set[str] = set()
    if not output.exists() or not output.is_file():
        return done
    data = output.read_bytes()
    kept: list[bytes] = []
    for line in data[:data.rfind(b"\n") + 1].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or "id" not in row or row.get("status") == "SANDBOX_ERROR":
            continue
        if row.get("status") == INVALID_INPUT:
            done.add(f"line:{row.get('line')}")
        else:
            done.add(row["id"])
        kept.append(line)
    rewritten = b"".join(line + b"\n" for line in kept)
    if rewritten != data:
        tmp = output.with_suffix(output.suffix + ".tmp")
        tmp.write_bytes(rewritten)
        os.replace(tmp, output)
    return done


def parse_row(line: bytes, lineno: int) -> tuple[Program | None, str | None]:
    try:
        row = json.loads(line)
    except ValueError as exc:   # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        return None, f"line {lineno}: not valid JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else exc})"
    if not isinstance(row, dict):
        return None, f"line {lineno}: expected a JSON object"
    rid, code = row.get("id"), row.get("code")
    if not isinstance(rid, str) or not rid:
        return None, f"line {lineno}: 'id' must be a non-empty string"
    if not isinstance(code, str):
        return None, f"line {lineno}: 'code' must be a string (id {rid!r})"
    stdin = row.get("stdin", "")
    if not isinstance(stdin, str):
        return None, f"line {lineno}: 'stdin' must be a string (id {rid!r})"
    timeout, memory = row.get("timeout_s"), row.get("memory_mb")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not math.isfinite(timeout)):
        return None, f"line {lineno}: 'timeout_s' must be a number (id {rid!r})"
    if memory is not None and (not isinstance(memory, int) or isinstance(memory, bool)):
        return None, f"line {lineno}: 'memory_mb' must be an integer (id {rid!r})"
    return Program(code=code, id=rid, stdin=stdin.encode(), limits=Limits(timeout, memory)), None


def _given_id(line: bytes):
    try:
        row = json.loads(line)
    except ValueError:
        return None
    rid = row.get("id") if isinstance(row, dict) else None
    return rid if isinstance(rid, str) else None


def iter_programs(path: Path, done: set[str], report: BatchReport, line_of: dict[str, int],
                  invalid=lambda row: None) -> Iterator[Program]:
    """The programs to run; each bad line is reported and handed to `invalid` as its output row."""
    seen: set[str] = set()
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.total_rows += 1
            program, error = parse_row(line, lineno)
            if program is None or program.id in seen:
                error = error or f"line {lineno}: duplicate id {program.id!r} (first kept)"  # pyright: ignore
                report.input_errors.append(error)
                if f"line:{lineno}" not in done:
                    invalid({"id": _given_id(line), "line": lineno, "status": INVALID_INPUT,
                             "reason": error.split(": ", 1)[1]})
                else:
                    report.skipped_done += 1
                continue
            seen.add(program.id)
            if program.id in done:
                report.skipped_done += 1
                continue
            line_of[program.id] = lineno
            yield program


def count_rows(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def run_batch(input_path: Path, output_path: Path, client: Client, concurrency: int,
              progress: bool = True) -> BatchReport:
    report = BatchReport()
    done = read_done_ids(output_path)
    line_of: dict[str, int] = {}
    total = count_rows(input_path)
    bar = tqdm(total=total, initial=len(done), unit="prog", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "a", encoding="utf-8") as out, contextlib.ExitStack() as stack:
        def invalid(row: dict) -> None:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            bar.update(1)

        try:
            programs = iter_programs(input_path, done, report, line_of, invalid)
            # closing(): on Ctrl-C the batch's streams are stopped here, before the client and
            # the server go away, not whenever the generator happens to be collected.
            results = stack.enter_context(contextlib.closing(
                client.execute_many(programs, max_in_flight=concurrency, return_rejected=True)))
            for item in results:
                if isinstance(item, Rejected):
                    report.rejected.append(
                        f"line {line_of.get(item.id, '?')}: id {item.id!r} rejected ({item.code}): {item.message}")
                    out.write(json.dumps({"id": item.id, "line": line_of.get(item.id), "status": REJECTED,
                                          "code": item.code, "reason": item.message}, ensure_ascii=False) + "\n")
                    out.flush()
                else:
                    _write(out, item)
                    report.executed += 1
                    report.by_status[item.status.value] += 1
                bar.update(1)
                bar.set_postfix(_postfix(report), refresh=False)
        finally:
            out.flush()
            if stat.S_ISREG(os.fstat(out.fileno()).st_mode):   # /dev/null or a pipe cannot be synced
                os.fsync(out.fileno())
            bar.close()
    return report


def _write(out, result: ExecutionResult) -> None:
    row = result.to_row()
    out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()


def _postfix(report: BatchReport) -> dict[str, int]:
    return {k[:4].lower(): v for k, v in report.by_status.items()}
