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

def _top_level(nodes: list[ast.stmt]):
    """Statements that run when the module runs: the module body and the bodies of its
    compound statements (if/for/while/with/try), but not function or class bodies."""
    for node in nodes:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _top_level(getattr(node, name, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            yield from _top_level(handler.body)
        for case in getattr(node, "cases", []) or []:
            yield from _top_level(case.body)


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _called_names(statements) -> set[str]:
    names = set()
    for stmt in statements:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for n in ast.walk(stmt):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                names.add(n.func.id)
    return names


def _runs_unittest(statements) -> bool:
    """A module-level `unittest.main()` (or `main()` imported from unittest) that can fail the
    program: with `exit=False` a failing test still exits 0, so it proves nothing."""
    for stmt in statements:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for n in ast.walk(stmt):
            if not isinstance(n, ast.Call):
                continue
            f = n.func
            is_main = (isinstance(f, ast.Attribute) and f.attr == "main" and isinstance(f.value, ast.Name)
                       and f.value.id == "unittest")
            if is_main and not any(k.arg == "exit" for k in n.keywords):
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
    for n in ast.walk(func):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr.startswith(
                ("assert", "fail")):
            return True
    return False


def tests_reason(response: str) -> str | None:
    """None when the response's tests run and can fail; otherwise why not.

    What counts: an `assert` that runs at module level in the tests (under `[Tests]` when the
    response has that tag, anywhere at module level otherwise); a test function (defined in the
    tests, or named `test*`) that holds an assert and is called at module level; a
    `unittest.TestCase` with a test method, run by `unittest.main()`. What does not count: an
    assert inside the implementation (input validation), a TestCase nobody runs, a call to a
    function that merely has a `test` name but checks nothing.
    """
    program = program_of(response)
    if not program:
        return "no_parsable_code"
    tree = ast.parse(program)
    section = tests_section(response)
    if section is not None:
        test_program = "\n\n".join(python_blocks(section))
        if not test_program:
            return "no_tests_block"
        test_tree = ast.parse(test_program)
        test_functions = {n.name for n in test_tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        scope = test_tree
    else:
        test_functions = set()
        scope = tree
    statements = list(_top_level(scope.body))
    if any(isinstance(s, ast.Assert) for s in statements):
        return None
    called = _called_names(statements)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in called and \
                (node.name in test_functions or node.name.startswith("test")) and _has_assert(node):
            return None
    if _test_case_classes(tree) and _runs_unittest(list(_top_level(tree.body))):
        return None
    uncalled_tests = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and (n.name in test_functions or n.name.startswith("test")) and _has_assert(n)]
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
