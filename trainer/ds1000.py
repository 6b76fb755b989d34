"""DS-1000 as the model card ran it: the StarCoder2-Instruct authors' completion-mode prompt
(bigcode-project/starcoder2-self-align, `evaluation/ds_1000.py`), 40 samples at temperature 0.2
and top_p 0.95, cut at the first fence; graded by DS-1000's own test program in the executor.

- **Prompt.** DS-1000's prompt becomes an instruction (the problem, code blocks as Markdown
  fences) and a response prefix (the setup code, then `# Solution`), put in the model's
  instruction template; Matplotlib prompts ("# SOLUTION START") become "Write a solution to the
  following problem" with the code prefix.
- **Answer.** DS-1000's postprocess (its `test_ds1000.py`): up to `</code>`, without
  "```python", up to the next fence, up to "END SOLUTION", without `<code>`.
- **Grading.** DS-1000's test (`code_context`: `test_execution(code)`, then `test_string(code)`
  where defined) decides, with DS-1000's 120 s limit, in the sandbox but out of the answer's
  reach: the test runs in a judge process (`trainer.harness`, mode `ds1000`), and each
  `exec(code, test_env)` it makes runs the answer in a fresh child process, which sends back the
  values the answer left (`result`...). The judge is not dumpable (the child, same user, cannot
  read its memory or descriptors) and reads those values with an unpickler that builds NumPy,
  pandas, SciPy-sparse, scikit-learn and plain values only; PyTorch and TensorFlow tensors come
  back as arrays with their dtype and are rebuilt by the judge. A value it refuses is missing,
  so the test fails, and the result names it.
- **Matplotlib** problems check the figures the answer drew: pyplot's figures travel both ways
  as pickles (the judge's into the child before the answer runs, the child's back after), the
  judge's unpickler allowing artists, transforms and the helpers a figure holds, and a getattr
  without dunder names or modules for its bound callbacks. Files the test wrote (a reference
  image) that the child overwrites are put back (`harness._JudgeFiles`).
- **Libraries.** The data-science sandbox profile (`executor build-image --profile ds1000`) has
  them; an embedded executor uses it. Problems whose library the executor's image lacks are
  not run: they are listed with the reason and left out of the score, never counted as
  failures.
"""

from __future__ import annotations

import base64
import pickle

from benchmarks.ds1000 import DS1000, MODULES, Problem
from executor import Limits, Program
from trainer import harness
from trainer.evaluate import PROMPT
from trainer.values import read_lines

STOP = ("```",)
TIMEOUT_S = 120.0
# The card's sampling (the authors' script: n_batches 8 x 5 samples, max_length 1024).
N_SAMPLES, TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 40, 0.2, 0.95, 1024


# -- prompt -----------------------------------------------------------------------------------------

def completion_prompt(prompt: str) -> tuple[str, str]:
    """(instruction, response prefix) from a DS-1000 prompt (the authors' Completion mode)."""
    if "SOLUTION START" in prompt:   # Matplotlib: code, then "# SOLUTION START"
        if "<code>" in prompt or "</code>" in prompt or not prompt.strip().endswith("# SOLUTION START"):
            raise ValueError("a '# SOLUTION START' prompt with <code> blocks is not DS-1000's")
        code_prefix = prompt[: prompt.rindex("# SOLUTION START")].strip()
        instruction = f"Write a solution to the following problem:\n```python\n{code_prefix}\n```"
        response = f"```python\n{code_prefix}\n# Solution\n"
    else:
        at = prompt.rindex("A:")
        answer = prompt[at + 2:].strip()
        instruction = prompt[:at].strip()
        if instruction.startswith("Problem:"):
            instruction = instruction[len("Problem:"):].strip()
        lines = answer.splitlines(keepends=True)
        if "### BEGIN SOLUTION" in prompt:   # a function to complete
            if prompt.count("<code>") != 1 or prompt.count("</code>") != 0 or len(lines) < 3:
                raise ValueError("a '### BEGIN SOLUTION' prompt is expected with one open <code> block")
            return_line, result_line, begin_line = lines[-3:]
            if not return_line.strip().startswith("# return") or not result_line.strip().startswith("# ") \
                    or begin_line.strip() != "### BEGIN SOLUTION":
                raise ValueError("a '### BEGIN SOLUTION' prompt ends with '# return', '# ...', '### BEGIN SOLUTION'")
            hint = begin_line.replace("###", "#").replace("BEGIN SOLUTION", "Solution")
            response = "".join(lines[:-3]).strip() + f"\n{hint}\n"
        else:
            if "BEGIN SOLUTION" not in prompt or prompt.count("<code>") != 2 or prompt.count("</code>") != 1 \
                    or len(lines) < 4:
                raise ValueError("expected two <code> blocks and 'BEGIN SOLUTION' in a DS-1000 prompt")
            first_end, second_start = prompt.index("</code>"), prompt.index("<code>", prompt.index("<code>") + 1)
            if first_end > second_start:
                raise ValueError("a DS-1000 prompt's first <code> block must close before the second opens")
            block_end, instruction_line, begin_line, block_start = lines[-4:]
            if begin_line.strip() != "BEGIN SOLUTION" or block_start.strip() != "<code>":
                raise ValueError("a DS-1000 prompt ends with 'BEGIN SOLUTION' and an open <code>")
            if block_end.strip() != "</code>":
                if len(lines) >= 6 and lines[-6].strip() == "</code>":
                    prefix_lines, starting = lines[:-6], lines[-5:-2]
                else:
                    if instruction_line.strip() != "</code>":
                        raise ValueError("cannot find the end of the setup code in a DS-1000 prompt")
                    prefix_lines, starting = lines[:-3], []
            else:
                prefix_lines, starting = lines[:-4], lines[-3:-2]
            starting = [f"# {line.lstrip()}" for line in starting]
            response = "".join([*prefix_lines, *starting]).strip() + "\n# Solution\n"
    instruction = instruction.replace("<code>", "```python").replace("</code>", "```")
    response = response.replace("<code>", "```python").replace("</code>", "```")
    return instruction, response


def prompt_for(problem: Problem) -> str:
    instruction, response = completion_prompt(problem.prompt)
    return PROMPT.format(instruction=instruction, response=response)


def cut_at_fence(text: str) -> str:
    """The authors' generation postprocess: the answer up to the first fence."""
    return text.split("```")[0]


def postprocess(code: str) -> str:
    """DS-1000's own postprocess of an answer before it is inserted."""
    code = code.split("</code>")[0]
    code = code.replace("```python", "")
    code = code.split("```")[0]
    code = code.split("\nEND SOLUTION")[0]
    return code.replace("<code>", "")


# -- grading ------------------------------------------------------------------------------------------

PROBE = """import importlib, json
found = {}
for name in %r:
    try:
        importlib.import_module(name)
        found[name] = True
    except Exception as exc:
        found[name] = type(exc).__name__
print(json.dumps(found))
"""


def available_libraries(client) -> dict[str, str]:
    """{library: "" if the executor's image imports it, else why not}."""
    import json

    modules = sorted(set(MODULES.values()))
    result = client.execute(Program(PROBE % (modules,), limits=Limits(timeout_s=120.0, memory_mb=4096)))
    try:
        found = json.loads(result.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the library probe failed in the sandbox: {result.status.value} "
                           f"{result.stderr[-300:].decode(errors='replace')}") from None
    return {lib: "" if found.get(mod) is True else f"{mod} cannot be imported in the executor's image "
            f"({found.get(mod)})" for lib, mod in MODULES.items()}


def test_program(problem: Problem, answer: str, key: str, whole: bool = False) -> Program:
    """The check of one answer: DS-1000's test in the judge, the answer in a child (see above).
    `whole`: DS-1000's program in one process, as its own harness runs it (the verdict then next
    to the answer; the bench compares the two). Either reports `done` only when the test ran to
    its end (an early exit, or `exit()`, is not a pass)."""
    solution = postprocess(answer)
    if whole:
        case = {"mode": "program", "program": problem.test_program(solution)}
    else:
        case = {"mode": "ds1000", "code_context": problem.code_context, "solution": solution,
                "time_limit": TIMEOUT_S - 5}
    return Program(harness.source(), id=key, stdin=base64.b64encode(pickle.dumps(case)),
                   limits=Limits(timeout_s=TIMEOUT_S, memory_mb=4096))


def verdict(stdout: bytes, truncated: bool, exit_ok: bool) -> tuple[bool, str]:
    report = read_lines(stdout, truncated)
    if report.problem:
        return False, report.problem
    if report.events == [["done"]] and exit_ok:
        return True, ""
    for event in report.events:
        if event[:1] == ["error"] and len(event) >= 4:
            refused = f" (values refused: {'; '.join(map(str, event[4]))})" if len(event) > 4 and event[4] else ""
            return False, f"{event[2]}: {event[3]}{refused}"
    return False, "the test program did not run to its end"


def score(bench: DS1000, samples: dict[str, list[str]], client, concurrency: int = 16, progress: bool = False
          ) -> dict:
    """pass@1 overall, per library and per perturbation type, as DS-1000 reports it."""
    from tqdm import tqdm

    from trainer.evaluate import check_coverage, pass_at_k, run_programs, verdict_status

    problems = bench.problems
    check_coverage([p.task_id for p in problems], samples)
    why_not = available_libraries(client)
    skipped = {p.task_id: why_not[p.library] for p in problems if why_not.get(p.library)}
    run = [p for p in problems if p.task_id not in skipped]
    programs = [test_program(p, text, f"{p.task_id}\x1f{i}") for p in run for i, text in enumerate(samples[p.task_id])]
    with tqdm(total=len(programs), desc="eval ds1000", unit="program", disable=not progress) as bar:
        results = run_programs(programs, client, concurrency, bar)
    records, correct = [], {}
    for p in run:
        correct[p.task_id] = 0
        for i, text in enumerate(samples[p.task_id]):
            r = results[f"{p.task_id}\x1f{i}"]
            passed, why = verdict(r.stdout, r.stdout_truncated, r.exit_code == 0)
            correct[p.task_id] += passed
            records.append({"task_id": p.task_id, "sample": i, "library": p.library,
                            "perturbation_type": p.perturbation_type, "passed": passed, "reason": why,
                            "status": verdict_status(r, passed),
                            "completion": text, "stderr_tail": r.stderr[-500:].decode("utf-8", "backslashreplace")})
    n = {p.task_id: len(samples[p.task_id]) for p in run}

    def mean(group: list[Problem]) -> dict:
        if not group:
            return {}
        return {"pass@1": sum(pass_at_k(n[p.task_id], correct[p.task_id], 1) for p in group) / len(group),
                "problems": len(group)}

    return {
        "benchmark": "ds1000", "data": {"source": bench.source, "sha256_16": bench.data_hash},
        "grader": "DS-1000's own tests (code_context: test_execution, test_string)",
        "verdicts": "decided by DS-1000's test in a judge process the answer's process cannot reach",
        "judged_in_sandbox": {},
        "sandbox_image": sorted({r.sandbox_image for r in results.values() if r.sandbox_image}),
        "skipped": skipped,
        "problems": len(run), "samples_per_problem": min(n.values(), default=0), **mean(run),
        "by_library": {lib: mean([p for p in run if p.library == lib]) for lib in sorted({p.library for p in run})},
        "by_perturbation": {t: mean([p for p in run if p.perturbation_type == t])
                            for t in sorted({p.perturbation_type for p in run})},
        "samples": records,
    }


def generate(bench: DS1000, engine, problems: list[Problem], n: int = N_SAMPLES, temperature: float = TEMPERATURE,
             top_p: float = TOP_P, max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0) -> dict[str, list[str]]:
    from generator.backends import Sampling
    from generator.stage import stable_seed

    made = engine.generate([prompt_for(p) for p in problems],
                           Sampling(n=n, temperature=temperature, max_new_tokens=max_new_tokens, stop=STOP,
                                    top_p=top_p),
                           [stable_seed(seed, "ds1000", p.task_id) for p in problems])
    return {p.task_id: [cut_at_fence(c.text) for c in out] for p, out in zip(problems, made, strict=True)}


__all__ = ["DS1000", "completion_prompt", "generate", "postprocess", "prompt_for", "score"]
