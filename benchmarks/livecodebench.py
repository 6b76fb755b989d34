"""LiveCodeBench's problems, as its releases ship them: code generation (also the input of self
repair), test output prediction and code execution.

The formats are lcb_runner's (pinned: `nvidia-livecodebench` 26.3, which packages it):

- code generation, `livecodebench/code_generation_lite`: one JSON row per problem with
  `question_title`, `question_content`, `platform`, `question_id`, `contest_id`, `contest_date`,
  `starter_code`, `difficulty`, `public_test_cases` (a JSON string of `{input, output, testtype}`),
  `private_test_cases` (the same JSON, or base64 of zlib of a pickle of that JSON string) and
  `metadata` (a JSON string; `func_name` for LeetCode problems). Releases are files:
  `release_v1` is `test.jsonl` (400 problems, May 2023 - March 2024), `release_v2` adds
  `test2.jsonl`, and so on; `v2`... name one file alone.
- test output prediction, `livecodebench/test_generation`: `question_title`,
  `question_content`, `question_id`, `contest_id`, `contest_date`, `difficulty`, `test` (a JSON
  string of one `{input, output, testtype}`), `starter_code`, `function_name`, `test_id`.
- code execution, `livecodebench/execution-v2`: `question_id`, `contest_id`, `contest_date`,
  `difficulty`, `function_name`, `code`, `input`, `output`, `id`, `problem_id`, `numsteps`.

Unpickling is code execution, so the private tests are read by an unpickler that builds strings,
lists and dicts only and refuses every class or function a pickle names: a dataset file is data.
Nothing here runs code.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

SCENARIOS = ("codegeneration", "selfrepair", "testoutputprediction", "codeexecution")
HUB = {"codegeneration": "livecodebench/code_generation_lite", "selfrepair": "livecodebench/code_generation_lite",
       "testoutputprediction": "livecodebench/test_generation", "codeexecution": "livecodebench/execution-v2"}
# code_generation_lite's release tags, as files (its loading script's table).
RELEASE_FILES = {
    "release_v1": ("test.jsonl",),
    "release_v2": ("test.jsonl", "test2.jsonl"),
    "release_v3": ("test.jsonl", "test2.jsonl", "test3.jsonl"),
    "release_v4": ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl"),
    "release_v5": ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"),
    "release_v6": ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl"),
    "v1": ("test.jsonl",), "v2": ("test2.jsonl",), "v3": ("test3.jsonl",), "v4": ("test4.jsonl",),
    "v5": ("test5.jsonl",), "v6": ("test6.jsonl",),
}
DEFAULT_RELEASE = "release_v1"   # the model card's: 400 problems, May 2023 - March 2024
MAX_PRIVATE_TESTS_BYTES = 1 << 30


@dataclass(frozen=True)
class Test:
    input: str
    output: str
    testtype: str   # "stdin" or "functional"


@dataclass(frozen=True)
class CodeGenerationProblem:
    question_id: str
    question_title: str
    question_content: str
    platform: str
    contest_id: str
    contest_date: str
    starter_code: str
    difficulty: str
    public_tests: tuple[Test, ...]
    private_tests: tuple[Test, ...]
    func_name: str | None

    @property
    def task_id(self) -> str:
        return self.question_id

    @property
    def tests(self) -> tuple[Test, ...]:
        return self.public_tests + self.private_tests

    @property
    def functional(self) -> bool:
        """LeetCode-style: a method called with JSON arguments, not a program on stdin."""
        return self.func_name is not None


@dataclass(frozen=True)
class TestOutputProblem:
    question_id: str
    question_title: str
    question_content: str
    contest_id: str
    contest_date: str
    difficulty: str
    starter_code: str
    function_name: str
    test_id: int
    test: Test

    @property
    def task_id(self) -> str:
        return f"{self.question_id}/{self.test_id}"


@dataclass(frozen=True)
class CodeExecutionProblem:
    id: str
    question_id: str
    contest_id: str
    contest_date: str
    difficulty: str
    function_name: str
    code: str
    input: str
    output: str
    problem_id: str
    numsteps: int

    @property
    def task_id(self) -> str:
        return self.id


Problem = CodeGenerationProblem | TestOutputProblem | CodeExecutionProblem


@dataclass(frozen=True)
class LiveCodeBench:
    scenario: str
    release: str
    problems: list
    source: str
    data_hash: str

    @property
    def name(self) -> str:
        return f"livecodebench-{self.scenario}"


# -- decoding ---------------------------------------------------------------------------------

class _DataOnly(pickle.Unpickler):
    """Builds the pickle's strings, numbers, lists and dicts; any class or function it names
    (the only way a pickle runs code) is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"private tests name {module}.{name}: only plain data is read")


def decode_private_tests(text: str) -> list[dict]:
    """The private tests as the release stores them: JSON, or base64(zlib(pickle(JSON)))."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    raw = zlib.decompressobj().decompress(base64.b64decode(text.encode("utf-8")), MAX_PRIVATE_TESTS_BYTES)
    inner = _DataOnly(io.BytesIO(raw)).load()
    if not isinstance(inner, str):
        raise ValueError(f"private tests: expected a pickled JSON string, got {type(inner).__name__}")
    return json.loads(inner)


def _tests(rows: list[dict]) -> tuple[Test, ...]:
    return tuple(Test(str(t["input"]), str(t["output"]), str(t["testtype"])) for t in rows)


def code_generation_problem(row: dict) -> CodeGenerationProblem:
    metadata = row.get("metadata") or "{}"
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    public = row["public_test_cases"]
    public = json.loads(public) if isinstance(public, str) else public
    private = row["private_test_cases"]
    private = decode_private_tests(private) if isinstance(private, str) else private
    return CodeGenerationProblem(
        str(row["question_id"]), str(row["question_title"]), str(row["question_content"]), str(row["platform"]),
        str(row["contest_id"]), str(row["contest_date"]), str(row.get("starter_code") or ""), str(row["difficulty"]),
        _tests(public), _tests(private), metadata.get("func_name"))


def test_output_problem(row: dict) -> TestOutputProblem:
    tests = row["test"]
    tests = json.loads(tests) if isinstance(tests, str) else tests
    return TestOutputProblem(
        str(row["question_id"]), str(row["question_title"]), str(row["question_content"]), str(row["contest_id"]),
        str(row["contest_date"]), str(row["difficulty"]), str(row["starter_code"]), str(row["function_name"]),
        int(row["test_id"]), _tests(tests)[0])


def code_execution_problem(row: dict) -> CodeExecutionProblem:
    return CodeExecutionProblem(
        str(row["id"]), str(row["question_id"]), str(row["contest_id"]), str(row["contest_date"]),
        str(row["difficulty"]), str(row["function_name"]), str(row["code"]), str(row["input"]), str(row["output"]),
        str(row["problem_id"]), int(row.get("numsteps") or 0))


# -- loading ----------------------------------------------------------------------------------

def _day(text: str | None) -> date | None:
    return date.fromisoformat(str(text)[:10]) if text else None


def _in_window(contest_date: str, start: date | None, end: date | None) -> bool:
    day = _day(contest_date)
    return day is not None and (start is None or day >= start) and (end is None or day <= end)


def read_rows(path: str | Path) -> list[dict]:
    """A local copy in the released format: JSONL (optionally gzipped) or Parquet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data-file {path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON row ({exc})") from None
    return rows


def hub_dataset(repo: str, revision: str | None):
    """The hub's record of a dataset (its commit and files), or one line saying why not."""
    import os

    from huggingface_hub import HfApi

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise OSError(f"{repo} is on the Hugging Face hub and HF_HUB_OFFLINE is set: "
                      "give --data-file (a local copy in the released format)")
    try:
        return HfApi().dataset_info(repo, revision=revision, timeout=10)
    except Exception as exc:   # network, DNS, auth: one line, not the HTTP client's traceback
        raise OSError(f"cannot read {repo} from the Hugging Face hub ({type(exc).__name__}): "
                      "give --data-file (a local copy in the released format)") from None


def hub_rows(scenario: str, release: str, revision: str | None) -> tuple[list[dict], str]:
    """The release's rows from the hub (cached by huggingface_hub), and the commit they came from."""
    from huggingface_hub import hf_hub_download

    repo = HUB[scenario]
    info = hub_dataset(repo, revision)
    commit = info.sha or (revision or "main")
    if scenario in ("codegeneration", "selfrepair"):
        if release not in RELEASE_FILES:
            raise ValueError(f"unknown LiveCodeBench release {release!r}: {', '.join(RELEASE_FILES)}")
        rows = []
        for name in RELEASE_FILES[release]:
            rows += read_rows(hf_hub_download(repo, name, repo_type="dataset", revision=commit))
        return rows, f"{repo}@{commit}"
    files = sorted(s.rfilename for s in (info.siblings or []) if s.rfilename.endswith((".parquet", ".jsonl", ".json")))
    rows = []
    for name in files:
        if "test" in Path(name).name:
            rows += read_rows(hf_hub_download(repo, name, repo_type="dataset", revision=commit))
    return rows, f"{repo}@{commit}"


def load(scenario: str, release: str = DEFAULT_RELEASE, data_file: str | None = None, start_date: str | None = None,
         end_date: str | None = None, revision: str | None = None) -> LiveCodeBench:
    """One scenario's problems, in lcb_runner's order, within the contest-date window. Test
    output prediction and code execution ship one set, which lcb_runner does not cut by release."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown LiveCodeBench scenario {scenario!r}: {', '.join(SCENARIOS)}")
    if data_file:
        rows, source = read_rows(data_file), str(data_file)
        digest = hashlib.sha256(Path(data_file).read_bytes()).hexdigest()[:16]
    else:
        rows, source = hub_rows(scenario, release, revision)
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]
    start, end = _day(start_date), _day(end_date)
    rows = [r for r in rows if _in_window(str(r["contest_date"]), start, end)]
    if scenario in ("codegeneration", "selfrepair"):
        problems: list = sorted((code_generation_problem(r) for r in rows), key=lambda p: p.question_id)
    elif scenario == "testoutputprediction":
        problems = sorted((test_output_problem(r) for r in rows), key=lambda p: (p.question_id, p.test_id))
    else:
        problems = sorted((code_execution_problem(r) for r in rows), key=lambda p: int(p.id.split("_")[1]))
    return LiveCodeBench(scenario, release, problems, source, digest)
