"""An on-disk cache of execution results, so a re-run skips programs that already ran.

The key hashes everything that decides a result: the program, its stdin and limits, the
server's default limits and the sandbox image (whose tag is itself a content hash). SQLite
makes it safe for several processes to share one cache file. SANDBOX_ERROR results are never
stored: they say nothing about the program.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from executor.jobs import ExecutionResult, Status


class ResultCache:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, row TEXT NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()

    @staticmethod
    def key(scope: str, language: str, code: str, stdin: bytes, limits: tuple) -> str:
        h = hashlib.sha256()
        for part in (scope, language, code, json.dumps(limits)):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "big") + data)
        h.update(len(stdin).to_bytes(8, "big") + stdin)
        return h.hexdigest()

    def get(self, key: str) -> ExecutionResult | None:
        with self._lock:
            row = self._db.execute("SELECT row FROM results WHERE key = ?", (key,)).fetchone()
        return _decode(row[0]) if row else None

    def put(self, key: str, result: ExecutionResult) -> None:
        if result.status is Status.SANDBOX_ERROR:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, _encode(result)))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _encode(result: ExecutionResult) -> str:
    row = result.to_row()
    # Keep output bytes exact (to_row's text is for people): store them as hex.
    row["stdout"], row["stderr"] = result.stdout.hex(), result.stderr.hex()
    return json.dumps(row)


def _decode(text: str) -> ExecutionResult:
    row = json.loads(text)
    stdout, stderr = bytes.fromhex(row.pop("stdout")), bytes.fromhex(row.pop("stderr"))
    result = ExecutionResult.from_row({**row, "stdout": "", "stderr": ""})
    result.stdout, result.stderr = stdout, stderr
    return result
