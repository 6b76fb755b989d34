"""The steps after execution, one rule at a time: the format check, the rewrite, selection,
decontamination and the seed filters, on hand-written realistic model output."""

from __future__ import annotations

import collections
import gzip
import json
import random
import sysconfig
import textwrap
from pathlib import Path

import pytest

from benchmarks.texts import file_texts, humaneval_texts, load_benchmarks
from generator.contamination import ContaminationIndex
from generator.prompts import draw_properties, load_examples
from generator.stages.judge import JudgeSeeds
from generator.stages.sanitize import Parts, RewriteConfig, rewrite, split_response, strip_comment_lines
from generator.stages.seeds import SeedFilter
from generator.stages.select import Select, SelectConfig

GOOD = textwrap.dedent('''\
    [Reasoning]
    Add the two numbers.

    [Implementation]
    ```python
    def add(a, b):
        # plain addition
        return a + b  # inline comments stay
    ```

    [Explanation]
    Python's `+` adds.

    [Tests]
    Some checks:

    ```python
    assert add(1, 2) == 3
    assert add(0, 0) == 0
    assert add(-1, 1) == 0
    ```

    ## Example 3
    The model went on to the next example.''')


# -- check_format ---------------------------------------------------------------------------

def test_well_formed_response_is_split_and_cut_after_the_tests():
    parts = split_response(GOOD)
    assert isinstance(parts, Parts)
    assert parts.reasoning == "Add the two numbers." and parts.explanation == "Python's `+` adds."
    assert parts.tests.startswith("Some checks:") and parts.tests.endswith("```")
    assert "Example 3" not in parts.tests
    assert parts.tests_block.splitlines() == ["assert add(1, 2) == 3", "assert add(0, 0) == 0",
                                              "assert add(-1, 1) == 0"]


@pytest.mark.parametrize("text,reason", [
    (GOOD.replace("[Explanation]", ""), "tag_missing_or_repeated"),
    (GOOD + "\n[Tests]\nagain", "tag_missing_or_repeated"),
    (GOOD.replace("[Reasoning]", "[X]").replace("[Explanation]", "[Reasoning]").replace("[X]", "[Explanation]"),
     "tags_out_of_order"),
    (GOOD.replace("```python\ndef add", "```\ndef add"), "no_python_implementation"),
    (GOOD.replace("Some checks:", "```python\nassert add(2, 2) == 4\n```\n"), "tests_not_one_python_block"),
    (GOOD.replace("assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0",
                  "from math import pi\ndef check():\n    return add(1, 2)"), "tests_without_assert"),
])
def test_malformed_responses_are_named(text, reason):
    assert split_response(text) == reason


def test_a_line_starting_with_a_slash_ends_the_tests():
    # The original cut the tests at a line starting with "/" (a path, a "// output" line);
    # what is left then holds no assert, so the response is dropped.
    assert split_response(GOOD.replace("Some checks:", "Some checks:\n/usr/bin/python3 -m pytest")) == \
        "tests_without_assert"


def test_comment_lines_are_stripped_only_inside_code():
    text = "# Title\n\n```python\nx = 1\n\n# a comment\ny = 2  # kept\n    # indented\n```\n# prose heading"
    assert strip_comment_lines(text) == "# Title\n\n```python\nx = 1\ny = 2  # kept\n```\n# prose heading"


# -- rewrite --------------------------------------------------------------------------------

def _rewrite(instruction: str, response: str = GOOD, seed: int = 0, **cfg):
    row = {"id": "r", "instruction": instruction, "response": response}
    return rewrite(row, RewriteConfig(**cfg), random.Random(seed))


def test_rewrite_with_every_drop_keeps_only_the_implementation():
    new, reason, hinted = _rewrite("Write add.", drop_explanation_p=1.0, drop_reasoning_p=1.0, assertion_hint_p=0)
    assert reason is None and not hinted
    assert new["response"] == "```python\ndef add(a, b):\n    return a + b  # inline comments stay\n```"
    assert new["instruction"] == "Write add."


def test_rewrite_keeps_tests_when_the_instruction_asks_for_them_and_never_hints_then():
    new, _, hinted = _rewrite("Write add, with tests.", drop_explanation_p=0, drop_reasoning_p=0,
                              assertion_hint_p=1.0)
    assert not hinted and "assert add(1, 2) == 3" in new["response"] and "[Tests]" not in new["response"]
    assert new["response"].startswith("Add the two numbers.\n\n```python")


def test_rewrite_appends_some_of_the_responses_own_assertions():
    new, _, hinted = _rewrite("Write add.", assertion_hint_p=1.0, drop_explanation_p=0, drop_reasoning_p=0)
    assert hinted and "assert" not in new["response"]
    head, hint = new["instruction"].split("\n\nYour code should pass the following assertion")
    assert head == "Write add."
    asserts = hint.split("```python\n")[1].rstrip("`\n").splitlines()
    assert 1 <= len(asserts) <= 3 and set(asserts) <= set(split_response(GOOD).tests_block.splitlines())
    assert hint.startswith("s:" if len(asserts) > 1 else ":")


def test_rewrite_uses_test_case_wording_for_tests_that_are_not_bare_asserts():
    response = GOOD.replace("assert add(0, 0) == 0\n", "for x in range(2):\n    assert add(x, 0) == x\n")
    new, _, hinted = _rewrite("Write add.", response, assertion_hint_p=1.0)
    assert hinted and "Your code should pass the following test case:\n```python\nassert add(1, 2) == 3\nfor x" \
        in new["instruction"]
    new, _, hinted = _rewrite("Write add. For example, add(1, 2) is 3.", response, assertion_hint_p=1.0)
    assert not hinted


def test_incomplete_responses_are_dropped():
    for marker in ("# TODO: negatives", "raise NotImplementedError", "# Your code here"):
        response = GOOD.replace("# plain addition", marker)
        assert _rewrite("Write add.", response)[:2] == (None, "incomplete")
    assert _rewrite("Write add.", GOOD, drop_incomplete=False)[1] is None


def test_rewrite_stream_is_the_original_order_of_draws():
    """One generator over the rows: the draws are explanation, reasoning, number of asserts,
    which asserts, hint, in that order, as the original made them."""
    rng = random.Random(0)
    expected = (rng.random() < 0.5, rng.random() < 0.5)
    k = min(rng.choice([1, 2, 3, 4, 5]), 3)
    lines = split_response(GOOD).tests_block.splitlines()
    chosen = rng.sample(lines, k=k)
    hinted = rng.random() < 0.5
    new, _, got_hint = _rewrite("Write add.", seed=0)
    assert ("Python's `+` adds." not in new["response"], "Add the two numbers." not in new["response"]) == expected
    assert got_hint == hinted
    if hinted:
        assert "\n".join(chosen) in new["instruction"]


# -- select ---------------------------------------------------------------------------------

def _row(rid: str, instruction: str, response: str, iid: str) -> dict:
    return {"id": rid, "instruction": instruction, "response": response, "instruction_id": iid}


def test_select_keeps_one_sample_per_instruction_and_uses_a_later_sample_when_the_first_repeats(tmp_path):
    code = "```python\ndef {}(x):\n    return x\n```\n"
    rows = [_row("a#0", "Task A", code.format("f"), "a"),
            _row("b#0", "Task B", code.format("f"), "b"),       # the same response as A's
            _row("b#1", "Task B", code.format("g") + "other", "b"),
            _row("c#0", "Task C", code.format("g"), "c")]       # the same function name as b#1
    for seed in range(6):
        order = list(rows)
        random.Random(seed).shuffle(order)
        result = Select(tmp_path / f"s{seed}.jsonl", SelectConfig(seed=seed)).process_batch(rows)
        kept = {r["sample_id"] for r in result.kept}
        assert len({r["id"] for r in result.kept}) == len(result.kept)   # one per instruction
        # whatever the order, "f" and "g" are each claimed once, so two instructions survive
        assert len(kept) == 2
        first = next(r for r in order if r["id"] in ("a#0", "b#0"))
        assert first["id"] in kept   # the first of two identical responses wins
        reasons = sorted(r["reason"] for r in result.rejected)
        assert set(reasons) <= {"response_already_chosen", "instruction_already_chosen",
                                "function_names_already_chosen"}


def test_select_first_block_rule_and_python_rule(tmp_path):
    response = "```bash\npip install x\n```\n\n```python\ndef f():\n    return 1\n```"
    rows = [_row("a#0", "Task A", response, "a")]
    first = Select(tmp_path / "a.jsonl", SelectConfig(names_from="first_block")).process_batch(rows)
    assert [r["reason"] for r in first.rejected] == ["first_code_block_does_not_parse"]
    python = Select(tmp_path / "b.jsonl", SelectConfig(names_from="python")).process_batch(rows)
    assert [r["sample_id"] for r in python.kept] == ["a#0"]


# -- properties -----------------------------------------------------------------------------

def test_category_mix_is_a_weighted_config_value():
    assert {draw_properties(s, {"function": 1.0}, {"medium": 1.0, "hard": 1.0})[0] for s in range(200)} == {"function"}
    drawn = [draw_properties(s, {"function": 2.0, "class": 1.0, "program": 1.0})[0] for s in range(4000)]
    assert 0.45 < drawn.count("function") / len(drawn) < 0.55


# -- decontamination ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def humaneval_index() -> ContaminationIndex:
    return ContaminationIndex(humaneval_texts())


def test_humaneval_docstrings_and_solutions_are_found_case_insensitively(humaneval_index):
    from benchmarks.problems import humaneval_rows

    problem = humaneval_rows()[0]
    doc = problem["prompt"].split('"""')[1].strip()
    hit = humaneval_index.match(f"Please solve:\n{doc.upper()}")
    assert hit and hit.benchmark == "humaneval_docstrings" and hit.task_id == "HumanEval/0"
    hit = humaneval_index.match(f"def f(numbers, threshold):\n{problem['canonical_solution']}")
    assert hit and hit.benchmark == "humaneval_solutions"


def test_generic_canonical_solutions_are_allowed(humaneval_index):
    for code in ("def add(x, y):\n    return x + y", "def strlen(string):\n    return len(string)",
                 "def concatenate(strings):\n    return ''.join(strings)"):
        assert humaneval_index.match(code) is None, code


def test_no_false_positives_on_clean_code(humaneval_index):
    """Our own worked examples and the standard library's code are clean: none may be flagged.
    (A 10-token n-gram rule flagged 1 of our examples and generic code everywhere.)"""
    for e in load_examples():
        assert humaneval_index.match(f"{e.instruction}\n\n{e.response}") is None
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    assert len(files) > 150
    flagged = [f.name for f in files if humaneval_index.match(f.read_text(errors="replace"))]
    assert flagged == []


def test_published_benchmark_formats_are_recognised(tmp_path):
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text("\n".join(json.dumps(r) for r in [
        {"task_id": 5, "text": "Write a function to count ways to tile a board.", "code": "def a(n): return n",
         "test_list": []},
        {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character.",
         "code": "def remove_Occ(s,ch):\n    return s", "test_list": ["assert remove_Occ('hello','l') == 'heo'"]}]))
    plus = tmp_path / "MbppPlus.jsonl.gz"
    with gzip.open(plus, "wt") as f:
        f.write(json.dumps({"task_id": "Mbpp/2", "prompt": '"""\nWrite a function to find the shared elements'
                            ' from the given two lists.\nassert set(similar_elements((3, 4), (4, 5)))'
                            ' == set((4,))\n"""\n',
                            "canonical_solution": "def similar_elements(a, b):\n  return tuple(set(a) & set(b))\n",
                            "entry_point": "similar_elements"}) + "\n")
    gsm = tmp_path / "gsm8k-test.jsonl"
    gsm.write_text(json.dumps({"question": "Janet's ducks lay 16 eggs per day. How much does she make?",
                               "answer": "#### 18"}) + "\n")
    ds1000 = tmp_path / "ds1000.jsonl"
    ds1000.write_text(json.dumps({"prompt": "Problem:\nHow do I reshape a frame in pandas?\nA:\n<code>\n"
                                  "BEGIN SOLUTION\n<code>", "reference_code": "x",
                                  "metadata": {"problem_id": 7}}) + "\n")
    texts = {(t.benchmark, t.task_id) for f in (mbpp, plus, gsm, ds1000) for t in file_texts(f)}
    assert texts == {("mbpp_docstrings", "11"), ("mbpp_solutions", "11"),   # task 5 is not in the test split
                     ("mbppplus_docstrings", "Mbpp/2"), ("mbppplus_solutions", "Mbpp/2"),
                     ("gsm8k_questions", "0"), ("ds1000_prompts", "7")}
    index = ContaminationIndex(load_benchmarks((), [str(mbpp), str(plus), str(gsm), str(ds1000)]))
    assert index.match("Write a function to find the shared elements from the given two lists.").benchmark == \
        "mbppplus_docstrings"
    assert index.match("janet's ducks lay 16 eggs per day. how much does she make?").benchmark == "gsm8k_questions"
    bad = tmp_path / "other.jsonl"
    bad.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(ValueError, match="not a known benchmark format"):
        file_texts(bad)


# -- seeds ----------------------------------------------------------------------------------

SEEDS = textwrap.dedent('''\
    def lower_todo(x):
        """Lower-case marker."""
        return x  # todo: negatives


    def debug_name(x):
        """A marker inside a longer word."""
        debug = x
        return debug


    def python2(x):
        """Old syntax."""
        print "x"
        return x


    def fine(x):
        """Fine."""
        return x + 1
    ''')


def test_seed_rules_original_and_precise():
    original = {reason or r["name"] for r, reason in SeedFilter(rules="original").functions(SEEDS, "s.py")}
    precise = {reason or r["name"] for r, reason in SeedFilter(rules="precise").functions(SEEDS, "s.py")}
    # The file does not parse as a whole, yet its other functions are kept.
    assert original == {"todo_fixme_bug", "fine"}           # "debug" contains "bug"
    assert precise == {"todo_fixme_bug", "debug_name", "fine"}
    with pytest.raises(ValueError, match="rules"):
        SeedFilter(rules="strict")


@pytest.mark.parametrize("answer,verdict", [(" Yes", True), ("Yes, yes", True), ("No", False), ("yes no", False),
                                            ("Not sure, yes", False)])
def test_judge_counts_yes_against_no_and_a_tie_is_no(answer, verdict):
    assert JudgeSeeds.parse(None, answer) is verdict  # type: ignore[arg-type]


# -- dedup ----------------------------------------------------------------------------------

def test_dedup_fields_one_after_the_other(tmp_path):
    from generator.stages.dedup import Dedup, DedupConfig

    body = "def total(values):\n    result = 0\n    for v in values:\n        result += v\n    return result\n"
    rows = [
        {"id": "a", "instruction": "Sum a list of numbers.", "response": f"Loop.\n\n```python\n{body}```"},
        # the same code, with other prose around it: a duplicate only by its code
        {"id": "b", "instruction": "Add up the values.", "response": "To add up the values we walk over the list "
         "once, keep a running total that starts at zero, add each value to it as we meet it, and return the "
         "total at the end; an empty list gives zero, which is the sum of no numbers at all, as expected. "
         f"Here it is:\n\n```python\n{body}```\nThat is the whole solution, and it runs in linear time."},
        {"id": "c", "instruction": "Say hello.", "response": "Hello."},          # no code at all
        {"id": "d", "instruction": "Say hi.", "response": "Hi there."},           # no code either: kept
    ]
    only_response = Dedup(tmp_path / "r.jsonl", DedupConfig(exact=False)).process_batch(rows)
    assert [r["id"] for r in only_response.kept] == ["a", "b", "c", "d"]
    with_code = Dedup(tmp_path / "c.jsonl", DedupConfig(exact=False, fields=["response", "code"])).process_batch(rows)
    assert [r["id"] for r in with_code.kept] == ["a", "c", "d"]
    assert [(r["id"], r["reason"], r["duplicate_of"]) for r in with_code.rejected] == [
        ("b", "near_duplicate_code", "a")]
    with pytest.raises(ValueError, match="fields"):
        DedupConfig(fields=["solution"])


def test_dedup_exact_then_near_and_an_exact_duplicate_is_not_matched_again(tmp_path):
    from generator.stages.dedup import Dedup, DedupConfig

    body = "\n".join(f"    total = total + values[{i}] * {i}" for i in range(30))
    code = f"def weigh(values):\n    total = 0\n{body}\n    return total\n"
    rows = [
        {"id": "a", "instruction": "Weigh the values.", "response": f"```python\n{code}```"},
        {"id": "b", "instruction": "Weigh  the values.", "response": "Another."},          # same instruction
        {"id": "c", "instruction": "Weigh them.", "response": f"```python\n{code}```  "},   # same response
        {"id": "d", "instruction": "Weigh all.", "response": f"```python\n{code.replace('29', '31')}```"},
        {"id": "e", "instruction": "Other.", "response": "Nothing alike at all, in any way."},
    ]
    result = Dedup(tmp_path / "d.jsonl", DedupConfig()).process_batch(rows)
    assert [r["id"] for r in result.kept] == ["a", "e"]
    assert [(r["id"], r["reason"], r["duplicate_of"]) for r in result.rejected] == [
        ("b", "exact_duplicate_instruction", "a"), ("c", "exact_duplicate_response", "a"),
        ("d", "near_duplicate", "a")]


def test_exact_dedup_ignores_every_whitespace_character_that_str_split_does():
    """ASCII text takes a faster path (bytes.translate) than the rest (str.split): both must
    drop the same characters, \x1c-\x1f included, so a text's key does not depend on whether
    some other part of it is ASCII."""
    import sys

    from generator.stages.dedup import _normalized_hash

    whitespace = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    plain = "def f(x):return x+1"
    for ch in whitespace:
        spaced = f"def{ch}f(x):{ch}{ch}return x+1{ch}"
        assert _normalized_hash(spaced.replace(" ", "")) == _normalized_hash(plain), repr(ch)
    ascii_spaced = "def f(x):\x1c\n\treturn\x1fx+1"
    assert _normalized_hash(ascii_spaced) == _normalized_hash(ascii_spaced + "\u3000") == _normalized_hash(plain)
    assert _normalized_hash("caf\u00e9 x") == _normalized_hash("caf\u00e9x") != _normalized_hash("cafex")


def test_decontaminate_drops_rows_holding_a_benchmark_text_and_names_it(tmp_path):
    from benchmarks.texts import BenchmarkText
    from generator.stages.decontaminate import Decontaminate

    index = ContaminationIndex([BenchmarkText("mbpp_docstrings", "11", "Write a function to remove the first and "
                                              "last occurrence of a given character from the string.")])
    rows = [{"id": "x", "instruction": "WRITE A FUNCTION TO REMOVE THE FIRST AND LAST OCCURRENCE OF A GIVEN "
                                      "CHARACTER FROM THE STRING.", "response": "..."},
            {"id": "y", "instruction": "Remove a character.", "response": "Use str.replace."}]
    result = Decontaminate(tmp_path / "d.jsonl", index).process_batch(rows)
    assert [r["id"] for r in result.kept] == ["y"]
    assert [(r["id"], r["reason"], r["task_id"]) for r in result.rejected] == [("x", "mbpp_docstrings_match", "11")]


def test_a_filter_copies_the_rows_it_keeps_as_read_and_resumes_after_a_crash_without_loss(tmp_path):
    """Decontaminate keeps rows unchanged, so rows read from JSONL are written as the bytes they
    were read from (their spacing, key order and escapes), batch after batch; resuming after a
    crash gives the same bytes as a run that never stopped."""
    from benchmarks.texts import BenchmarkText
    from generator.rows import read_jsonl
    from generator.runner import Input, run_stages
    from generator.stages.decontaminate import Decontaminate

    text = "Write a function to remove the first and last occurrence of a given character from the string."
    index = ContaminationIndex([BenchmarkText("mbpp_docstrings", "11", text)])
    lines = ['  {"response": "caf\\u00e9 ' + str(i) + '",   "id": "r' + str(i) + '", "instruction": "x"} '
             for i in range(7)]
    lines[3] = json.dumps({"id": "r3", "instruction": text, "response": "..."})
    lines.insert(5, "   ")   # a blank line is no row
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = [line.strip().encode() for line in lines if line.strip() and '"r3"' not in line]

    class CrashOnThirdBatch(Decontaminate):
        calls = 0

        def process_batch(self, rows):
            CrashOnThirdBatch.calls += 1
            if CrashOnThirdBatch.calls == 3:
                raise RuntimeError("crash")
            return super().process_batch(rows)

    def stage(cls, out):
        s = cls(tmp_path / out, index, progress=False)
        s.batch_size = 2
        return s

    run_stages([stage(Decontaminate, "whole.jsonl")], Input.jsonl(src))
    assert (tmp_path / "whole.jsonl").read_bytes().splitlines() == expected
    with pytest.raises(RuntimeError, match="crash"):
        run_stages([stage(CrashOnThirdBatch, "resumed.jsonl")], Input.jsonl(src))
    run_stages([stage(Decontaminate, "resumed.jsonl")], Input.jsonl(src))
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    # Rows that come from no file are encoded: the same rows.
    run_stages([stage(Decontaminate, "encoded.jsonl")], Input(list(read_jsonl(src)), "rows"))
    assert list(read_jsonl(tmp_path / "encoded.jsonl")) == [json.loads(line) for line in expected]


def test_jsonl_from_other_tools_a_byte_order_mark_crlf_and_no_final_newline_reads_and_is_copied_clean(tmp_path):
    """Windows tools write a UTF-8 byte-order mark and CRLF line ends, and some writers leave out
    the last newline: the rows read the same, a filter's copies of them carry none of it, and a
    row appended after the last one starts a line of its own. A lone CR is no line end in JSONL:
    a clear error naming the line."""
    from generator.rows import JsonlRows, read_jsonl
    from generator.runner import Input, run_stages
    from generator.stages.decontaminate import Decontaminate

    rows = [{"id": f"r{i}", "instruction": f"task {i}", "response": f"caf\u00e9 {i}"} for i in range(3)]
    src = tmp_path / "windows.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(r).encode() for r in rows))
    assert list(read_jsonl(src)) == rows
    assert len(JsonlRows(src)) == 3
    out = tmp_path / "out.jsonl"
    run_stages([Decontaminate(out, ContaminationIndex([]), progress=False)], Input.jsonl(src))
    assert out.read_bytes() == b"".join(json.dumps(r).encode() + b"\n" for r in rows)

    lone_cr = tmp_path / "mac.jsonl"
    lone_cr.write_bytes(b"\r".join(json.dumps(r).encode() for r in rows) + b"\r")
    with pytest.raises(ValueError, match=r"mac.jsonl:1: not valid JSON: extra data"):
        list(read_jsonl(lone_cr))


def test_dedup_streams_its_input_and_decides_as_one_pass_over_all_rows_whatever_the_workers(tmp_path):
    """Dedup reads its input chunk by chunk (4,000 rows) and holds no rows: duplicates across
    chunk boundaries are still found, kept rows are the input's bytes, and the kept rows and the
    rejects are the same with one process or two, and as process_batch over the whole list."""
    from generator.rows import read_jsonl
    from generator.runner import Input, run_stages
    from generator.stages.dedup import Dedup, DedupConfig

    rng = random.Random(7)
    words = ["total", "value", "items", "count", "index", "result", "limit", "offset", "weight", "score"]

    def function(i: int) -> str:
        body = "\n".join(f"    {rng.choice(words)}_{j} = {rng.choice(words)} * {rng.randint(0, 99)} + {i}"
                         for j in range(12))
        return f"def f{i}(values):\n{body}\n    return values\n"

    originals = [function(i) for i in range(9000)]
    rows = []
    for i, code in enumerate(originals):
        if i >= 100 and i % 50 == 0:     # an earlier row's code, one line changed: a near duplicate
            earlier = originals[i - rng.choice([37, 4100, 8000 if i > 8000 else 99])].splitlines()
            earlier[3] = "    changed = 1"
            code = "\n".join(earlier) + "\n"
        elif i >= 100 and i % 77 == 0:   # an earlier row's code respaced: an exact duplicate
            code = originals[i - 4321 if i > 4321 else i - 99].replace(" = ", "=")
        rows.append({"id": f"r{i}", "instruction": f"Task {i}.", "response": f"```python\n{code}```", "extra": [i]})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))

    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out-{workers}.jsonl"
        run_stages([Dedup(out, DedupConfig(num_proc=workers), progress=False)], Input.jsonl(src))
        outputs[workers] = (out.read_bytes(), (tmp_path / f"out-{workers}.rejects.jsonl").read_bytes())
    assert outputs[1] == outputs[2]
    kept_bytes, rejects_bytes = outputs[1]
    rejected = [json.loads(line) for line in rejects_bytes.splitlines()]
    reasons = collections.Counter(r["reason"] for r in rejected)
    assert reasons["exact_duplicate_response"] >= 100 and reasons["near_duplicate"] >= 100, reasons
    kept_count = len(kept_bytes.splitlines())
    assert len({r["id"] for r in rejected}) == len(rejected) and kept_count + len(rejected) == len(rows)
    # Some duplicates point across chunks, more than 4,000 rows back.
    assert any(int(r["id"][1:]) - int(r["duplicate_of"][1:]) > 4000 for r in rejected)

    whole = Dedup(tmp_path / "unused.jsonl", DedupConfig()).process_batch(rows)
    assert [r["id"] for r in read_jsonl(tmp_path / "out-1.jsonl")] == [r["id"] for r in whole.kept]
    assert sorted(map(json.dumps, rejected)) == sorted(map(json.dumps, whole.rejected))
    kept_ids = {r["id"] for r in whole.kept}
    assert kept_bytes == b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n"
                                  for r in rows if r["id"] in kept_ids)
    # Rows from no file: the same rows kept.
    run_stages([Dedup(tmp_path / "listed.jsonl", DedupConfig(), progress=False)], Input(rows, "rows"))
    assert list(read_jsonl(tmp_path / "listed.jsonl")) == whole.kept


def test_the_faithful_seed_judge_prompt_is_the_originals_byte_for_byte():
    """seed_gathering/filter_dataset.py's template_few_shot and prompt_fmt, rebuilt here from their
    text for the examples in file order; ours must equal it byte for byte."""
    import random

    from generator.stages.judge import original_prompt, original_shots, split_docstring

    class InOrder(random.Random):
        def shuffle(self, x, random=None):  # noqa: A002  (the base class's name)
            pass

    def theirs(code, doc, tail):
        return ("<issue_start>username_0: I have a function in Python and I'd like someone to check my description "
                "of this function.\nI'm doing this so that I can write a good docstring for this function.\n\n"
                f"Here is the code for the function:\n```py\n{code}\n```\n\n"
                f"Here is my description of this program:\n```\n{doc}\n```\n\n"
                "Do not attempt to execute the function or to judge its correctness.\n"
                "Answer with \"Yes\" or \"No\" depending on if my description has enough information alone to "
                "re-implement the function.\nAlso, answer with \"No\" if the description does not match the function."
                + tail)

    seed = 'def twice(x):\n    """Twice x.\n\n    Args: x, a number.\n    """\n    return 2 * x'
    expected = ""
    for shot in original_shots():
        doc, code = split_docstring(shot["code"])
        expected += theirs(code, doc, "<issue_comment>username_1: Sure, no problem. I will be able to help.\n"
                                      f"My answer is: {shot['answer']}\n\n{shot['rationale']}\n\nUpvotes: 200")
    # the original's unindent takes the least indent of the non-blank lines: 0 here (the first line)
    expected += theirs("def twice(x):\n    \n    return 2 * x", "Twice x.\n\n    Args: x, a number.",
                       "\nUpvotes: 100<issue_comment>username_1: Sure, no problem. I will be able to help.\n"
                       "My answer is:")
    assert original_prompt(seed, InOrder()) == expected
    assert len(original_shots()) == 7 and [s["answer"] for s in original_shots()].count("Yes") == 4
    # the shots are shuffled per row, from the row's own seed: the same row, the same prompt
    assert original_prompt(seed, random.Random(3)) == original_prompt(seed, random.Random(3))
