"""The authors' released datasets, column for column: what `import-released` reads and what the
export writes. The schemas are those in the released datasets' READMEs (`dataset_info`), written
here as they are, since the hub cannot be reached from the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent

# bigcode/self-oss-instruct-sc2-exec-filter-50k, README at 356bb06: the final dataset (and the
# 500k-raw rows it was selected from).
EXEC_FILTER_50K = [("fingerprint", "null"), ("sha1", "string"), ("seed", "string"), ("response", "string"),
                   ("concepts", "sequence: string"), ("prompt", "string"), ("instruction", "string"),
                   ("id", "int64")]

# The I->R output (`self-oss-instruct-sc2-responses-unfiltered`): the instructions dataset's columns
# (prompt, fingerprint, seed, sha1, id, concepts, instruction) with the prompt and fingerprint of
# the I->R call, and every sample in `parsing_result`, as the authors' self_ossinstruct.py writes.
RESPONSES_UNFILTERED = pa.schema([("prompt", pa.string()), ("fingerprint", pa.null()), ("seed", pa.string()),
                                  ("sha1", pa.string()), ("id", pa.int64()), ("concepts", pa.list_(pa.string())),
                                  ("instruction", pa.string()),
                                  ("parsing_result", pa.list_(pa.struct([("response", pa.string())])))])


def response(name: str, op: str, a: int, b: int, want: int, ok: bool = True) -> str:
    """A response in StarCoder2-15B-Instruct-v0.1's format, whose own test passes or fails."""
    return (f"[Reasoning]\n{name} combines two numbers.\n\n[Implementation]\n```python\ndef {name}(a, b):\n"
            f"    return a {op} b\n```\n\n[Explanation]\nOne line.\n\n[Tests]\n```python\n"
            f"assert {name}({a}, {b}) == {want if ok else want + 1}\n```")


def cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def feature_types(features) -> list[tuple[str, str]]:
    """A `datasets` schema written the way a dataset README's `dataset_info` writes it."""
    import datasets

    out = []
    for name, f in features.items():
        if isinstance(f, datasets.Sequence) or isinstance(f, list):
            inner = f.feature if isinstance(f, datasets.Sequence) else f[0]
            out.append((name, f"sequence: {inner.dtype}" if isinstance(inner, datasets.Value) else "list"))
        else:
            out.append((name, f.dtype))
    return out


def test_released_rows_go_through_execute_and_export_with_every_column_kept(tmp_path, target):
    """Rows in both released shapes are imported, filtered again through the executor, selected
    and exported: the export has the released dataset's columns, order and types, in JSONL and
    on disk alike, and each row keeps its seed's `id`, `sha1`, `prompt` and concepts list."""
    import datasets

    unfiltered = [
        {"prompt": "<I->R prompt for add>", "fingerprint": None, "seed": "def add(a, b):\n    return a + b\n",
         "sha1": "a" * 40, "id": 17, "concepts": ["integer addition", "function definition"],
         "instruction": "Write add.", "parsing_result": [{"response": response("add", "+", 1, 2, 3, ok=False)},
                                                         {"response": response("add", "+", 1, 2, 3)}]},
        {"prompt": "<I->R prompt for mul>", "fingerprint": None, "seed": "def mul(a, b):\n    return a * b\n",
         "sha1": "b" * 40, "id": 4_000_000_000, "concepts": ["multiplication"],   # an id past 32 bits
         "instruction": "Write mul.", "parsing_result": [{"response": response("mul", "*", 2, 3, 6)}]},
    ]
    pq.write_table(pa.Table.from_pylist(unfiltered, schema=RESPONSES_UNFILTERED), tmp_path / "unfiltered.parquet")
    raw = [{"fingerprint": None, "sha1": "c" * 40, "seed": "def sub(a, b):\n    return a - b\n",
            "response": response("sub", "-", 5, 3, 2), "concepts": ["subtraction", "return values"],
            "prompt": "<I->R prompt for sub>", "instruction": "Write sub.", "id": 3}]
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in raw))

    rows = []
    for name in ("unfiltered.parquet", "raw.jsonl"):
        proc = cli("generator", "import-released", "--input", tmp_path / name, "--output", tmp_path / f"{name}.rows")
        assert proc.returncode == 0 and "not in the released schemas" not in proc.stderr, proc.stderr
        rows += read(tmp_path / f"{name}.rows")
    assert [(r["seed_index"], r["sha1"], r["prompt"], r["concepts"]) for r in rows] == [
        (17, "a" * 40, "<I->R prompt for add>", ["integer addition", "function definition"]),
        (4_000_000_000, "b" * 40, "<I->R prompt for mul>", ["multiplication"]),
        (3, "c" * 40, "<I->R prompt for sub>", ["subtraction", "return values"])]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    steps = [("execute", "--executor", target), ("select",), ("export", "--dataset-dir", tmp_path / "dataset")]
    current = tmp_path / "rows.jsonl"
    for i, (name, *flags) in enumerate(steps):
        out = tmp_path / f"{i}-{name}.jsonl"
        proc = cli("generator", name, "--input", current, "--output", out, "--no-progress", *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        current = out
    exported = read(current)
    columns = [name for name, _ in EXEC_FILTER_50K]
    assert all(list(r) == columns for r in exported)   # the JSONL: exactly the released columns, in order
    ds = datasets.load_from_disk(str(tmp_path / "dataset"))
    assert feature_types(ds.features) == EXEC_FILTER_50K
    assert ds.to_list() == exported   # the dataset on disk and the JSONL carry the same rows and columns
    by_id = {r["id"]: r for r in exported}
    assert sorted(by_id) == [3, 17, 4_000_000_000]
    for source in unfiltered + raw:
        row = by_id[source["id"]]
        assert {k: row[k] for k in ("sha1", "seed", "prompt", "instruction", "concepts", "fingerprint")} == \
            {k: source[k] for k in ("sha1", "seed", "prompt", "instruction", "concepts", "fingerprint")}
    assert by_id[17]["response"] == unfiltered[0]["parsing_result"][1]["response"]   # the sample that passed


def test_export_extras_are_opt_in_and_in_every_format(tmp_path):
    from generator.runner import Input, run_stages
    from generator.stages.export import Export, ExportConfig

    row = {"id": "seed-1-0-0", "instruction": "Write f.", "response": "R", "seed": "def f(x):\n    return x\n",
           "concepts": ["identity"], "category": "function", "difficulty": "easy", "prompt": "P"}
    stage = Export(tmp_path / "export.jsonl", tmp_path / "dataset",
                   ExportConfig(extra_columns=["row_id", "messages"]), progress=False)
    run_stages([stage], Input([row], "one row"))
    (out,) = read(tmp_path / "export.jsonl")
    assert list(out)[:8] == [name for name, _ in EXEC_FILTER_50K] and list(out)[8:] == ["messages", "row_id"]
    assert out["messages"] == [{"role": "user", "content": "Write f."}, {"role": "assistant", "content": "R"}]
    assert out["row_id"] == "seed-1-0-0" and out["fingerprint"] is None
    # A seed extracted here has no index in a released set: its sha1 is of its text, and its
    # int64 id the first 60 bits of that.
    import hashlib

    assert out["sha1"] == hashlib.sha1(row["seed"].encode()).hexdigest() and out["id"] == int(out["sha1"][:15], 16)
    import datasets

    assert datasets.load_from_disk(str(tmp_path / "dataset")).to_list() == [out]
    assert "`messages`" in (tmp_path / "dataset" / "README.md").read_text()
    with pytest.raises(ValueError, match="unknown sha256"):
        ExportConfig(extra_columns=["sha256"])


def test_concepts_are_a_list_never_split_into_characters(tmp_path):
    """A concepts string (a row another tool wrote) is split on commas as the authors' parser did;
    a list goes through unchanged; nothing is ever split into characters."""
    from generator.rows import concepts_list
    from generator.stages.generation import GenerationConfig
    from generator.stages.instructions import Instructions

    assert concepts_list("recursion, string slicing ,memoization") == ["recursion", "string slicing", "memoization"]
    assert concepts_list(["a, b", "c"]) == ["a, b", "c"]
    assert concepts_list(None) == [] and concepts_list("") == []
    with pytest.raises(ValueError, match="list of strings"):
        concepts_list([1, 2])
    stage = Instructions(tmp_path / "out.jsonl", GenerationConfig(k=1), None, run_seed=0)
    prompt = stage.prompt({"id": "x", "seed": "def f(): ...", "concepts": "recursion, memoization"})
    assert "recursion, memoization" in prompt and "r, e, c" not in prompt
    (tmp_path / "concepts.jsonl").write_text(json.dumps(
        {"instruction": "I", "response": "R", "concepts": "a, b"}) + "\n")
    proc = cli("generator", "import-released", "--input", tmp_path / "concepts.jsonl", "--output", tmp_path / "o")
    assert proc.returncode == 0 and read(tmp_path / "o")[0]["concepts"] == ["a", "b"]


def test_released_seed_sets_keep_their_sha1_and_id(tmp_path):
    """The released seed set's own `sha1` and `id` travel with each seed to the export."""
    seeds = [{"seed": "def g(x):\n    \"\"\"Twice.\"\"\"\n    return 2 * x\n", "sha1": "d" * 40, "id": 123}]
    source = tmp_path / "seeds.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    proc = cli("generator", "seeds", "--source", source, "--output", tmp_path / "out.jsonl", "--no-progress",
               "seeds.as_is=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = read(tmp_path / "out.jsonl")
    assert (row["sha1"], row["seed_index"], row["seed"]) == ("d" * 40, 123, seeds[0]["seed"])
