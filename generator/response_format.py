"""What a model-written response is made of, and what the execution filter runs from it.

Responses are Markdown: prose, fenced code blocks, and (in the SelfCodeAlign format) the tags
`[Reasoning]`, `[Implementation]`, `[Explanation]` and `[Tests]`. Fences are found with a real
Markdown parser (markdown-it-py), not a regular expression, because a regex pairs fences wrongly
as soon as a non-Python block (```` ```bash ````) or an output block comes first, and then the
program that runs is prose.

Only Python-tagged blocks are code to run: an untagged block is, in model output, almost always
program output or a shell session. A response passes the filter only if its tests *ran and
could have failed*; `tests_reason` says why a program does not qualify.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

PYTHON_TAGS = frozenset({"python", "py", "python3"})
TAGS = ("[Reasoning]", "[Implementation]", "[Explanation]", "[Tests]")

MARKDOWN = MarkdownIt("commonmark")


@dataclass(frozen=True)
class Fence:
    lang: str      # the info string's first word, lower-cased ("" when untagged)
    code: str


def fences(text: str) -> list[Fence]:
    """Every fenced code block, in order, as a CommonMark parser sees it."""
    out = []
    for token in MARKDOWN.parse(text):
        if token.type == "fence" and token.markup.startswith("`"):
            lang = token.info.strip().split()[0].lower() if token.info.strip() else ""
            out.append(Fence(lang, token.content))
    return out


def python_blocks(text: str) -> list[str]:
    """Python-tagged blocks that parse, in order (a block that does not parse is left out)."""
    blocks = []
    for fence in fences(text):
        if fence.lang not in PYTHON_TAGS or not fence.code.strip():
            continue
        try:
            ast.parse(fence.code)
        except (SyntaxError, ValueError):
            continue
        blocks.append(fence.code)
    return blocks


def program_of(response: str) -> str:
    """The program the execution filter runs: every parsable Python block, in order, as one
    script (so module-level imports and helpers are visible to the tests)."""
    return "\n\n".join(block.rstrip("\n") for block in python_blocks(response))


def tests_section(response: str) -> str | None:
    """The text after the `[Tests]` tag, or None when the response has no such tag."""
    index = response.find("[Tests]")
    return None if index < 0 else response[index + len("[Tests]"):]


# -- do the tests run? ------------------------------------------------------------------------

_SWALLOWS = frozenset({"AssertionError", "Exception", "BaseException"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _names_in(node: ast.AST | None) -> set[str]:
    """Exception names a handler or suppress() takes: `AssertionError`, `(ValueError, Exception)`."""
    if node is None:
        return {"BaseException"}   # a bare except
    return {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(node)
            if isinstance(n, (ast.Name, ast.Attribute))} & _SWALLOWS


def _swallowing_try(node: ast.stmt) -> bool:
    """A try whose handler catches a failed assert and does not raise again."""
    return isinstance(node, ast.Try) and any(
        _names_in(h.type) and not any(isinstance(n, ast.Raise) for n in ast.walk(h)) for h in node.handlers)


def _suppressing_with(node: ast.stmt) -> bool:
    """`with contextlib.suppress(AssertionError):` (or Exception): a failed assert is swallowed."""
    if not isinstance(node, (ast.With, ast.AsyncWith)):
        return False
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            f = call.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "suppress" and any(_names_in(a) for a in call.args):
                return True
    return False


def _can_fail(node: ast.Assert) -> bool:
    """`assert True`, `assert "text"` and `assert (f(1) == 2, "message")` (a non-empty tuple) can
    never fail."""
    test = node.test
    if isinstance(test, ast.Constant):
        return not test.value
    if isinstance(test, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        return not (test.keys if isinstance(test, ast.Dict) else test.elts)
    return True


def _runs(nodes: list[ast.stmt], into_functions: bool = False):
    """Statements that run when `nodes` run and whose failed assert fails the program: not in a
    function or class body (unless `into_functions`, for the body being walked itself), nor in
    a try that swallows the AssertionError, nor under `suppress(AssertionError)`."""
    for node in nodes:
        yield node
        if isinstance(node, _SCOPES) and not into_functions:
            continue
        if isinstance(node, ast.Try) and _swallowing_try(node):
            yield from _runs(node.orelse + node.finalbody)   # the body's failures are caught
            for handler in node.handlers:
                yield from _runs(handler.body)
            continue
        if _suppressing_with(node):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _runs(getattr(node, name, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            yield from _runs(handler.body)
        for case in getattr(node, "cases", []) or []:
            yield from _runs(case.body)


def _live_asserts(statements) -> bool:
    return any(isinstance(s, ast.Assert) and _can_fail(s) for s in statements)


def _function_tests(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function whose own body holds an assert that can fail and is not swallowed, and which
    runs when called: a generator (a `yield` in its body) only makes a generator object."""
    body = list(_runs(func.body))
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for stmt in body if not isinstance(stmt, _SCOPES)
           for n in ast.walk(stmt) if not isinstance(n, _SCOPES)):
        return False
    return _live_asserts(body)


def _calls(statements) -> list[ast.Call]:
    """Calls made by module-level statements (not inside functions or lambdas they define)."""
    out = []
    for stmt in statements:
        if isinstance(stmt, _SCOPES):
            continue
        stack: list[ast.AST] = [stmt]
        while stack:
            n = stack.pop()
            if isinstance(n, ast.Call):
                out.append(n)
            stack.extend(c for c in ast.iter_child_nodes(n) if not isinstance(c, _SCOPES))
    return out


def _called_functions(statements) -> dict[str, list[ast.Call]]:
    """{name: calls}: functions called by module level, directly or through `asyncio.run(f())`."""
    called: dict[str, list[ast.Call]] = {}
    for call in _calls(statements):
        f = call.func
        if isinstance(f, ast.Name):
            called.setdefault(f.id, []).append(call)
        is_run = isinstance(f, ast.Attribute) and f.attr == "run" and isinstance(f.value, ast.Name) \
            and f.value.id == "asyncio"
        if is_run and call.args and isinstance(call.args[0], ast.Call) and isinstance(call.args[0].func, ast.Name):
            called.setdefault(call.args[0].func.id, []).append(call)
    return called


def _runs_unittest(statements) -> bool:
    """A module-level `unittest.main()` that can fail the program: with `exit=False` (or keywords
    given as `**mapping`, which may hold it) a failing test still exits 0, so it proves nothing."""
    for call in _calls(statements):
        f = call.func
        is_main = (isinstance(f, ast.Attribute) and f.attr == "main" and isinstance(f.value, ast.Name)
                   and f.value.id == "unittest")
        if is_main and not any(k.arg in ("exit", None) for k in call.keywords):
            return True
    return False


def _test_case_classes(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Attribute) and b.attr == "TestCase") or (isinstance(b, ast.Name)
                                                                             and b.id == "TestCase")
                for b in node.bases):
            if any(isinstance(m, ast.FunctionDef) and m.name.startswith("test") and _has_assert_or_check(m)
                   for m in node.body):
                return True
    return False


def _has_assert_or_check(func: ast.FunctionDef) -> bool:
    for n in _runs(func.body):
        if isinstance(n, ast.Assert) and _can_fail(n):
            return True
        for c in ast.walk(n) if not isinstance(n, _SCOPES) else ():
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr.startswith(
                    ("assert", "fail")):
                return True
    return False


def runnable_program(response: str, drop_interactive: bool = True) -> tuple[str, bool]:
    """(the program the execution filter runs, whether an interactive main block was removed)."""
    program = program_of(response)
    return drop_interactive_main(program) if drop_interactive else (program, False)


def tests_reason(response: str, drop_interactive: bool = True) -> str | None:
    """None when the response's tests run and can fail; otherwise why not. Judged on the program
    that runs: after the interactive `__main__` block is removed (`drop_interactive`), its
    asserts are not tests.

    What counts: an assert that can fail (not a constant, not a non-empty tuple) and runs at
    module level in the tests (under `[Tests]` when the response has that tag, anywhere at
    module level otherwise), outside a try that swallows AssertionError and outside
    `suppress(AssertionError)`; a function holding such an assert, called at module level, that
    is a test function (defined in the tests, or named `test*`) or is given the code under test
    (HumanEval's `check(candidate)`); an `async def` one only through `asyncio.run`, never a
    generator; a `unittest.TestCase` with a test method, run by `unittest.main()` that can fail
    (the agent also refuses a `unittest.main()` that ran no test). What does not count: an
    assert inside the implementation (input validation), a TestCase nobody runs, a call to a
    function that merely has a `test` name but checks nothing, a test started in a thread.
    """
    program, _ = runnable_program(response, drop_interactive)
    if not program.strip():
        return "no_parsable_code"
    tree = ast.parse(program)
    section = tests_section(response)
    if section is not None:
        test_program = "\n\n".join(python_blocks(section))
        if drop_interactive:
            test_program, _ = drop_interactive_main(test_program)
        if not test_program.strip():
            return "no_tests_block"
        test_tree = ast.parse(test_program)
        test_functions = {n.name for n in test_tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        scope = test_tree
    else:
        test_functions = set()
        scope = tree
    statements = list(_runs(scope.body))
    if _live_asserts(statements):
        return None
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    code_under_test = set(functions) | {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    for name, calls in _called_functions(statements).items():
        func = functions.get(name)
        if func is None or not _function_tests(func):
            continue
        if isinstance(func, ast.AsyncFunctionDef) and not any(isinstance(c.func, ast.Attribute) for c in calls):
            continue   # a coroutine called without asyncio.run never runs
        named_test = name in test_functions or name.startswith("test")
        given_code = any(isinstance(a, ast.Name) and a.id in code_under_test - {name}
                         for c in calls for a in (*c.args, *(k.value for k in c.keywords)))
        if named_test or given_code:
            return None
    if _test_case_classes(tree) and _runs_unittest(list(_runs(tree.body))):
        return None
    uncalled_tests = [n for n in functions.values() if (n.name in test_functions or n.name.startswith("test"))
                      and _function_tests(n)]
    if uncalled_tests or _test_case_classes(tree):
        return "tests_never_run"
    return "no_tests"


# -- programs that read standard input ---------------------------------------------------------

def _reads_input(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "input":
            return True
        if isinstance(n, ast.Attribute) and n.attr == "stdin":
            return True
    return False


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def drop_interactive_main(program: str) -> tuple[str, bool]:
    """Remove top-level `if __name__ == "__main__":` blocks that read standard input.

    A program task's entry point usually reads `input()`; run unattended it gets EOFError and a
    correct sample is rejected. Its tests exercise the functions, not the interactive entry
    point, so the block is dropped (as selfcodealign does) and the rest runs. True when a block
    was dropped.
    """
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return program, False
    lines = program.splitlines(keepends=True)
    drop = [n for n in tree.body if _is_main_guard(n) and _reads_input(n)]
    if not drop:
        return program, False
    for node in reversed(drop):
        del lines[node.lineno - 1:node.end_lineno]
    return "".join(lines), True


# -- what the original filter would have done --------------------------------------------------

_ORIGINAL_FENCE = re.compile(r"^```python\s*\n(.*?)(?=^```)", re.S | re.M)


def original_program(response: str) -> str:
    """The program the original pipeline's execution filter extracted: blocks opened by a line
    starting with ```` ```python ```` up to the next line starting with ```` ``` ````, those that
    parse, joined by one newline."""
    blocks = []
    for block in _ORIGINAL_FENCE.findall(response):
        try:
            ast.parse(block)
        except (SyntaxError, ValueError):
            continue
        blocks.append(block)
    return "\n".join(blocks)


def original_rejects(response: str) -> str | None:
    """Why the original filter would reject a sample that passes here, or None.

    The original ran the program with `exec()` inside a function, so the program's top-level
    names went into that function's locals: functions, lambdas and comprehensions (their own
    scopes) that read a module-level import, helper or constant raised NameError. This is a
    static estimate of that, plus the cases where its fence regex saw a different program.
    """
    ours, theirs = program_of(response), original_program(response)
    if not theirs:
        return "original_found_no_code"
    if theirs.strip() != ours.strip():
        program, reason = theirs, "original_ran_other_code"
    else:
        program, reason = ours, None
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return "original_found_no_code"
    module_names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module_names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module_names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            module_names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
              ast.GeneratorExp)
    for node in ast.walk(tree):
        if not isinstance(node, scopes):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = node.body
        elif isinstance(node, ast.Lambda):
            inner = [node.body]
        else:  # a comprehension's first iterable is evaluated outside its scope
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            gens = node.generators
            inner = parts + [c for g in gens for c in g.ifs] + [g.iter for g in gens[1:]]
        local = _bound_names(node)
        for stmt in inner:
            for n in ast.walk(stmt):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in module_names \
                        and n.id not in local:
                    return "exec_in_function_scope"
    return reason


def _bound_names(scope: ast.AST) -> set[str]:
    bound = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        bound |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
        bound |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    for n in ast.walk(scope):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            bound.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not scope:
            bound.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound |= {(x.asname or x.name).split(".")[0] for x in n.names}
    return bound
