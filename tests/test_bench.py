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


def test_the_mixed_latency_and_peer_runners_run_what_they_claim(tmp_path, sandbox_image):
    """The mixed row's hostile programs are stopped by their limits and never pass; the latency row and the
    peers (llm-sandbox, epicbox) run real programs and pass the canonical ones."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "executor", "bench", "--limit", "16", "--docker-run-limit", "4",
                           "--runners", "mixed,latency,llm-sandbox,epicbox", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (reports,) = json.loads(out.read_text())
    seen = {r["runner"]: r for r in reports}
    assert list(seen) == ["mixed", "latency", "llm-sandbox", "epicbox"], proc.stderr[-2000:]
    # 32 programs, a loop after the 16th and 32nd, a balloon after the 32nd: 3 more, none passing.
    assert seen["mixed"]["programs"] == 35 and seen["mixed"]["wrong_passed"] == 0
    assert seen["mixed"]["canonical_passed"] == seen["mixed"]["canonical_total"] == 16
    assert seen["latency"]["programs"] == 32 and seen["latency"]["canonical_passed"] == 16
    for peer in ("llm-sandbox", "epicbox"):
        assert seen[peer]["programs"] == 4 and seen[peer]["canonical_passed"] == 2, seen[peer]
        assert seen[peer]["wrong_passed"] == 0, seen[peer]
