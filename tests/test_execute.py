"""Each status, the limits, the output cap, stdin and script semantics, over real gRPC."""

from __future__ import annotations

import pytest

from executor import Limits, Program, Status


def run(client, code: str, **kw):
    limits = Limits(kw.pop("timeout_s", None), kw.pop("memory_mb", None), kw.pop("max_output_bytes", None))
    return client.execute(Program(code, id=kw.pop("id", "t"), limits=limits, **kw))


def test_passed_reports_output_and_resources(client, server):
    r = run(client, "print('hello')", id="p1")
    assert r.status is Status.PASSED
    assert r.id == "p1"
    assert r.exit_code == 0 and r.signal is None
    assert r.stdout == b"hello\n" and r.stderr == b""
    assert r.wall_time_s > 0 and r.peak_memory_mb > 0
    assert r.sandbox_image == server.image and ":" in r.sandbox_image


def test_nonzero_exit_is_failed(client):
    r = run(client, "import sys\nsys.exit(3)")
    assert (r.status, r.exit_code) == (Status.FAILED, 3)


def test_uncaught_exception_is_failed_with_traceback(client):
    r = run(client, "def f():\n    raise KeyError('k')\nf()")
    assert r.status is Status.FAILED and r.exit_code == 1
    assert b"KeyError: 'k'" in r.stderr
    assert b'File "/tmp/work/main.py", line 2, in f' in r.stderr
    assert b"agent" not in r.stderr  # the runner's own frames are not shown


# Runs itself again as `python3 main.py` (the same file, so the same paths and lines) and prints
# that run's stderr to stdout, then fails the same way under the runner.
AS_PYTHON3 = """import os, subprocess, sys
if not os.environ.get("INNER"):
    inner = subprocess.run([sys.executable, __file__], env={**os.environ, "INNER": "1"}, capture_output=True)
    sys.stdout.buffer.write(inner.stderr)
    sys.stdout.flush()
"""


@pytest.mark.parametrize("failure", [
    "def check(f):\n    assert f(2) == 4, 'wrong'\ncheck(lambda x: x + 1)",
    "try:\n    {}['k']\nexcept KeyError as e:\n    raise ValueError('v') from e",
    "try:\n    1 / 0\nfinally:\n    [][1]",
    "sys.excepthook = lambda t, v, tb: print('own hook', t.__name__, file=sys.stderr)\nraise RuntimeError('x')",
    "def hook(*args):\n    raise TypeError('bad hook')\nsys.excepthook = hook\nraise RuntimeError('x')",
    "raise KeyboardInterrupt",
])
def test_an_uncaught_exception_is_reported_as_python3_reports_it(client, failure):
    """The same stderr, byte for byte, as `python3 main.py` gives: CPython's own printer with its
    carets and chains, a hook the program set, and what CPython says when that hook fails."""
    r = run(client, AS_PYTHON3 + failure)
    assert r.status is Status.FAILED, r
    assert r.stderr == r.stdout and r.stderr, (r.stderr.decode(), r.stdout.decode())


def test_syntax_error_is_failed(client):
    r = run(client, "def broken(:\n    pass")
    assert r.status is Status.FAILED
    assert b"SyntaxError" in r.stderr


def test_killed_by_signal_is_failed(client):
    r = run(client, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)")
    assert r.status is Status.FAILED
    assert r.exit_code is None and r.signal == 15


def test_timeout_reports_wall_and_cpu(client):
    r = run(client, "while True:\n    pass", timeout_s=1)
    assert r.status is Status.TIMEOUT
    assert r.wall_time_s >= 1.0
    assert r.cpu_time_s > 0.5
    assert "wall-clock limit of 1 s" in r.reason


def test_memory_limit_kernel_kill(client):
    r = run(client, "x = []\nwhile True:\n    x.append(bytearray(10 << 20))", memory_mb=256)
    assert r.status is Status.MEMORY_LIMIT
    assert r.peak_memory_mb > 150


def test_memory_limit_memoryerror(client):
    r = run(client, "x = bytearray(1 << 45)", memory_mb=256)
    assert r.status is Status.MEMORY_LIMIT
    assert b"MemoryError" in r.stderr


def test_per_job_memory_limit_does_not_leak_into_next_job(client):
    assert run(client, "x = bytearray(200 << 20); x[::4096] = b'1' * len(x[::4096])", memory_mb=128).status \
        is Status.MEMORY_LIMIT
    r = run(client, "x = bytearray(200 << 20); x[::4096] = b'1' * len(x[::4096]); print('ok')")
    assert r.status is Status.PASSED, r


def test_output_limit_truncates_at_cap(client):
    r = run(client, "import sys\nwhile True:\n    sys.stdout.write('x' * 1000)", max_output_bytes=10_000)
    assert r.status is Status.OUTPUT_LIMIT
    assert r.stdout_truncated and not r.stderr_truncated
    assert len(r.stdout) == 10_000 and set(r.stdout) == {ord("x")}


def test_default_output_cap_is_one_mebibyte(client):
    r = run(client, "import sys\nsys.stderr.write('e' * (3 << 20))\n")
    assert r.status is Status.OUTPUT_LIMIT
    assert r.stderr_truncated and len(r.stderr) == 1 << 20


def test_output_before_a_timeout_is_kept(client):
    # Small output is read in batches (the agent is not woken for each line): what the program
    # wrote before it was stopped still comes back, on both streams.
    code = ("import sys, time\n"
            "print('started', flush=True)\n"
            "print('on stderr', file=sys.stderr)\n"
            "time.sleep(0.4)\n"
            "print('late', flush=True)\n"
            "while True:\n"
            "    pass\n")
    r = run(client, code, timeout_s=0.6)
    assert r.status is Status.TIMEOUT
    assert r.stdout == b"started\nlate\n" and r.stderr == b"on stderr\n"


def test_output_in_small_pieces_then_past_a_pipe_arrives_whole_and_in_order(client):
    # Lines a few milliseconds apart on both streams, then more than a pipe holds (64 KiB) in
    # one write while the stream's reads are still batched: nothing is lost or reordered.
    code = ("import sys, time\n"
            "for i in range(40):\n"
            "    print(i, flush=True)\n"
            "    print('e', i, file=sys.stderr)\n"
            "    time.sleep(0.002)\n"
            "sys.stdout.write('x' * 300_000)\n")
    r = run(client, code)
    assert r.status is Status.PASSED, r
    assert r.stdout == "".join(f"{i}\n" for i in range(40)).encode() + b"x" * 300_000
    assert r.stderr == "".join(f"e {i}\n" for i in range(40)).encode()


def test_stdin_is_given_then_eof(client):
    r = client.execute(Program("import sys\ndata = sys.stdin.read()\nprint(data[::-1])", stdin=b"abc"))
    assert r.status is Status.PASSED and r.stdout == b"cba\n"
    r = run(client, "input()")
    assert r.status is Status.FAILED and b"EOFError" in r.stderr


def test_non_utf8_output_survives(client):
    r = run(client, "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00ok')\nsys.stderr.buffer.write(b'\\x80')")
    assert r.status is Status.PASSED
    assert r.stdout == b"\xff\xfe\x00ok" and r.stderr == b"\x80"
    row = r.to_row()
    assert row["stdout"] == "\\xff\\xfe\x00ok"


def test_runs_as_a_real_script(client):
    code = (
        "import math\n"
        "from collections import Counter\n"
        "def helper(x):\n    return math.sqrt(x)\n"
        "def solve(xs):\n    return [helper(x) for x in xs] + [Counter('aab')['a']]\n"
        "assert solve([4, 9]) == [2.0, 3.0, 2]\n"
        "if __name__ == '__main__':\n    print('main', __file__)\n"
    )
    r = run(client, code)
    assert r.status is Status.PASSED, r.stderr
    assert r.stdout == b"main /tmp/work/main.py\n"


def test_classes_and_comprehensions_see_module_globals(client):
    code = (
        "LIMIT = 3\n"
        "class A:\n    def f(self):\n        return [LIMIT for _ in range(LIMIT)]\n"
        "assert A().f() == [3, 3, 3]\n"
        "assert (lambda: LIMIT)() == 3\n"
    )
    assert run(client, code).status is Status.PASSED


def test_numpy_and_non_ascii_source(client):
    r = run(client, "import numpy as np\nnom = 'héllo ✓'\nprint(nom, int(np.arange(5).sum()))")
    assert r.status is Status.PASSED, r.stderr
    assert r.stdout == "héllo ✓ 10\n".encode()


def test_multiprocessing_works(client):
    code = (
        "from multiprocessing import Pool\n"
        "def sq(x):\n    return x * x\n"
        "if __name__ == '__main__':\n"
        "    with Pool(2) as p:\n        assert p.map(sq, range(5)) == [0, 1, 4, 9, 16]\n"
    )
    r = run(client, code)
    assert r.status is Status.PASSED, r.stderr


@pytest.mark.parametrize("code, reason", [
    ("import os\nos._exit(0)\nassert False", "os._exit"),
    ("import sys\nsys.exit(0)\nassert False", "sys.exit"),
    ("print('a')\nexit()\nassert 1 == 2", "sys.exit"),
])
def test_early_exit_zero_is_failed(client, code, reason):
    r = run(client, code)
    assert r.status is Status.FAILED
    assert r.exit_code == 0
    assert reason in r.reason


def test_unittest_main_passes_and_fails_honestly(client):
    good = ("import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n"
            "        self.assertEqual(1 + 1, 2)\nif __name__ == '__main__':\n    unittest.main()\n")
    bad = good.replace("1 + 1, 2", "1 + 1, 3")
    assert run(client, good).status is Status.PASSED
    r = run(client, bad)
    assert r.status is Status.FAILED and r.exit_code == 1


def test_unittest_main_that_found_no_test_is_not_an_end(client):
    """Python 3.11's unittest.main() exits 0 when there is no test at all: the asserts after it
    never ran, so this is no pass (it was, while the agent trusted unittest's exit)."""
    r = run(client, "import unittest\nunittest.main()\nassert 1 == 2\n")
    assert r.status is Status.FAILED and r.exit_code == 0
    assert r.reason == "unittest.main() found no test to run"
    empty = "import unittest\nclass T(unittest.TestCase):\n    pass\nunittest.main()\n"
    assert run(client, empty).status is Status.FAILED


def test_threads_are_joined_before_the_end(client):
    code = ("import threading, time\nout = []\n"
            "t = threading.Thread(target=lambda: (time.sleep(0.2), out.append(1), print('late')))\n"
            "t.start()\n")
    r = run(client, code)
    assert r.status is Status.PASSED and r.stdout == b"late\n"
