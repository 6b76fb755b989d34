"""The one runner: a list of configured stages, each reading the previous one's output.

The pipeline (`generator run`), the seeds steps (`generator seeds`), a single step from the
command line and `trainer prepare` all run through `run_stages`; it owns the order, the inputs'
fingerprints, resuming (each stage's checkpoint) and the shared resources. A stage that the
cluster config sends to Ray (the generation stages) runs there, with the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from generator.resources import Resources
from generator.rows import JsonlRows
from generator.stage import Stage, StageStats


@dataclass
class Input:
    """A stage's input: its rows (iterated only when the stage has work) and their fingerprint."""
    rows: Iterable[dict]
    fingerprint: str

    @classmethod
    def jsonl(cls, path) -> Input:
        rows = JsonlRows(path)
        return cls(rows, rows.fingerprint)


class EmptyStage(ValueError):
    """A stage kept nothing, so every stage after it would run on nothing and "succeed"."""


def empty_message(stats: StageStats) -> str:
    top = ", ".join(f"{reason} {n}" for reason, n in stats.dropped.most_common(3)) or "nothing dropped"
    return (f"stage {stats.stage} kept nothing of {stats.rows_in} {stats.unit} in ({top}); the stages after it "
            "would run on nothing. Fix that, or pass --allow-empty (run.allow_empty=true) to go on")


def run_stages(stages: Sequence[Stage], first: Input, resources: Resources | None = None,
               after_each: Callable[[Stage, list[StageStats]], None] | None = None,
               cluster=None, allow_empty: bool = False) -> list[StageStats]:
    """Run (or resume) `stages` in order: the first reads `first`, every later one the output
    of the one before. `after_each` sees each finished stage and the stats so far; `cluster`
    (a ClusterConfig with `ray` set) runs the stages that can be distributed on Ray. A stage that
    keeps no row stops the run with EmptyStage (its stats already written), unless
    `allow_empty`."""
    resources = resources or Resources()
    all_stats: list[StageStats] = []
    current = first
    for position, stage in enumerate(stages):
        if cluster is not None and cluster.ray and stage.distributable:
            from generator.cluster import run_stage_on_ray

            stats = run_stage_on_ray(stage, current, cluster, resources)
        else:
            stats = stage.run(current.rows, current.fingerprint, resources=resources)
        all_stats.append(stats)
        if after_each is not None:
            after_each(stage, all_stats)
        if stats.rows_out == 0 and not allow_empty:
            raise EmptyStage(empty_message(stats))
        if position + 1 < len(stages):   # the last output is nobody's input: not fingerprinted
            current = Input.jsonl(stage.output)
    return all_stats
