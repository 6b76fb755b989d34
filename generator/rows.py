"""Rows: the shape of the rows each stage hands to the next, and the one reader of row files.

Every boundary has a TypedDict, so a stage says in its signature what it reads and writes.
Rows carry more keys than these name (a stage passes on what it was given); the ones named
here are what later stages rely on. Ids are never parsed: a row that comes from another row
says so in a field of its own (`seed_id`, `instruction_id`), not by a suffix on its id.

`read_rows` reads JSONL, JSON lines in `.json`, Parquet, a folder saved by `datasets` (or an
exported dataset folder) and a Hugging Face dataset name, for the seeds step and for
`trainer prepare` alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast


class SourceRow(TypedDict):
    """A file (or dataset row) that seed functions are extracted from."""
    code: str
    origin: str


class SeedRow(TypedDict):
    """S: one function with a docstring. `id` is a hash of the function's text. `sha1` and
    `seed_index` are the released seed set's `sha1` and `id` columns, kept for the export."""
    id: str
    seed: str
    origin: str
    sha1: NotRequired[str]
    seed_index: NotRequired[int]
    judge_yes: NotRequired[int]
    judge_votes: NotRequired[int]


class ConceptRow(SeedRow):
    """S->C: the concepts one seed teaches (one row per sample, `id` is `<seed id>-<sample>`)."""
    concepts: list[str]


class InstructionRow(ConceptRow):
    """C->I: a task written from the concepts."""
    instruction: str
    category: str
    difficulty: str


class ResponseRow(InstructionRow):
    """I->R: every usable sampled response to one instruction; the execute stage tries each.
    `prompt` is the I->R prompt they were sampled from (the released dataset's `prompt`)."""
    samples: list[str]
    prompt: str


class SampleRow(TypedDict):
    """A response whose own tests passed: one row per passing sample."""
    id: str               # "<instruction id>#<sample>": unique per sample
    instruction_id: str   # the instruction it answers
    sample: int
    instruction: str
    response: str


class DatasetRow(TypedDict):
    """What `export` writes and `trainer prepare` reads (one response per instruction)."""
    id: str
    instruction: str
    response: str


def seed_sha1(seed: str) -> str:
    """A seed's `sha1` where its seed set gave none: the SHA-1 of its text."""
    return hashlib.sha1(seed.encode()).hexdigest()


def concepts_list(value: object) -> list[str]:
    """Concepts as the authors wrote them: a list of strings. A string (a row written by another
    tool) is split as their S->C parser split the model's text, on commas, each piece stripped;
    never into characters."""
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(",")] if value.strip() else []
    if isinstance(value, list | tuple) and all(isinstance(c, str) for c in value):
        return list(value)
    raise ValueError(f"concepts must be a list of strings or one comma-separated string, not {value!r:.80}")


_DECODER = json.JSONDecoder()
UTF8_BOM = b"\xef\xbb\xbf"


def _parse(text: str) -> Any:
    # raw_decode: json.loads does the same plus a regex search, 30% slower. (orjson would parse
    # 3x as fast, but it silently reads an integer past 64 bits as a float.)
    row, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError(f"extra data at column {end + 1}")
    return row


def read_jsonl_spans(path: str | Path) -> Iterator[tuple[dict, int, int]]:
    """Each row with the byte span of its line in the file (start, end; surrounding whitespace
    left out), so that a stage which keeps rows unchanged can copy them instead of encoding them
    again."""
    with open(path, "rb") as f:
        offset = 0
        for lineno, line in enumerate(f, 1):
            start, offset = offset, offset + len(line)
            if lineno == 1 and line.startswith(UTF8_BOM):   # as some Windows tools write files
                line, start = line[len(UTF8_BOM):], start + len(UTF8_BOM)
            text = line.strip()
            if text:
                try:
                    row = _parse(text.decode("utf-8"))
                except ValueError as exc:   # JSONDecodeError and UnicodeDecodeError included
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {exc}") from None
                lead = len(line) - len(line.lstrip())
                yield row, start + lead, start + lead + len(text)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    for row, _, _ in read_jsonl_spans(path):
        yield row


class JsonlRows:
    """A JSONL file's rows, read only when iterated: a stage that is already done reads none.
    Its fingerprint and its row count come from one pass over the file, made once. With
    `require_ids`, a row without a non-empty string id stops the reading with its line's number
    (every step keys its rows by id)."""

    def __init__(self, path: str | Path, require_ids: bool = False) -> None:
        self.path = Path(path)
        self.require_ids = require_ids
        self._scanned: tuple[str, int] | None = None

    def __iter__(self) -> Iterator[dict]:
        for row, _ in self.with_spans():
            yield row

    def with_spans(self) -> Iterator[tuple[dict, tuple[int, int]]]:
        """Each row with the byte span of its line (see read_jsonl_spans)."""
        for i, (row, start, end) in enumerate(read_jsonl_spans(self.path), 1):
            if self.require_ids and not (isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"]):
                raise ValueError(f"{self.path}: row {i} needs a non-empty string 'id' (every step keys its rows by it)")
            yield row, (start, end)

    def __len__(self) -> int:
        return self._scan()[1]

    @property
    def fingerprint(self) -> str:
        return self._scan()[0]

    def _scan(self) -> tuple[str, int]:
        if self._scanned is None:
            h, count = hashlib.sha256(), 0
            with open(self.path, "rb") as f:
                for lineno, line in enumerate(f, 1):
                    h.update(line)
                    count += bool((line.removeprefix(UTF8_BOM) if lineno == 1 else line).strip())
            self._scanned = (h.hexdigest()[:16], count)
        return self._scanned


def is_dataset_name(source: str) -> bool:
    return not Path(source).exists() and "/" in source and not source.startswith(("/", ".", "~"))


def read_rows(source: str, streaming: bool = False) -> Iterator[dict]:
    """Rows from a .jsonl/.json (JSON lines) or .parquet file, a dataset folder (saved with
    `datasets.save_to_disk`, or an exported folder of Parquet files and a card) or a Hugging
    Face dataset name (its train split). `streaming` reads a hub dataset as it downloads."""
    path = Path(source)
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        yield from read_jsonl(path)
    elif path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches():
            yield from batch.to_pylist()
    elif path.is_dir():
        import datasets

        if (path / "state.json").exists() or (path / "dataset_info.json").exists():
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(str(path), split="train")
        yield from cast(Iterable[dict], dataset)
    elif is_dataset_name(source):
        import datasets

        yield from cast(Iterable[dict], datasets.load_dataset(source, split="train", streaming=streaming))
    else:
        raise FileNotFoundError(f"{source}: not a .jsonl/.json/.parquet file, a dataset folder or a "
                                "Hugging Face dataset name")
