"""The generator: seed extraction on real code, the whole pipeline (scripted model and a tiny
real model), the execute stage against a real executor, and resume after a crash."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from generator.pipeline import Pipeline, PipelineConfig
from generator.prompts import PREAMBLE, Malformed, load_examples, parse_concepts, parse_instruction, parse_response
from generator.response_format import python_blocks as code_blocks
from generator.stages.seeds import SeedFilter
from tests.conftest import ROOT
from tests.scripted_backend import ScriptedBackend

STDLIB = Path(sysconfig.get_paths()["stdlib"])

SEED_SOURCE = '''
import math
import os
from functools import reduce as fold


def area(r):
    """Area of a circle of radius r."""
    return math.pi * r * r


def double(x):
    """Double a number."""
    return 2 * x


def twice(x):
    """Twice a number, written as a product."""
    return x * 2


def triple(x):
    """Triple a number."""
    return 3 * x


def halve(x):
    """Half of a number."""
    return x / 2


def copycat(values):
    """Product of values."""
    return fold(lambda a, b: a * b, values, 1)


def no_doc(x):
    return x


def uses_os(path):
    """Whether a path exists."""
    return os.path.exists(path)


def needs_helper(x):
    """Uses a module-level helper, so it does not stand alone."""
    return _helper(x)


def prints_only(x):
    """Returns nothing."""
    print(x)


def no_args():
    """No arguments at all."""
    return 1


def todo(x):
    """Unfinished."""
    return x  # TODO: handle negatives
'''


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path)] if Path(path).exists() else []


# -- seeds --------------------------------------------------------------------------------

def test_seed_extraction_on_the_standard_library():
    bisect = list(SeedFilter().functions((STDLIB / "bisect.py").read_text(), "bisect.py"))
    assert [reason or r["name"] for r, reason in bisect] == [
        "no_return_value", "bisect_right", "no_return_value", "bisect_left"]  # insort_* return None
    fn = list(SeedFilter().functions((STDLIB / "fnmatch.py").read_text(), "fnmatch.py"))
    # fnmatch, filter and fnmatchcase call module helpers; _compile_pattern has no docstring.
    assert [reason or r["name"] for r, reason in fn] == [
        "not_standalone", "no_docstring", "not_standalone", "not_standalone", "translate"]
    translate = next(r for r, reason in fn if reason is None)
    assert translate["seed"].startswith("import re\n\ndef translate(pat):")
    namespace: dict = {}
    exec(translate["seed"], namespace)  # the seed stands alone: its imports came along
    assert namespace["translate"]("*.py").endswith("\\.py)\\Z")
    tw = list(SeedFilter().functions((STDLIB / "textwrap.py").read_text(), "textwrap.py"))
    assert [reason or r["name"] for r, reason in tw] == [
        "not_standalone", "not_standalone", "not_standalone", "not_standalone", "indent"]


def test_seed_filter_reasons(tmp_path):
    rows = list(SeedFilter().functions(SEED_SOURCE, "demo.py"))
    got = [reason or r["name"] for r, reason in rows]
    assert got == ["area", "double", "twice", "triple", "halve", "copycat", "no_docstring",
                   "banned_import", "not_standalone", "no_return_value", "no_arguments", "todo_fixme_bug"]
    copycat = rows[5][0]["seed"]
    assert copycat.startswith("from functools import reduce as fold\n\ndef copycat")
    assert rows[0][0]["seed"].startswith("import math\n\n")


def test_seed_longer_than_150_lines_is_dropped():
    body = "\n".join(f"    x += {i}" for i in range(150))
    src = f'def long(x):\n    """Long."""\n{body}\n    return x\n'
    assert [reason for _, reason in SeedFilter().functions(src, "long.py")] == ["too_long"]


def test_optional_type_check_and_model_judge(tmp_path):
    import shutil as _shutil

    if _shutil.which("pyright") is None:
        pytest.skip("Pyright is not installed (pip install pyright)")
    from generator.pipeline import seeds_steps
    from generator.resources import Resources
    from generator.runner import run_stages
    from generator.stages.seeds import seeds_input

    src = tmp_path / "src"
    src.mkdir()
    (src / "demo.py").write_text(SEED_SOURCE + '''

def mistyped(x: int) -> str:
    """Claims to return text."""
    return x + "a"
''')
    cfg = PipelineConfig.from_dict({"run": {"dir": str(tmp_path), "progress": False},
                                    "seeds": {"source": str(src), "typecheck": True, "judge": True,
                                              "judge_samples": 3}})
    steps = seeds_steps(cfg, tmp_path / "seeds.jsonl")
    assert [s.name for s in steps] == ["seeds.extract", "seeds.dedup", "seeds.typecheck", "seeds.judge"]
    resources = Resources.of(cfg, ScriptedBackend())
    stats = {s.stage: s for s in run_stages(steps, seeds_input(cfg.seeds.source), resources)}
    assert dict(stats["seeds.typecheck"].dropped) == {"type_error": 1}
    assert dict(stats["seeds.judge"].dropped) == {"docstring_mismatch": 1}  # double: 1 yes of 3
    kept = sorted(r["name"] for r in read(tmp_path / "seeds.jsonl"))
    assert kept == ["area", "copycat", "halve", "triple", "twice"]
    assert all(r["judge_votes"] == 3 for r in read(tmp_path / "seeds.jsonl"))


def test_sharded_stage_runs_partition_the_input(tmp_path, target):
    rows = [{"id": f"r{i}", "instruction": "i", "response": f"```python\nassert {i} == {i}\n```"} for i in range(7)]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = []
    for k in range(3):
        out = tmp_path / f"out.shard{k}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "generator", "execute", "--input", str(inp), "--output",
                               str(out), "--executor", target, "--shard", f"{k}/3", "--no-progress"],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        seen += [r["instruction_id"] for r in read(out)]
    assert sorted(seen) == sorted(r["id"] for r in rows)
    proc = subprocess.run([sys.executable, "-m", "generator", "execute", "--input", str(inp), "--output",
                           str(tmp_path / "x.jsonl"), "--shard", "3/3"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "K must be in [0, N)" in proc.stderr


# -- prompts ------------------------------------------------------------------------------

def test_example_library_is_complete():
    examples = load_examples()
    assert len(examples) >= 16
    assert {e.category for e in examples} == {"function", "class", "program"}
    assert {e.difficulty for e in examples} == {"easy", "medium", "hard"}
    for e in examples:
        for part in ("[Reasoning]", "[Implementation]", "[Explanation]", "[Tests]"):
            assert part in e.response, (e.instruction[:40], part)
        assert "assert" in code_blocks(e.response)[-1]


def test_every_example_response_passes_in_the_executor(client):
    from executor import Program

    programs = [Program("\n\n".join(code_blocks(e.response)), id=str(i)) for i, e in enumerate(load_examples())]
    failed = {r.id: r.stderr[-300:] for r in client.execute_many(programs) if not r.passed}
    assert failed == {}


@pytest.mark.parametrize("parser, text, reason", [
    (parse_concepts, "  \n", "empty_concepts"),
    (parse_instruction, "short", "instruction_too_short"),
    (parse_response, "no code here", "no_code_block"),
    (parse_response, "```python\nx = 1\n", "unclosed_code_block"),
    (parse_response, "```python\ndef broken(:\n```", "no_parsable_code"),
])
def test_malformed_outputs_are_named(parser, text, reason):
    with pytest.raises(Malformed, match=reason):
        parser(text)


# -- the whole pipeline ---------------------------------------------------------------------

def _config(tmp_path, target: str, **extra) -> PipelineConfig:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "demo.py").write_text(SEED_SOURCE)
    return PipelineConfig.from_dict({
        "run": {"dir": str(tmp_path / "run"), "seed": 7, "progress": False},
        "backend": {"kind": "import", "model": "tests.scripted_backend:ScriptedBackend"},
        "seeds": {"source": str(src)},
        "concepts": {"k": 8, "n": 1, "batch_size": 2},
        "instructions": {"k": 8, "n": 1, "batch_size": 2},
        "responses": {"k": 1, "n": 3, "batch_size": 1},
        "execute": {"executor": target, "timeout_s": 10},
        "dedup": {"threshold": 0.7},
        **extra,
    })


def test_pipeline_with_a_scripted_model_is_exact(tmp_path, target):
    cfg = _config(tmp_path, target)
    stats = {s.stage: s.to_dict() for s in Pipeline(cfg, backend=ScriptedBackend()).run()}
    run = Path(cfg.dir)
    seeds = read(run / "01-seeds.jsonl")
    assert sorted(r["name"] for r in seeds) == ["area", "copycat", "double", "halve", "triple", "twice"]
    assert stats["concepts"]["dropped"] == {"cut_off_at_length_limit": 1, "empty_concepts": 1}
    malformed = read(run / "02-concepts.malformed.jsonl")
    assert sorted(m["reason"] for m in malformed) == ["cut_off_at_length_limit", "empty_concepts"]
    concepts = read(run / "02-concepts.jsonl")
    assert sorted(r["name"] for r in concepts) == ["area", "copycat", "double", "twice"]
    instructions = read(run / "03-instructions.jsonl")
    assert all(r["category"] in ("function", "class", "program") for r in instructions)
    responses = {r["name"]: r for r in read(run / "04-responses.jsonl")}
    assert len(responses["area"]["samples"]) == 3
    assert len(responses["double"]["samples"]) == 2    # the cut-off sample is dropped
    assert stats["responses"]["notes"] == {"samples": 10, "distinct_samples": 8}  # copycat: 3 identical
    executions = read(run / "05-execute.executions.jsonl")
    assert len(executions) == 8  # area 3, copycat 3 (one answer, three samples), double 1, twice 1
    passed = read(run / "05-execute.jsonl")
    assert sorted(r["name"] for r in passed) == ["area", "area", "copycat", "copycat", "copycat", "double", "twice"]
    area = next(r for r in passed if r["name"] == "area" and "_square" in r["response"])
    assert "import math" in area["response"]  # module-level import + helper, after a bash block
    assert stats["execute"]["dropped"] == {"FAILED": 1, "no_tests": 2}  # the asserts only validate input
    # The original's exec() in a function loses the helper, the import and the module constant.
    assert stats["execute"]["notes"] == {"original_would_reject:exec_in_function_scope": 4}
    failed = next(r for r in read(run / "05-execute.rejects.jsonl") if r["reason"] == "FAILED")
    assert "AssertionError" in failed["stderr_tail"]
    assert stats["check_format"]["dropped"] == {"tags_out_of_order": 1}
    assert "thank you" not in read(run / "06-check_format.jsonl")[0]["response"]  # text after the tests is cut
    # copycat's three samples share an instruction; "twice" repeats "double"'s function name.
    assert stats["select"]["dropped"] == {"instruction_already_chosen": 2, "function_names_already_chosen": 1}
    assert stats["dedup"]["dropped"] == {}   # select left nothing near-identical
    rewritten = read(run / "09-rewrite.jsonl")
    assert all("[Reasoning]" not in r["response"] and "[Tests]" not in r["response"] for r in rewritten)
    assert all("the factor is a module-level constant" not in r["response"] for r in rewritten)
    decon = read(run / "10-decontaminate.rejects.jsonl")
    assert [(r["reason"], r["task_id"]) for r in decon] == [("humaneval_docstrings_match", "HumanEval/0")]
    final = read(run / "11-export.jsonl")
    names = sorted(r["seed"].split("def ")[1].split("(")[0] for r in final)
    assert names in (["area", "double"], ["area", "twice"])
    assert all(list(r) == ["fingerprint", "sha1", "seed", "response", "concepts", "prompt", "instruction", "id"]
               for r in final)   # the released dataset's columns (tests/test_released_schema.py)
    assert all(r["prompt"].startswith(PREAMBLE["responses"]) for r in final)   # the I->R prompt it was sampled from
    import datasets

    ds = datasets.load_from_disk(str(run / "dataset"))
    assert ds.to_list() == final
    card = (run / "dataset" / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "| execute |" in card and '"dedup"' in card
    summary = json.loads((run / "stats.json").read_text())
    assert [s["stage"] for s in summary] == ["seeds.extract", "seeds.dedup", "concepts", "instructions",
                                             "responses", "execute", "check_format", "select", "dedup", "rewrite",
                                             "decontaminate", "export"]
    assert all({"rows_in", "kept", "dropped", "seconds", "rows_per_s", "notes"} <= set(s) for s in summary)
    assert (run / "funnel.png").stat().st_size > 1000


def test_same_config_and_seed_give_the_same_output(tmp_path, target):
    outs = []
    for name in ("a", "b"):
        cfg = _config(tmp_path / name, target)
        Pipeline(cfg, backend=ScriptedBackend()).run()
        outs.append((Path(cfg.dir) / "11-export.jsonl").read_bytes())
    assert outs[0] == outs[1] and outs[0]


def test_finished_stages_are_not_redone(tmp_path, target):
    cfg = _config(tmp_path, target)
    Pipeline(cfg, backend=ScriptedBackend()).run()
    backend = ScriptedBackend(crash_after_calls=0)  # any generation call would crash
    Pipeline(cfg, backend=backend).run()
    assert backend.calls == 0


def test_resume_after_a_crash_mid_stage_matches_an_uninterrupted_run(tmp_path, target):
    reference = _config(tmp_path / "ref", target)
    Pipeline(reference, backend=ScriptedBackend()).run()
    crashed = tmp_path / "crashed"
    cfg_path = crashed / "pipeline.toml"
    crashed.mkdir()
    src = crashed / "src"
    src.mkdir()
    (src / "demo.py").write_text(SEED_SOURCE)
    cfg_text = textwrap.dedent(f"""
        [run]
        dir = "{crashed / 'run'}"
        seed = 7
        progress = false
        [backend]
        kind = "import"
        model = "tests.scripted_backend:ScriptedBackend"
        [backend.options]
        crash_after_calls = 7
        [seeds]
        source = "{src}"
        [concepts]
        k = 8
        n = 1
        batch_size = 2
        [instructions]
        k = 8
        n = 1
        batch_size = 2
        [responses]
        k = 1
        n = 3
        batch_size = 1
        [execute]
        executor = "{target}"
        timeout_s = 10
        [dedup]
        threshold = 0.7
    """)
    cfg_path.write_text(cfg_text)
    proc = subprocess.run([sys.executable, "-m", "generator", "run", str(cfg_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 17, proc.stderr  # crashed inside the responses stage
    ckpt = json.loads((crashed / "run" / "04-responses.checkpoint.json").read_text())
    assert not ckpt["done"] and ckpt["consumed"] >= 1
    cfg_path.write_text(cfg_text.replace("crash_after_calls = 7", "crash_after_calls = 100"))
    proc = subprocess.run([sys.executable, "-m", "generator", "run", str(cfg_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("04-responses.jsonl", "05-execute.jsonl", "09-rewrite.jsonl", "11-export.jsonl"):
        assert (crashed / "run" / name).read_bytes() == (Path(reference.dir) / name).read_bytes(), name


def test_pipeline_on_a_tiny_real_model_copes_with_nonsense(tmp_path, target, tiny_model):
    """With --allow-empty the run goes on through every stage on nothing; without it, it stops
    at the stage that kept nothing and says why, in one line and a non-zero exit."""
    settings = {
        "run": {"dir": str(tmp_path / "run"), "seed": 1, "progress": False},
        "backend": {"kind": "transformers", "model": str(tiny_model)},
        "seeds": {"source": str(STDLIB / "bisect.py")},
        "concepts": {"k": 2, "n": 1, "max_new_tokens": 24},
        "instructions": {"k": 2, "n": 1, "max_new_tokens": 24},
        "responses": {"k": 1, "n": 2, "max_new_tokens": 24},
        "execute": {"executor": target},
    }
    from generator.runner import EmptyStage

    with pytest.raises(EmptyStage, match=r"stage concepts kept nothing of 1 rows in \(cut_off_at_length_limit 1\)"):
        Pipeline(PipelineConfig.from_dict(settings)).run()
    cfg = PipelineConfig.from_dict({**settings, "run": {**settings["run"], "allow_empty": True}})
    stats = {s.stage: s for s in Pipeline(cfg).run()}
    assert list(stats)[-1] == "export"
    # bisect_left and bisect_right are near-duplicates (Jaccard 0.5): one seed is left
    assert stats["seeds.dedup"].rows_out == 1 and dict(stats["seeds.dedup"].dropped) == {"near_duplicate": 1}
    # a random model never writes the stop header: its samples are cut off and dropped, counted
    assert dict(stats["concepts"].dropped) == {"cut_off_at_length_limit": 1}
    malformed = [json.loads(line) for line in open(Path(cfg.dir) / "02-concepts.malformed.jsonl")]
    assert [m["reason"] for m in malformed] == ["cut_off_at_length_limit"] and malformed[0]["text"]
    assert all(stats[n].rows_in == 0 for n in ("instructions", "responses", "execute", "select", "export"))
    assert (Path(cfg.dir) / "dataset").exists()


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nnonsense = 1\n")
    proc = subprocess.run([sys.executable, "-m", "generator", "run", str(bad)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "[run]: unknown keys nonsense" in proc.stderr
    for text, message in [("[responses]\ntemprature = 0.7\n", "[responses]: unknown keys temprature"),
                          ("[concepts]\nk = \"two\"\n", "[concepts] k must be int, not 'two'"),
                          ("[instructions]\ncategories = { functon = 1 }\n",
                           "[instructions] categories: unknown functon"),
                          ("[select]\nseed = 1.5\n", "[select] seed must be int"),
                          ("[bogus]\nx = 1\n", "unknown config sections: bogus")]:
        bad.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "generator", "run", str(bad)], cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "generator", "seeds", "--source", str(tmp_path / "none"),
                           "--output", str(tmp_path / "s.jsonl")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("pipeline.*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    from generator.stages import REGISTRY

    cfg = PipelineConfig.load(path)
    assert cfg.dir and cfg.backend.model
    pipeline = Pipeline(cfg)
    stages = pipeline.plan()
    # Every stage is built from the registry, and building them loads no model.
    assert stages[0].name == "seeds.extract" and stages[-1].name == "export"
    assert all(type(s) is REGISTRY[s.name] for s in stages)
    assert pipeline.resources.given_backend is None
    assert len({s.output for s in stages}) == len(stages)


def test_faithful_profile_draws_the_originals_difficulties_uniformly():
    """The original's C->I step draws each instruction's difficulty uniformly from easy, medium
    and hard (self_ossinstruct.py); the faithful profile does too, with function tasks only."""
    from collections import Counter

    from generator.prompts import draw_properties

    cfg = PipelineConfig.load(ROOT / "configs" / "pipeline.starcoder2-15b.toml").instructions
    draws = Counter(draw_properties(seed, cfg.categories, cfg.difficulties) for seed in range(3000))
    assert {category for category, _ in draws} == {"function"}
    shares = {d: sum(n for (_, d2), n in draws.items() if d2 == d) / 3000 for d in ("easy", "medium", "hard")}
    assert all(0.3 < share < 0.37 for share in shares.values()), shares


def test_overrides_apply_over_the_file_and_are_checked(tmp_path):
    path = ROOT / "configs" / "pipeline.starcoder2-15b.toml"
    cfg = PipelineConfig.load(path, ["responses.temperature=0.9", "run.dir=runs/other",
                                     "instructions.categories.class=0", "execute.executor=a:1,b:2",
                                     "dedup.fields=['response', 'code']"])
    assert cfg.responses.temperature == 0.9 and cfg.dir == "runs/other"
    assert cfg.instructions.categories["class"] == 0 and cfg.execute.executor == ["a:1", "b:2"]
    assert cfg.dedup.fields == ["response", "code"]
    assert PipelineConfig.load(path).responses.temperature != 0.9
    with pytest.raises(ValueError, match=r"\[responses\]: unknown keys temprature"):
        PipelineConfig.load(path, ["responses.temprature=0.9"])
    with pytest.raises(ValueError, match="expected section.key=value"):
        PipelineConfig.load(path, ["temperature=0.9"])
    proc = subprocess.run([sys.executable, "-m", "generator", "run", str(path), "concepts.k=two"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "[concepts] k must be int, not 'two'" in proc.stderr, proc.stderr


def test_a_stage_fingerprint_covers_what_it_reads(tmp_path, monkeypatch):
    """Prompt assets, benchmark file contents and the model change the stages that read them."""
    from generator import prompts
    from generator.stages import REGISTRY

    bench = tmp_path / "mbpp.jsonl"
    bench.write_text(json.dumps({"task_id": 11, "text": "Write a function to add two numbers.",
                                 "code": "def add(a, b):\n    return a + b",
                                 "test_list": ["assert add(1, 2) == 3"]}) + "\n")
    cfg = PipelineConfig.from_dict({"benchmarks": {"files": [str(bench)]}})

    def fingerprint(name: str, cfg=cfg) -> str:
        return REGISTRY[name].from_config(cfg, tmp_path / f"{name}.jsonl").fingerprint("same input")

    before = {name: fingerprint(name) for name in ("concepts", "decontaminate", "seeds.extract", "execute")}
    bench.write_text(bench.read_text().replace("two numbers", "2 numbers"))   # same path, new content
    assert fingerprint("decontaminate") != before["decontaminate"]
    assert fingerprint("seeds.extract") != before["seeds.extract"]
    monkeypatch.setitem(prompts.PREAMBLE, "concepts", prompts.PREAMBLE["concepts"] + " ")
    assert fingerprint("concepts") != before["concepts"]
    other_model = PipelineConfig.from_dict({"benchmarks": {"files": [str(bench)]}, "backend": {"model": "other/model"}})
    monkeypatch.undo()
    assert fingerprint("concepts", other_model) != fingerprint("concepts")
    # Where programs run (and how many at once) does not change which pass.
    remote = PipelineConfig.from_dict({"execute": {"executor": ["h:1"], "concurrency": 8}})
    assert fingerprint("execute", remote) == before["execute"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from trainer.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_execute_cli_with_a_real_executor(tmp_path, target):
    rows = [{"id": "ok", "instruction": "i", "response": "```python\nimport math\n\ndef h(x):\n    return "
             "math.floor(x)\n\ndef f(x):\n    return h(x) + 1\n\nassert f(1.5) == 2\n```"},
            {"id": "bad", "instruction": "i", "response": "```python\nassert 1 == 2\n```"}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "passed.jsonl"
    proc = subprocess.run([sys.executable, "-m", "generator", "execute", "--input", str(inp), "--output", str(out),
                           "--executor", target, "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    kept = read(out)
    assert [r["instruction_id"] for r in kept] == ["ok"] and kept[0]["instruction"] == "i"
    assert [r["reason"] for r in read(tmp_path / "passed.rejects.jsonl")] == ["FAILED"]
    shutil.rmtree(tmp_path)


def _profile(tmp_path, target: str, name: str) -> PipelineConfig:
    """A shipped profile with only the model, the seed source and the executor replaced."""
    import tomllib

    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "demo.py").write_text(SEED_SOURCE)
    data = tomllib.loads((ROOT / "configs" / name).read_text())
    data["run"] = {"dir": str(tmp_path / "run"), "seed": 7, "progress": False, "num_proc": 1}
    data["backend"] = {"kind": "import", "model": "tests.scripted_backend:ScriptedBackend"}
    data["seeds"]["source"] = str(src)
    for stage in ("concepts", "instructions"):
        data[stage]["batch_size"] = 2
    data["responses"].update(batch_size=1, n=3)
    data["execute"] = {**data["execute"], "executor": target, "timeout_s": 10}
    return PipelineConfig.from_dict(data)


def test_faithful_profile_golden_counts(tmp_path, target):
    """The StarCoder2-15B faithful profile, end to end on the scripted model: every stage's
    counts and reasons are the original recipe's, to the row."""
    cfg = _profile(tmp_path, target, "pipeline.starcoder2-15b.toml")
    stats = {s.stage: s.to_dict() for s in Pipeline(cfg, backend=ScriptedBackend()).run()}
    counts = {name: (s["rows_in"], s["kept"], s["dropped"], s["notes"]) for name, s in stats.items()}
    assert counts == {
        "seeds.extract": (1, 6, {"banned_import": 1, "no_arguments": 1, "no_docstring": 1, "no_return_value": 1,
                                 "not_standalone": 1, "todo_fixme_bug": 1}, {}),
        "seeds.dedup": (6, 6, {}, {}),
        "concepts": (6, 4, {"cut_off_at_length_limit": 1, "empty_concepts": 1}, {}),
        "instructions": (4, 4, {}, {}),
        "responses": (4, 4, {}, {"distinct_samples": 8, "samples": 10}),
        "execute": (10, 7, {"FAILED": 1, "no_tests": 2}, {"original_would_reject:exec_in_function_scope": 4}),
        "check_format": (7, 6, {"tags_out_of_order": 1}, {}),
        "select": (6, 3, {"function_names_already_chosen": 1, "instruction_already_chosen": 2}, {}),
        "rewrite": (3, 3, {}, {"instruction_given_assertions": 1}),
        "decontaminate": (3, 2, {"humaneval_docstrings_match": 1}, {}),
        "export": (2, 2, {}, {}),
    }   # no MinHash dedup stage: the original recipe for this model has none
    run = Path(cfg.dir)
    assert {r["category"] for r in read(run / "03-instructions.jsonl")} == {"function"}
    assert {r["difficulty"] for r in read(run / "03-instructions.jsonl")} <= {"easy", "medium", "hard"}
    hinted = [r for r in read(run / "09-rewrite.jsonl") if "Your code should pass" in r["instruction"]]
    assert len(hinted) == 1 and hinted[0]["instruction"].endswith(
        "Your code should pass the following assertion:\n```python\n"
        "assert has_close_elements([1.0, 2.0], 0.5) is False\n```")


def test_improved_profile_runs_and_differs_where_documented(tmp_path, target):
    cfg = _profile(tmp_path, target, "pipeline.starcoder2-15b-improved.toml")
    stats = {s.stage: s.to_dict() for s in Pipeline(cfg, backend=ScriptedBackend()).run()}
    assert "dedup" in stats and stats["dedup"]["dropped"] == {}
    assert {r["category"] for r in read(Path(cfg.dir) / "03-instructions.jsonl")} <= {"function", "class", "program"}
    rewrite_ckpt = json.loads((Path(cfg.dir) / "09-rewrite.checkpoint.json").read_text())
    assert rewrite_ckpt["done"] and stats["export"]["kept"] >= 1
