"""DS-1000 through the executor: the authors' completion prompts, DS-1000's own postprocess and
test programs, verdicts in agreement with DS-1000's harness on tricky answers, problems of a
library the image lacks skipped and said so, per-library and per-perturbation scores."""

from __future__ import annotations

import json
import subprocess
import sys

import ds1000_data
import pytest

from benchmarks.ds1000 import load
from trainer import ds1000


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return load(str(ds1000_data.write(tmp_path_factory.mktemp("ds") / "ds1000.jsonl")))


def test_completion_prompts_follow_the_authors_shapes(bench):
    by_id = {p.problem_id: p for p in bench.problems}
    instruction, response = ds1000.completion_prompt(by_id[291].prompt)
    assert instruction == "I have a 2D numpy array\na = np.array([[1, 2], [3, 4]])\nHow do I sum each column?"
    # The response opens the setup code's block and stays in it: the answer continues the code.
    assert response == ("```python\nimport numpy as np\na = np.array([[1, 2], [3, 4]])\n"
                        "# result = ... # put solution in this variable\n# Solution\n")
    instruction, response = ds1000.completion_prompt(by_id[292].prompt)
    assert response.endswith("def f(a = example_a):\n    # Solution\n")   # the three hint lines give way
    assert "### BEGIN" not in response
    instruction, response = ds1000.completion_prompt(by_id[510].prompt)
    assert instruction.startswith("Write a solution to the following problem:\n```python\nimport numpy")
    assert response.endswith("# plot x\n# Solution\n")
    prompt = ds1000.prompt_for(by_id[291])
    assert "### Instruction\nI have a 2D" in prompt and prompt.endswith("# Solution\n")
    with pytest.raises(ValueError):
        ds1000.completion_prompt("Problem:\nno answer marker")


def test_postprocess_is_ds1000s():
    assert ds1000.postprocess("result = 1\n</code>\nmore") == "result = 1\n"
    assert ds1000.postprocess("```python\nresult = 1\n```\ntext") == "\nresult = 1\n"
    assert ds1000.postprocess("<code>result = 1\nEND SOLUTION\nx") == "result = 1"
    assert ds1000.cut_at_fence("result = 2\n```\nexplanation") == "result = 2\n"


ANSWERS = {
    "291": ["result = a.sum(axis=0)\n", "result = a.sum()\n", "result = np.array([4, 6])\n",
            "i = 0\nwhile i < 0:\n    i += 1\nresult = a.sum(axis=0)\n",        # test_string forbids while
            "result = a.sum(axis=0)\nexit()\n",                                 # exit() is disabled there
            "import sys\nresult = a.sum(axis=0)\nsys.exit(0)\n",                # leaving early is not passing
            "result = a.sum(axis=0)</code>\nignored", "```python\nresult = a.sum(axis=0)\n```",
            "result = undefined_name\n"],
    "292": ["    return np.sort(a)\n", "    return a\n", "    return sorted(a)\n"],
    "0": ["result = df.sort_values('a').reset_index(drop=True)\n", "result = df.sort_values('a')\n",
          "result = df.sort_values('a').reset_index(drop=True).astype({'a': 'float64'})\n"],
}
# Figures: the saved image (same drawing) or the axes (title and legend) decide.
PLOT_ANSWERS = {"511": [
    "plt.plot(x, y, label='y')\nplt.title('line')\nplt.legend()\n",
    "plt.plot(x, y, label='y', color='red')\nplt.title('line')\nplt.legend()\nplt.show()\n",
    "plt.plot(x, y, label='y')\nplt.title('wrong')\nplt.legend()\n",
    "fig, ax = plt.subplots()\nax.plot(x, y, label='y')\nax.set_title('line')\nax.legend()\n",
    "plt.plot(x, y)\nplt.title('line')\n",
    # A forgery: the answer saves its drawing over the test's reference image, so the two are
    # equal (spelled so that the test's filter of `savefig` lines misses it). DS-1000's own
    # harness passes it (the same process, the same files).
    "plt.plot([0, 1])\ngetattr(plt, 'save' + 'fig')('ans.png', bbox_inches='tight')\n",
]}
# Right answers that return what the judge must rebuild: tensors, a figure.
LIBRARY_ANSWERS = {"932": ["result = a.t()\n", "result = a\n", "result = a.t().double()\n"],
                   "664": ["result = tf.reduce_sum(a, axis=1)\n", "result = tf.reduce_sum(a, axis=0)\n"],
                   "510": ["plt.plot(x)\n", "plt.plot(x)\nplt.plot(x)\n",
                           # a forgery: the answer's own pyplot is patched, the judge's is not
                           "plt.plot(x)\nplt.plot(x)\n"
                           "plt.gca = lambda: type('A', (), {'get_lines': lambda s: [1]})()\n"]}


@pytest.fixture(scope="module")
def ds_client(docker_client):
    """An executor on the data-science profile (its image is built the first time)."""
    from conftest import start_server

    from executor.image import ensure_image

    ensure_image(docker_client, None, "ds1000")   # minutes the first time, before the pool's wait
    server = start_server(docker_client, sandbox_profile="ds1000", pool_size=2)
    from executor.client import Client

    with Client(f"127.0.0.1:{server.port}") as client:
        yield client
    server.stop()


def _ds1000_harness(programs: list[str]) -> list[bool]:
    """DS-1000's own harness semantics (its execution.py, from human-eval): the program is
    exec'd with `exit` and `quit` disabled, and passes when it raises nothing. Run in a child
    process on the fixture's own benign answers."""
    script = """
import builtins, json, sys
programs = json.load(sys.stdin)
out = []
for program in programs:
    saved = builtins.exit, builtins.quit
    builtins.exit = builtins.quit = None
    try:
        exec(program, {"__name__": "__main__"})
        out.append(True)
    except BaseException:
        out.append(False)
    finally:
        builtins.exit, builtins.quit = saved
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(programs), capture_output=True,
                          text=True, timeout=300, cwd="/tmp")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _passed(result: dict) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {}
    for r in result["samples"]:
        out.setdefault(r["task_id"], []).append(r["passed"])
    return out


def test_verdicts_agree_with_ds1000s_harness(bench, ds_client):
    sub = type(bench)([p for p in bench.problems if p.task_id in ANSWERS], bench.source, bench.data_hash)
    result = ds1000.score(sub, ANSWERS, ds_client)
    assert not result["skipped"]
    by_id = {p.task_id: p for p in bench.problems}
    theirs = _ds1000_harness([by_id[r["task_id"]].test_program(ds1000.postprocess(r["completion"]))
                              for r in result["samples"]])
    assert [r["passed"] for r in result["samples"]] == theirs
    assert _passed(result)["291"] == [True, False, False, False, False, False, True, True, False]
    assert _passed(result)["0"] == [True, False, True]
    assert result["by_library"]["Numpy"]["problems"] == 2
    assert set(result["by_perturbation"]) >= {"Origin", "Surface"}
    assert not result["judged_in_sandbox"]
    assert result["sandbox_image"] and result["sandbox_image"][0].startswith("selfalign-sandbox-ds1000:")


def test_tensors_and_figures(bench, ds_client):
    sub = type(bench)([p for p in bench.problems if p.task_id in LIBRARY_ANSWERS], bench.source, bench.data_hash)
    result = ds1000.score(sub, LIBRARY_ANSWERS, ds_client)
    assert _passed(result) == {"932": [True, False, False], "664": [True, False], "510": [True, False, False]}
    assert not result["judged_in_sandbox"]   # the figures travel to the judge too


def test_figures_agree_with_ds1000s_harness(bench, ds_client, tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    sub = type(bench)([p for p in bench.problems if p.task_id in PLOT_ANSWERS], bench.source, bench.data_hash)
    result = ds1000.score(sub, PLOT_ANSWERS, ds_client)
    problem = sub.problems[0]
    monkeypatch.chdir(tmp_path)
    theirs = _ds1000_harness([problem.test_program(ds1000.postprocess(a)) for a in PLOT_ANSWERS["511"]])
    reasons = [r["reason"] for r in result["samples"]]
    assert _passed(result)["511"][:5] == theirs[:5] == [True, True, False, True, False], reasons
    assert theirs[5] is True and _passed(result)["511"][5] is False   # the reference image is the judge's


def test_a_library_the_image_lacks_is_skipped_and_said(bench, client):
    sub = type(bench)([p for p in bench.problems if p.task_id in ("291", "0")], bench.source, bench.data_hash)
    result = ds1000.score(sub, {"291": ANSWERS["291"][:1], "0": ANSWERS["0"][:1]}, client)
    assert list(result["skipped"]) == ["0"] and "pandas" in result["skipped"]["0"]
    assert [r["task_id"] for r in result["samples"]] == ["291"]
    assert result["pass@1"] == 1.0 and result["problems"] == 1


FORGERIES = [
    # In-process graders accept these: the comparison is patched where the answer runs.
    "import numpy as np\nnp.testing.assert_array_equal = lambda *a, **k: None\nresult = 0\n",
    "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\nresult = 0\n",
    # A result that equals everything, a class of the answer's own, a pickle that runs code.
    "class A:\n    def __eq__(self, o):\n        return True\n    __array_priority__ = 100\nresult = A()\n",
    "import numpy as np\nclass B(np.ndarray):\n    pass\nresult = np.array([4, 6]).view(B)\n",
    "import os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('true',))\nresult = P()\n",
    # Leaving early, killing the judge, reaching into it.
    "import os\nos._exit(0)\n",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "import os\nfd = os.open(f'/proc/{os.getppid()}/fd/1', os.O_WRONLY)\nos.write(fd, b'[\"done\"]\\n')\n"
    "os._exit(0)\n",
    "import os\nopen(f'/proc/{os.getppid()}/mem', 'rb').read(1)\n",
    "import sys\nsys.stdout.write('[\"done\"]\\n')\nsys.stdout.flush()\nimport os\nos._exit(0)\n",
]


def test_forged_answers_fail(bench, ds_client):
    """Each forgery fails here; the first two pass under an in-process grader (DS-1000's own)."""
    problem = next(p for p in bench.problems if p.task_id == "291")
    sub = type(bench)([problem], bench.source, bench.data_hash)
    result = ds1000.score(sub, {"291": FORGERIES}, ds_client)
    assert _passed(result)["291"] == [False] * len(FORGERIES), [r["reason"] for r in result["samples"]]
    theirs = _ds1000_harness([problem.test_program(ds1000.postprocess(f)) for f in FORGERIES[:2]])
    assert theirs == [True, True]
    reasons = [r["reason"] for r in result["samples"]]
    assert "refused" in reasons[2] or "refused" in reasons[4]


def test_the_judge_unpickles_the_values_ds1000_answers_leave(ds_client):
    """The unpickler's allowlist against pickles of NumPy, pandas, SciPy sparse and plain values,
    in the data-science image: each comes back equal, and a pickle naming a function does not."""
    from executor import Limits, Program
    from trainer import harness

    check = harness.module_source() + '''

import io, pickle, datetime, decimal, fractions, collections, json
import numpy as np, pandas as pd, scipy.sparse as sp
values = [np.arange(6).reshape(2, 3), np.array(["a", None], dtype=object), np.array(["2020-01-01"], dtype="M8[ns]"),
          np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), np.int64(3), np.float32(2.5), np.matrix([[1, 2]]),
          np.ma.masked_array([1, 2], mask=[0, 1]),
          pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": pd.to_datetime(["2020-01-01", "2020-01-02"]),
                        "e": pd.Categorical(["u", "v"]), "f": pd.array([1, None], dtype="Int64"),
                        "h": pd.to_timedelta([1, 2], unit="s"), "i": pd.array(["s", None], dtype="string")}),
          pd.Series([1, 2], name="s"), pd.Series(["a"], index=pd.MultiIndex.from_tuples([(1, "x")], names=["i", "j"])),
          pd.DataFrame([[1]], index=pd.date_range("2020", periods=1, freq="h")), pd.RangeIndex(3),
          pd.PeriodIndex(["2020-01"], freq="M"), pd.IntervalIndex.from_breaks([0, 1, 2]),
          pd.Timestamp("2020-01-01", tz="UTC"),
          pd.Timedelta("1 day"), pd.Series(pd.arrays.SparseArray([0, 1])), pd.Series([1.5], dtype="Float64"),
          pd.Series([True, None], dtype="boolean"),
          sp.csr_matrix([[1, 0]]), sp.coo_matrix([[1, 0]]), sp.lil_matrix([[1, 0]]), sp.dok_matrix([[1, 0]]),
          datetime.datetime(2020, 1, 1), decimal.Decimal("1.5"), fractions.Fraction(1, 3), {1}, frozenset([1]),
          collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]), collections.Counter("ab"), 1j, range(3)]
from sklearn.linear_model import LinearRegression
values.append(LinearRegression().fit([[0], [1]], [0, 1]))

def same(a, b):
    if isinstance(a, (pd.DataFrame, pd.Series, pd.Index)):
        return a.equals(b) and type(a) is type(b)
    if sp.issparse(a):
        return type(a) is type(b) and (a != b).nnz == 0
    if isinstance(a, np.ndarray):
        return type(a) is type(b) and np.array_equal(a, b) and a.dtype == b.dtype
    if isinstance(a, LinearRegression):
        return type(b) is LinearRegression and np.array_equal(a.coef_, b.coef_)
    return a == b and type(a) is type(b)

bad = []
for v in values:
    for protocol in (4, 5):
        try:
            back = _Judge(io.BytesIO(pickle.dumps(v, protocol=protocol))).load()
            if not same(v, back):
                bad.append(f"{type(v).__name__}: not equal")
        except Exception as exc:
            bad.append(f"{type(v).__name__}: {exc!r}")
import matplotlib.pyplot as plt
import seaborn as sns
x = np.arange(10)
fig, (ax1, ax2) = plt.subplots(1, 2)
ax1.plot(x, x ** 2, label="sq", color="red", linestyle="--")
ax1.legend()
ax1.set_title("t")
ax1.set_yscale("log")
ax2.bar([1, 2], [3, 4])
ax2.scatter(x, x)
ax2.hist(x)
plt.colorbar(ax2.imshow([[1, 2], [3, 4]]))
pd.DataFrame({"a": [1, 2]}).plot(ax=ax2)
plt.figure()
sns.heatmap([[1, 2], [3, 4]])
plt.pie([1, 2], labels=["a", "b"])
plt.annotate("a", (0, 0), arrowprops=dict(arrowstyle="->"))
blob = pickle.dumps([plt.figure(n) for n in plt.get_fignums()])
plt.close("all")
try:
    figures = _Judge(io.BytesIO(blob)).load()
    if plt.get_fignums() != [1, 2] or plt.figure(1).axes[0].get_title() != "t" \
            or len(plt.figure(1).axes[0].get_lines()) != 1 or plt.figure(1).axes[0].get_legend() is None:
        bad.append("figures: not the same")
except Exception as exc:
    bad.append(f"figures: {exc!r}")
import os
class Run:
    def __reduce__(self):
        return (os.system, ("true",))
try:
    _Judge(io.BytesIO(pickle.dumps(Run()))).load()
    bad.append("a pickle naming os.system was loaded")
except _Refused:
    pass
print(json.dumps(bad))
'''
    r = ds_client.execute(Program(check, limits=Limits(timeout_s=120, memory_mb=4096)))
    assert r.exit_code == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.decode().strip().splitlines()[-1]) == []
