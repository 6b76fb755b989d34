"""What the execution filter runs from a model's response, and whether its tests count: exact
rules on realistic model output, and the programs run for real in the executor."""

from __future__ import annotations

import textwrap

import pytest

from executor import Program
from generator import response_format
from generator.response_format import (
    drop_interactive_main,
    fences,
    original_program,
    original_rejects,
    program_of,
)

SHELL_FIRST = textwrap.dedent('''\
    [Reasoning]
    Install nothing, then write the function.

    ```bash
    $ python --version
    Python 3.11.7
    ```

    [Implementation]
    ```python
    import math

    def hypot(a, b):
        return math.sqrt(a * a + b * b)
    ```

    [Explanation]
    Running it prints:

    ```
    5.0
    ```

    [Tests]
    ```python
    assert hypot(3, 4) == 5.0
    ```
    ''')


def test_fences_are_paired_by_a_markdown_parser():
    assert [f.lang for f in fences(SHELL_FIRST)] == ["bash", "python", "", "python"]
    program = program_of(SHELL_FIRST)
    assert program.startswith("import math") and program.rstrip().endswith("assert hypot(3, 4) == 5.0")
    assert "5.0\n" not in program.split("assert")[0]    # the untagged output block is not code
    assert "[Tests]" not in program


def test_the_old_regex_ran_prose_and_the_parser_does_not():
    import re

    old = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)
    assert any("[Explanation]" in block for block in old.findall(SHELL_FIRST))  # prose between two fences ran
    assert "[Explanation]" not in program_of(SHELL_FIRST)


def test_python_tags_and_unparsable_blocks():
    text = "```py\nx = 1\n```\n\n```Python3\ny = 2\n```\n\n```python\ndef broken(:\n```\n\n```python\n\n```"
    assert program_of(text) == "x = 1\n\ny = 2"


@pytest.mark.parametrize("response,reason", [
    (SHELL_FIRST, None),
    # asserts in a loop and under a __main__ guard in the tests still run
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\nfor x in range(3):\n"
     "    assert f(x) == x\n```", None),
    ("```python\ndef f(x):\n    return x\nif __name__ == '__main__':\n    assert f(1) == 1\n```", None),
    # a test function defined in the tests and called
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\ndef check():\n    assert f(1) == 1\n\ncheck()\n```",
     None),
    # a unittest.TestCase that is run
    ("```python\nimport unittest\ndef f(x):\n    return x\nclass T(unittest.TestCase):\n    def test_f(self):\n"
     "        self.assertEqual(f(1), 1)\nif __name__ == '__main__':\n    unittest.main()\n```", None),
    # an assert that only validates input inside the implementation tests nothing
    ("```python\ndef f(x):\n    assert x >= 0\n    return x\n\nprint(f(1))\n```", "no_tests"),
    # a TestCase nobody runs, and one run with exit=False (failures would still exit 0)
    ("```python\nimport unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        assert 1 == 2\n```",
     "tests_never_run"),
    ("```python\nimport unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        assert 1 == 2\n"
     "unittest.main(exit=False)\n```", "tests_never_run"),
    # a pytest-style test function that is never called
    ("```python\ndef f(x):\n    return x\n\ndef test_f():\n    assert f(1) == 1\n```", "tests_never_run"),
    # a call to a function with a test name that checks nothing
    ("```python\ndef test_f(x):\n    return x\n\ntest_f(1)\n```", "no_tests"),
    # asserts in the implementation do not make up for a [Tests] section without code
    ("[Implementation]\n```python\nassert 1 == 1\n```\n[Tests]\nIt works.", "no_tests_block"),
    ("No code at all.", "no_parsable_code"),
    # the only asserts sit in an interactive main block, which is removed before the run
    ("```python\ndef f(x):\n    return x\nif __name__ == '__main__':\n    n = int(input())\n"
     "    assert f(n) == n\n```", "no_tests"),
    # asserts that cannot fail: a non-empty tuple, a constant
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\nassert (f(1) == 2, 'msg')\n```", "no_tests"),
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\nassert True\nassert 'x'\n```", "no_tests"),
    # asserts whose failure is swallowed
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\ntry:\n    assert f(1) == 2\n"
     "except AssertionError:\n    print('failed')\n```", "no_tests"),
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\nimport contextlib\n"
     "with contextlib.suppress(AssertionError):\n    assert f(1) == 2\n```", "no_tests"),
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\ndef test_f():\n    try:\n"
     "        assert f(1) == 2\n    except Exception:\n        pass\n\ntest_f()\n```", "no_tests"),
    # ... but one that is caught and raised again still fails the program
    ("```python\ndef f(x):\n    return x\n```\n[Tests]\n```python\ntry:\n    assert f(1) == 1\n"
     "except AssertionError:\n    print('failed')\n    raise\n```", None),
    # test functions that are called but never run: a coroutine not awaited, a generator
    ("```python\ndef f(x):\n    return x\n\nasync def test_f():\n    assert f(1) == 2\n\ntest_f()\n```",
     "tests_never_run"),
    ("```python\ndef f(x):\n    return x\n\ndef test_f():\n    assert f(1) == 2\n    yield\n\ntest_f()\n```",
     "no_tests"),
    # ... a coroutine run by asyncio.run does run
    ("```python\nimport asyncio\ndef f(x):\n    return x\n\nasync def test_f():\n    assert f(1) == 1\n\n"
     "asyncio.run(test_f())\n```", None),
    # unittest.main() with keywords it cannot see (exit=False may be among them)
    ("```python\nimport unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        assert 1 == 2\n"
     "unittest.main(**{'exit': False})\n```", "tests_never_run"),
    # a test started in a thread (its failure does not fail the program), next to `assert True`
    ("```python\nimport threading\ndef f(x):\n    return x\n\ndef test_f():\n    assert f(1) == 2\n\n"
     "threading.Thread(target=test_f).start()\nassert True\n```", "tests_never_run"),
    # HumanEval's shape, the commonest a base model writes: check(candidate), given the code
    ("```python\ndef add(a, b):\n    return a + b\n```\n\n```python\ndef check(candidate):\n"
     "    assert candidate(1, 2) == 3\n\ncheck(add)\n```", None),
    # ... but a function with asserts called without the code under test is input validation
    ("```python\ndef add(a, b):\n    assert a >= 0\n    return a + b\n\nadd(1, 2)\n```", "no_tests"),
])
def test_tests_must_run_and_be_able_to_fail(response, reason):
    assert response_format.tests_reason(response) == reason


INTERACTIVE = textwrap.dedent('''\
    def add(a, b):
        return a + b

    if __name__ == "__main__":
        a, b = map(int, input().split())
        print(add(a, b))

    assert add(2, 3) == 5
    ''')


def test_interactive_main_block_is_dropped_and_the_tests_pass(client):
    program, dropped = drop_interactive_main(INTERACTIVE)
    assert dropped and "input()" not in program and "assert add(2, 3) == 5" in program
    before, after = client.execute_many([Program(INTERACTIVE, id="as-is"), Program(program, id="dropped")])
    results = {r.id: r for r in (before, after)}
    assert not results["as-is"].passed and b"EOFError" in results["as-is"].stderr
    assert results["dropped"].passed
    assert drop_interactive_main("if __name__ == '__main__':\n    print(1)\n") == (
        "if __name__ == '__main__':\n    print(1)\n", False)   # a main block that reads nothing stays


@pytest.mark.parametrize("code,reason", [
    ("def f(x):\n    return x\n\nassert f(1) == 1", None),
    ("import math\n\ndef f(x):\n    return math.sqrt(x)\n\nassert f(4) == 2", "exec_in_function_scope"),
    ("def g(x):\n    return x\n\ndef f(x):\n    return g(x)\n\nassert f(1) == 1", "exec_in_function_scope"),
    ("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\nassert fact(3) == 6", "exec_in_function_scope"),
    ("K = 2\nassert [x * K for x in [1]] == [2]", "exec_in_function_scope"),
    ("xs = [1, 2]\nassert [x for x in xs] == xs", None),   # the first iterable is evaluated outside
])
def test_what_the_original_filter_would_reject(code, reason):
    assert original_rejects(f"```python\n{code}\n```") == reason


def test_the_original_filter_runs_the_programs_it_rejects_wrongly(client):
    """The estimate is checked against the real thing: exec() inside a function fails exactly
    where `original_rejects` says it does."""
    cases = {"plain": "def f(x):\n    return x\n\nassert f(1) == 1",
             "helper": "def g(x):\n    return x\n\ndef f(x):\n    return g(x)\n\nassert f(1) == 1",
             "recursion": "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\nassert fact(3) == 6"}
    wrapped = {name: original_program(f"```python\n{c}\n```") for name, c in cases.items()}
    programs = [Program(f"def _run(code):\n    exec(code)\n\n_run({code!r})\n", id=name)
                for name, code in wrapped.items()]
    results = {r.id: r.passed for r in client.execute_many(programs)}
    expected = {name: original_rejects(f"```python\n{c}\n```") is None for name, c in cases.items()}
    assert results == expected == {"plain": True, "helper": False, "recursion": False}
