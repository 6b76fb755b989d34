"""A scripted stand-in for the base model (a test double: the real model needs a GPU).

It reads the query block of each prompt and answers the way a base model plausibly would,
well-formed or malformed on purpose, keyed by the seed function's name, so every stage's
parsing, execution, selection, dedup and decontamination can be checked exactly. The real
backends (vllm, openai, transformers) share the interface; the tiny-model test covers one.
"""

from __future__ import annotations

import os
import re

from benchmarks.problems import humaneval_rows
from generator.backends import Completion, Sampling
from generator.prompts import EXAMPLE_HEADER, PREAMBLE
from generator.stages.judge import PREAMBLE as JUDGE_PREAMBLE

CORRECT = '''[Reasoning]
Use a helper and a module-level import.

[Implementation]
```python
import math

def _square(x):
    return x * x

def {fn}(r):
    return math.pi * _square(r)
```

[Explanation]
The helper squares the radius. Nothing to install:

```bash
pip list
```

```
>>> {fn}(1.0)
3.141592653589793
```

[Tests]
```python
assert abs({fn}(1.0) - math.pi) < 1e-9
assert {fn}(0) == 0
```
That is all, thank you.'''

WRONG = '''[Reasoning]
Return the radius.

[Implementation]
```python
def {fn}(r):
    return r
```

[Explanation]
Wrong on purpose.

[Tests]
```python
assert {fn}(2) == 4
```'''

# Passes when run, but [Tests] comes before [Explanation]: the format check drops it.
UNORDERED = '''[Reasoning]
Multiply by pi twice.

[Implementation]
```python
import math

def {fn}(r):
    return math.pi * r * r
```

[Tests]
```python
assert {fn}(0) == 0
```

[Explanation]
Area of a circle.'''

SCALE = '''[Reasoning]
Multiply by the factor.

[Implementation]
```python
FACTOR = {k}

def {fn}(x):
    # the factor is a module-level constant
    return FACTOR * x
```

[Explanation]
A constant factor.

[Tests]
```python
assert {fn}(2) == {k2}
assert {fn}(0) == 0
```'''

# Its only assert validates input inside the implementation: nothing tests it.
UNTESTED = '''```python
def {fn}(x):
    assert x is not None
    return x
```
That is all.'''

def _query(prompt: str) -> str:
    return prompt.rsplit(EXAMPLE_HEADER, 1)[1]


class ScriptedBackend:
    def __init__(self, crash_after_calls: int | None = None, state_file: str | None = None) -> None:
        self.crash_after_calls = crash_after_calls
        self.state_file = state_file
        self.calls = 0

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        self.calls += 1
        if self.crash_after_calls is not None and self.calls > self.crash_after_calls:
            os._exit(17)  # a crash: no cleanup, no flush, like a killed process
        out = []
        for prompt, _seed in zip(prompts, seeds, strict=True):
            query = _query(prompt)
            if prompt.startswith(JUDGE_PREAMBLE):
                name = re.search(r"def (\w+)\(", query).group(1)
                # "double" gets a split vote that goes against it; everything else is approved.
                samples = [Completion(" No", "stop"), Completion("Yes.", "stop"), Completion("No", "stop")] \
                    if name == "double" else [Completion("Yes", "stop")]
            elif prompt.startswith(PREAMBLE["concepts"]):
                samples = self.concepts(query)
            elif prompt.startswith(PREAMBLE["instructions"]):
                samples = self.instruction(query)
            else:
                samples = self.responses(query)
            out.append([samples[i % len(samples)] for i in range(sampling.n)])
        return out

    def concepts(self, query: str) -> list[Completion]:
        name = re.search(r"def (\w+)\(", query).group(1)
        if name == "triple":
            return [Completion("\n", "stop")]  # nothing usable: the row is dropped
        if name == "halve":
            return [Completion("arithmetic, " * 400, "length")]  # cut off by the length limit
        return [Completion(f"{name} computation, arithmetic, function design\n\n", "stop")]

    def instruction(self, query: str) -> list[Completion]:
        name = re.search(r"### Concepts\n(\w+) computation", query).group(1)
        return [Completion(f"Write a Python function `solve_{name}` that performs the {name} "
                           "computation described by its concepts.\n\n", "stop")]

    def responses(self, query: str) -> list[Completion]:
        name = re.search(r"`solve_(\w+)`", query).group(1)
        fn = f"solve_{name}"
        if name == "area":
            return [Completion(CORRECT.format(fn=fn), "stop"), Completion(WRONG.format(fn=fn), "stop"),
                    Completion(UNORDERED.format(fn=fn), "stop")]
        if name in ("double", "twice"):
            # "twice" writes the same solution as "double" with another name: a near-duplicate.
            fn_name = "solve_double" if name == "twice" else fn
            body = SCALE.format(fn=fn_name, k=2, k2=4)
            if name == "twice":
                body = body.replace("Multiply by the factor.", "Multiply by the factor, as asked.")
            return [Completion(body, "stop"), Completion(UNTESTED.format(fn=fn), "stop"),
                    Completion(body[:40], "length")]
        if name == "copycat":
            problem = humaneval_rows()[0]
            leaked = (f"[Reasoning]\nAs known.\n\n[Implementation]\n```python\n{problem['prompt']}"
                      f"{problem['canonical_solution']}```\n\n[Explanation]\nA copy.\n\n[Tests]\n```python\n"
                      f"assert {problem['entry_point']}([1.0, 2.0], 0.5) is False\n```")
            return [Completion(leaked, "stop")]
        return [Completion(SCALE.format(fn=fn, k=3, k2=6), "stop")]
