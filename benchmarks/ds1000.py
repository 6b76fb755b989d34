"""DS-1000's problems in its current release format (`xlangai/DS-1000`, `test.jsonl`): one row
per problem with `prompt`, `reference_code`, `metadata` (`problem_id`, `library_problem_id`,
`library`, `test_case_cnt`, `perturbation_type`, `perturbation_origin_id`) and `code_context`:
the test, which defines `generate_test_case`, `exec_test`, an `exec_context` with an `[insert]`
slot, `test_execution(solution)` and sometimes `test_string(solution)`.

Nothing here runs code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

HUB = "xlangai/DS-1000"
LIBRARIES = ("Pandas", "Numpy", "Matplotlib", "Tensorflow", "Scipy", "Sklearn", "Pytorch")
# The module each library's problems import, to tell which ones an image can run.
MODULES = {"Pandas": "pandas", "Numpy": "numpy", "Matplotlib": "matplotlib", "Tensorflow": "tensorflow",
           "Scipy": "scipy", "Sklearn": "sklearn", "Pytorch": "torch"}


@dataclass(frozen=True)
class Problem:
    problem_id: int
    library: str
    perturbation_type: str
    prompt: str
    reference_code: str
    code_context: str

    @property
    def task_id(self) -> str:
        return str(self.problem_id)

    def test_program(self, solution: str) -> str:
        """DS-1000's own test program for `solution` (its test_ds1000.py builds the same)."""
        return (self.code_context + "\n" + f"code = {solution!r}\n" + "test_execution(code)\n"
                + ("test_string(code)\n" if "test_string(" in self.code_context else "\n"))


@dataclass(frozen=True)
class DS1000:
    problems: list[Problem]
    source: str
    data_hash: str
    name: str = "ds1000"


def problem_from_row(row: dict) -> Problem:
    meta = row["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    return Problem(int(meta["problem_id"]), str(meta["library"]), str(meta.get("perturbation_type") or "Origin"),
                   str(row["prompt"]), str(row["reference_code"]), str(row["code_context"]))


def load(data_file: str | None = None, revision: str | None = None) -> DS1000:
    """The release's 1,000 problems (the hub's `test.jsonl`, cached), or a local copy."""
    from benchmarks.livecodebench import read_rows

    if data_file:
        rows, source = read_rows(data_file), str(data_file)
        digest = hashlib.sha256(Path(data_file).read_bytes()).hexdigest()[:16]
    else:
        from huggingface_hub import hf_hub_download

        from benchmarks.livecodebench import hub_dataset

        commit = hub_dataset(HUB, revision).sha or (revision or "main")
        path = hf_hub_download(HUB, "test.jsonl", repo_type="dataset", revision=commit)
        rows, source = read_rows(path), f"{HUB}@{commit}"
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    problems = sorted((problem_from_row(r) for r in rows), key=lambda p: p.problem_id)
    if not problems:
        raise ValueError(f"{source}: no DS-1000 problems")
    return DS1000(problems, source, digest)
