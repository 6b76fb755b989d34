"""The executor bench, run for real on a few HumanEval problems: every runner must run the
programs it claims to (its ratios mean nothing otherwise). Speed is not checked here."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_the_executor_bench_runs_every_fast_runner_and_reports_what_each_passed(tmp_path, sandbox_image):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "executor", "bench", "--limit", "11", "--repeat", "2",
                    "--runners", "original,fork,floor,pooled,large-output", "--output", str(out)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    rounds = json.loads(out.read_text())
    assert len(rounds) == 2
    for reports in rounds:
        seen = {r["runner"]: r for r in reports}
        assert list(seen) == ["original", "fork", "floor", "pooled", "large-out"]
        for name in ("original", "fork", "floor", "pooled"):
            assert seen[name]["programs"] == 22 and seen[name]["canonical_total"] == 11, seen[name]
            assert seen[name]["wrong_passed"] == 0, seen[name]
            assert seen[name]["items_per_s"] > 0
        # HumanEval/10's solution calls a helper it defines: exec() inside a function cannot see it.
        assert seen["original"]["canonical_passed"] == seen["fork"]["canonical_passed"] == 10
        assert seen["floor"]["canonical_passed"] == seen["pooled"]["canonical_passed"] == 11
        assert seen["large-out"]["canonical_passed"] == seen["large-out"]["canonical_total"] == 4
