"""The trainer on CPU with a tiny model: masks, template, training, exact resume, prepare
--verify and evaluation through a real executor."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.problems import load_benchmark
from tests.conftest import ROOT
from trainer.evaluate import Sample, pass_at_k
from trainer.sft import PaddingCollator, SFTConfig, train
from trainer.template import IGNORE, install_chat_template, prompt_text, tokenize_example


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from trainer.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    install_chat_template(tok)
    return tok


def rows(n: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        out.append({"id": f"r{i}", "instruction": f"Write `add_{i}(x)` that adds {i} to x.",
                    "response": f"```python\ndef add_{i}(x):\n    return x + {i}\n\nassert add_{i}(1) == {i + 1}\n```"})
    return out


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


# -- template and masks -------------------------------------------------------------------

def test_loss_mask_covers_the_response_and_its_eos_only(tokenizer):
    ex = tokenize_example(tokenizer, "Add two numbers.", "return a + b")
    prompt_ids = tokenizer(prompt_text("Add two numbers.", tokenizer.bos_token), add_special_tokens=False).input_ids
    response_ids = tokenizer("return a + b", add_special_tokens=False).input_ids
    assert ex.input_ids == prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert ex.labels == [IGNORE] * len(prompt_ids) + response_ids + [tokenizer.eos_token_id]
    assert ex.prompt_tokens == len(prompt_ids) and not ex.truncated


def test_eos_is_trained_although_it_is_the_pad_token(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    short = tokenize_example(tokenizer, "A", "x")
    long = tokenize_example(tokenizer, "A much longer instruction here", "y = 1")
    batch = PaddingCollator(tokenizer.pad_token_id)([
        {"input_ids": short.input_ids, "labels": short.labels},
        {"input_ids": long.input_ids, "labels": long.labels}])
    n = len(short.input_ids)
    labels, mask = batch["labels"][0].tolist(), batch["attention_mask"][0].tolist()
    assert labels[n - 1] == tokenizer.eos_token_id          # the real EOS: a target
    assert set(labels[n:]) <= {IGNORE} and mask[n:] == [0] * (len(mask) - n)  # padding: never a target
    assert batch["input_ids"][0, n:].eq(tokenizer.pad_token_id).all()


def test_truncation_is_reported(tokenizer):
    ex = tokenize_example(tokenizer, "x " * 50, "y " * 50, max_length=40)
    assert ex.truncated and len(ex.input_ids) == len(ex.labels) == 40


SYS = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
       "responses to user instructions.")


def test_chat_template_renders_as_the_released_one(tokenizer, tmp_path):
    """The released StarCoder2-15B-Instruct template ends with the response header in every case;
    the model card's own example relies on it (no `add_generation_prompt`)."""
    from trainer.template import save_tokenizer

    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    user = [{"role": "user", "content": "Sort a list."}]
    both = user + [{"role": "assistant", "content": "sorted(xs)"}]
    expected = {
        "user": f"{bos}{SYS}\n\n### Instruction\nSort a list.\n\n### Response\n",
        "user+flag": f"{bos}{SYS}\n\n### Instruction\nSort a list.\n\n### Response\n",
        "both": f"{bos}{SYS}\n\n### Instruction\nSort a list.\n\n### Response\nsorted(xs){eos}\n\n### Response\n",
    }

    def render(tok):
        return {"user": tok.apply_chat_template(user, tokenize=False),
                "user+flag": tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True),
                "both": tok.apply_chat_template(both, tokenize=False)}

    assert render(tokenizer) == expected
    assert expected["user"] == prompt_text("Sort a list.", bos)     # what training used
    save_tokenizer(tokenizer, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["chat_template"] == tokenizer.chat_template       # for tokenizer_config.json readers
    assert (tmp_path / "chat_template.jinja").read_text() == tokenizer.chat_template
    from transformers import AutoTokenizer

    assert render(AutoTokenizer.from_pretrained(tmp_path)) == expected
    with pytest.raises(Exception, match="fixed system line"):
        tokenizer.apply_chat_template([{"role": "system", "content": "x"}] + user, tokenize=False)


# -- training -----------------------------------------------------------------------------

def _cfg(tiny, data, out, **kw) -> SFTConfig:
    base = dict(data=str(data), model=str(tiny), output=str(out), epochs=2, learning_rate=1e-3,
                effective_batch_size=4, per_device_batch_size=2, save_steps=2, seed=3)
    base.update(kw)
    return SFTConfig(**base)


def _losses(out: Path) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def test_training_lowers_the_loss_and_writes_model_tokenizer_state(tiny, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", rows(8))
    summary = train(_cfg(tiny, data, tmp_path / "out", epochs=4))
    assert summary["finished"] and summary["global_step"] == 8 and summary["gradient_accumulation_steps"] == 2
    losses = _losses(tmp_path / "out")
    assert len(losses) == 8 and losses[-1] < losses[0]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.config.attention_dropout == 0.0 and model.config.residual_dropout == 0.0
    assert model.config.embedding_dropout == 0.0
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok.chat_template and "### Instruction" in tok.chat_template


def test_effective_batch_must_divide(tiny, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", rows(4))
    with pytest.raises(ValueError, match="not a multiple"):
        train(_cfg(tiny, data, tmp_path / "out", effective_batch_size=5))


def test_resumed_run_matches_an_uninterrupted_one(tiny, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", rows(12))
    train(_cfg(tiny, data, tmp_path / "full"))
    first = train(_cfg(tiny, data, tmp_path / "split", stop_after_step=3))
    assert not first["finished"] and first["global_step"] == 3
    assert not (tmp_path / "split" / "model.safetensors").exists()
    second = train(_cfg(tiny, data, tmp_path / "split", resume=True))
    assert second["finished"] and second["global_step"] == 6
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "full"), abs=0, rel=1e-6)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "split" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


# -- prepare ------------------------------------------------------------------------------

def test_prepare_verify_drops_a_failing_response(tiny, tmp_path, target):
    data = rows(3)
    data[1]["response"] = data[1]["response"].replace("return x + 1", "return x - 1")
    inp = write_jsonl(tmp_path / "d.jsonl", data)
    proc = subprocess.run([sys.executable, "-m", "trainer", "prepare", "--data", str(inp), "--output",
                           str(tmp_path / "prep"), "--model", str(tiny), "--verify", "--dedup", "--executor", target,
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "prep" / "prepare.json").read_text())
    assert report["rows_in"] == 3 and report["rows_out"] == 2 and report["truncated"] == 0
    rejects = [json.loads(line) for line in open(tmp_path / "prep" / "01-verify.rejects.jsonl")]
    assert [(r["id"], r["reason"]) for r in rejects] == [("r1", "FAILED")]
    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "prep" / "tokenized"))
    assert ds["id"] == ["r0", "r2"]
    summary = train(_cfg(tiny, tmp_path / "prep", tmp_path / "out", epochs=1, effective_batch_size=2,
                         per_device_batch_size=1))
    assert summary["examples"] == 2 and summary["finished"]


def test_prepare_verify_keeps_training_targets_whose_tests_the_rewrite_removed(tiny, tmp_path, target):
    """The pipeline's export holds rewritten responses, most without their tests: those run to
    their end (the quickstart's 6 exported rows went in, 1 came out, when tests were required),
    and one that crashes is still dropped, with its reason."""
    data = [{"id": "plain", "instruction": "i", "response": "```python\ndef f(x):\n    return x + 1\n```"},
            {"id": "crashes", "instruction": "i", "response": "```python\nimport no_such_module\n```"},
            {"id": "tested", "instruction": "i",
             "response": "```python\ndef g():\n    return 2\n\nassert g() == 2\n```"},
            {"id": "prose", "instruction": "i", "response": "No code here."}]
    inp = write_jsonl(tmp_path / "d.jsonl", data)
    proc = subprocess.run([sys.executable, "-m", "trainer", "prepare", "--data", str(inp), "--output",
                           str(tmp_path / "prep"), "--model", str(tiny), "--verify", "--executor", target,
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["rows_in"] == 4 and printed["rows_out"] == 2
    assert printed["dropped"]["execute"] == {"FAILED": 1, "no_parsable_code": 1}
    assert printed["notes"]["execute"] == {"ran_without_tests:no_tests": 2}   # plain and crashes
    rejects = {r["id"]: r["reason"] for r in map(json.loads, open(tmp_path / "prep" / "01-verify.rejects.jsonl"))}
    assert rejects == {"crashes": "FAILED", "prose": "no_parsable_code"}


def test_prepare_rejects_rows_without_instruction(tmp_path, tiny):
    inp = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "x", "answer": "y"}])
    proc = subprocess.run([sys.executable, "-m", "trainer", "prepare", "--data", str(inp), "--output",
                           str(tmp_path / "p"), "--model", str(tiny)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "needs string fields 'instruction' and 'response'" in proc.stderr


# -- evaluation ---------------------------------------------------------------------------

def run_eval(*args) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, "-m", "trainer", "eval", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)
    out = Path(args[list(args).index("--output") + 1])
    return proc, (json.loads(out.read_text()) if out.exists() else {})


def test_canonical_solutions_score_one_and_wrong_ones_zero(tmp_path, target):
    proc, res = run_eval("--canonical", "--output", tmp_path / "c.json", "--executor", target)
    assert proc.returncode == 0, proc.stderr
    assert res["pass@1"] == 1.0 and res["problems"] == 164
    wrong = tmp_path / "wrong.jsonl"
    problems = load_benchmark("humaneval").problems
    write_jsonl(wrong, [{"task_id": p.task_id, "completion": "    return None\n"} for p in problems])
    proc, res = run_eval("--completions", wrong, "--output", tmp_path / "w.json", "--executor", target)
    assert proc.returncode == 0, proc.stderr
    assert res["pass@1"] == 0.0
    assert {s["status"] for s in res["samples"]} == {"FAILED"} and len(res["samples"]) == 164


def test_pass_at_k_is_the_unbiased_estimator():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 5), (5, 5, 5), (200, 17, 10)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_several_samples_give_pass_at_k(tmp_path, target):
    problems = load_benchmark("humaneval").problems[:5]
    items = []
    for p in problems:
        items += [{"task_id": p.task_id, "completion": p.canonical_solution}] + \
                 [{"task_id": p.task_id, "completion": "    return None\n"}] * 4
    comp = write_jsonl(tmp_path / "c.jsonl", items)
    proc, res = run_eval("--completions", comp, "--output", tmp_path / "r.json", "--executor", target, "--limit", 5)
    assert proc.returncode == 0, proc.stderr
    assert res["samples_per_problem"] == 5
    assert res["pass@1"] == pytest.approx(0.2) and res["pass@5"] == pytest.approx(1.0)


def test_canonical_solutions_score_one_as_bodies_and_as_whole_solutions(tmp_path, target):
    """Both sample forms, on all 164: a body appended to the prompt, and the whole solution as
    given. Prompts with helpers (HumanEval/10, 32, 38, 50) and docstring lines starting with
    "from"/"import" (99, 115, 129) are where a hand-made assembly used to fail."""
    for form in ("body", "whole"):
        proc, res = run_eval("--canonical", form, "--output", tmp_path / f"{form}.json", "--executor", target,
                             "--no-progress")
        assert proc.returncode == 0, proc.stderr
        assert res["pass@1"] == 1.0 and res["problems"] == 164, form
    problem = next(p for p in load_benchmark("humaneval").problems if p.task_id == "HumanEval/10")
    assert Sample("    return 1\n").solution(problem) == problem.prompt + "    return 1\n"
    assert Sample("def f(): pass", whole=True).solution(problem) == "def f(): pass"


def test_mbpp_and_evalplus_formats(tmp_path, target):
    mbpp = write_jsonl(tmp_path / "mbpp.jsonl", [{
        "task_id": 11, "text": "Write a function to find the shared elements of two lists.",
        "code": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))",
        "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == {4, 5}",
                      "assert similar_elements((1, 2), (3, 4)) == ()"],
        "test_setup_code": "", "challenge_test_list": ["assert similar_elements('ab', 'b') == 'impossible'"]},
        {"task_id": 600, "text": "Outside the test split.", "code": "def f(x):\n    return x",
         "test_list": ["assert f(1) == 1"], "test_setup_code": "", "challenge_test_list": []}])
    plus = write_jsonl(tmp_path / "plus.jsonl", [{
        "task_id": "HumanEval/0x", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n", "entry_point": "add",
        "canonical_solution": "    return a + b\n", "base_input": [[1, 2], [0.5, 0.25]],
        "plus_input": [[10**9, 1], [-3, 3]], "atol": 0}])
    for bench, path, good, bad in [
        ("mbpp", mbpp, "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))",
         "def similar_elements(a, b):\n    return tuple(set(a) & set(b))[:1]"),
        ("humaneval+", plus, "    return b + a\n", "    return a - b\n"),
    ]:
        benchmark = load_benchmark(bench, str(path))
        assert len(benchmark.problems) == 1          # MBPP: the test split (tasks 11-510) only
        task = benchmark.problems[0].task_id
        for completion, expected in [(good, 1.0), (bad, 0.0)]:
            comp = write_jsonl(tmp_path / "c.jsonl", [{"task_id": task, "completion": completion}])
            proc, res = run_eval("--benchmark", bench, "--data-file", path, "--completions", comp,
                                 "--output", tmp_path / "r.json", "--executor", target)
            assert proc.returncode == 0, proc.stderr
            assert res["pass@1"] == expected, (bench, completion, res["samples"])
        proc, res = run_eval("--benchmark", bench, "--data-file", path, "--canonical",
                             "--output", tmp_path / "r.json", "--executor", target)
        assert res["pass@1"] == 1.0, (bench, res["samples"])   # the challenge test is not run
        assert res["data"]["sha256_16"] and ("plus" in res) == (bench == "humaneval+")


def test_mbpp_entry_point_is_the_function_the_test_calls():
    from benchmarks.problems import mbpp_entry_point

    code = "import math\ndef area(r):\n    return math.pi * r * r\ndef helper(x):\n    return x"
    assert mbpp_entry_point(code, "assert math.isclose(area(2), 12.566, rel_tol=0.001)") == "area"
    assert mbpp_entry_point("def pairs(a):\n    return a", "assert set(pairs([1])) == {1}") == "pairs"


def test_eval_generates_with_a_tiny_model(tiny, tmp_path, target):
    proc, res = run_eval("--model", tiny, "--backend", "transformers", "--max-new-tokens", 16, "--limit", 2,
                         "--output", tmp_path / "g.json", "--executor", target,
                         "--save-completions", tmp_path / "gen.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert res["problems"] == 2 and res["pass@1"] == 0.0  # a random model solves nothing, and says so
    assert len((tmp_path / "gen.jsonl").read_text().splitlines()) == 2
    # Samples are saved by default, and a second run with more problems generates only the new one.
    proc, _ = run_eval("--model", tiny, "--backend", "transformers", "--max-new-tokens", 16, "--limit", 2,
                       "--output", tmp_path / "h.json", "--executor", target)
    saved = tmp_path / "h.samples.jsonl"
    assert proc.returncode == 0 and len(saved.read_text().splitlines()) == 2
    proc, res = run_eval("--model", tiny, "--backend", "transformers", "--max-new-tokens", 16, "--limit", 3,
                         "--output", tmp_path / "h.json", "--executor", target)
    assert proc.returncode == 0 and "resuming: 2 of 3 problems" in proc.stderr, proc.stderr
    assert len(saved.read_text().splitlines()) == 3 and res["problems"] == 3
    proc, _ = run_eval("--model", tiny, "--backend", "openai", "--limit", 1, "--output", tmp_path / "o.json")
    assert proc.returncode == 2 and "needs --base-url" in proc.stderr


def test_eval_needs_exactly_one_source(tmp_path):
    proc, _ = run_eval("--output", tmp_path / "x.json")
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_padding_overhead_is_exact():
    from trainer.data import padding_overhead

    assert padding_overhead([100, 100, 100, 100], 4) == 0.0
    assert padding_overhead([100, 300], 2) == 0.5          # 600 computed for 400 real tokens
    assert padding_overhead([100, 300], 1) == 0.0          # batch 1: nothing to pad
    assert padding_overhead([], 8) == 0.0


def test_lora_and_gradient_checkpointing_options_train(tiny, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", rows(4))
    summary = train(_cfg(tiny, data, tmp_path / "lora", epochs=1, lora_r=4, gradient_checkpointing=True))
    assert summary["finished"] and summary["global_step"] == 1
    assert (tmp_path / "lora" / "adapter_config.json").exists()  # peft saved the adapter


def test_generation_prompts_are_the_originals_byte_for_byte():
    from benchmarks.problems import _evalplus
    from trainer.evaluate import prompt_for, sample_from_output

    he = next(p for p in load_benchmark("humaneval").problems if p.task_id == "HumanEval/2")
    stripped = he.prompt.strip()
    text, prefix = prompt_for(he)
    assert text == (f"{SYS}\n\n### Instruction\nWrite a Python function to solve the given task:\n```python\n"
                    f"{stripped}\n```\n\n### Response\n\n```python\n{stripped}")
    assert prefix == f"\n```python\n{stripped}"
    mbpp = _evalplus({"task_id": "Mbpp/3", "entry_point": "is_not_prime", "canonical_solution": "",
                      "prompt": '"""\nWrite a python function to identify non-prime numbers\n'
                                'assert is_not_prime(2) == False\n"""\n', "base_input": [[2]], "plus_input": []})
    assert prompt_for(mbpp)[0] == (f"{SYS}\n\n### Instruction\nWrite a python function to identify non-prime "
                                   "numbers.\n\nYour code should pass the following assertion:\n```python\n"
                                   "assert is_not_prime(2) == False\n```\n\n### Response\n\n```python")
    # The answer is cut at its closing fence and kept as a completion of the prompt.
    sample = sample_from_output(he, "\n    return number % 1.0\n```\n\nThis works because...", "original")
    assert sample.text == "\n    return number % 1.0\n" and not sample.whole
    assert sample.solution(he) == he.prompt + "\n    return number % 1.0\n"
