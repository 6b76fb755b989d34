"""The generation stages on a Ray cluster: one model per GPU, the stage's input split among them.

A generation stage (concepts, instructions, responses) given `[cluster] ray = ...` or `run --ray`
splits its pending input into contiguous parts, one per worker: a Ray actor that loads the
backend once (vLLM, with `gpus_per_worker` GPUs) and runs the ordinary one-machine stage on its
part, with that stage's own checkpoints. The driver then concatenates the parts in order into
the stage's output and marks the stage done with the same fingerprint as a one-machine run.

What this keeps:
- Resume: a killed driver or worker leaves each part at its last checkpoint; the next run
  starts the workers again and every part goes on from there, so no row is lost or written
  twice. A finished stage is not redone.
- Same rows: every sample's seed comes from (run seed, stage, row id), never from batches or
  workers, and the parts are contiguous, so their concatenation is the one-machine output. With
  a deterministic backend the files are byte-identical (tested). With vLLM, a row's text can
  still differ where the batch it was decoded in changes the GPU's arithmetic (vLLM does not
  promise batch-invariant sampling); the same happens between two one-machine runs with
  different batch sizes.
- The parts' files (`NN-stage.part-K-of-N.*`) stay beside the output as a record; a different
  worker count starts new parts.

Workers need the run directory on a filesystem every node sees, and this package installed on
every node. Ray is optional (`pip install 'selfalign[ray]'`) and imported only here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING

from generator.resources import Resources
from generator.stage import Stage, StageStats

if TYPE_CHECKING:
    from generator.runner import Input

log = logging.getLogger(__name__)

@dataclasses.dataclass
class ClusterConfig:
    # "": this machine only; "auto": the running cluster; "local": start one here; or HOST:PORT
    ray: str = ""
    workers: int = 0              # generation workers; 0: one per GPU the cluster has (one if it has none)
    gpus_per_worker: float = 1.0  # per worker (tensor_parallel_size for a model larger than one GPU); 0 on CPU


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("cluster mode needs Ray: pip install 'selfalign[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def connect(cluster: ClusterConfig):
    ray = _ray()
    if not ray.is_initialized():
        # Workers import this package and the run's modules from where the driver runs.
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        address = None if cluster.ray == "local" else cluster.ray
        ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": path}},
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


class _Worker:
    """One generation worker in a Ray actor: the model, loaded once, and the stages it runs."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def run(self, stage: Stage, rows: list[dict], input_fingerprint: str) -> dict:
        return stage.run(rows, input_fingerprint, resources=self.resources).to_dict()


def run_stage_on_ray(stage: Stage, given: Input, cluster: ClusterConfig, resources: Resources) -> StageStats:
    """Run `stage` over its input on the cluster; the result is the one-machine stage's
    output, checkpoint and stats."""
    if stage.is_done(given.fingerprint):
        return stage.run([], given.fingerprint)   # finished before: its stats, nothing redone
    rows = list(given.rows)
    ray = connect(cluster)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_worker = cluster.gpus_per_worker if gpus else 0.0
    workers = cluster.workers or (max(1, int(gpus // per_worker)) if per_worker else 1)
    workers = max(1, min(workers, len(rows) or 1))
    size = -(-len(rows) // workers) if rows else 0
    parts = [rows[k * size:(k + 1) * size] for k in range(workers)]
    out = stage.output
    finished = [stage.with_output(out.with_name(f"{out.stem}.part-{k}-of-{workers}.jsonl"), progress=False)
                for k in range(workers)]
    log.info("%s: %d rows on %d Ray workers (%g GPU each)", stage.name, len(rows), workers, per_worker)
    actor = ray.remote(num_gpus=per_worker, num_cpus=1)(_Worker)  # pyright: ignore[reportAttributeAccessIssue]
    started = time.monotonic()
    # Each worker makes its own model from the config; a backend object is not sent.
    handles = [actor.remote(Resources(backend_config=resources.backend_config)) for _ in range(workers)]
    try:
        calls = [h.run.remote(part_stage, part, f"{given.fingerprint}:part{k}/{workers}")  # pyright: ignore
                 for k, (h, part_stage, part) in enumerate(zip(handles, finished, parts, strict=True))]
        results = ray.get(calls)
    finally:
        for h in handles:
            ray.kill(h)  # pyright: ignore[reportArgumentType]  (Ray's stubs: a proxy is a handle)
    stats = StageStats(stage.name, unit=stage.unit)
    for r in map(StageStats.from_dict, results):
        stats.rows_in += r.rows_in
        stats.rows_out += r.rows_out
        stats.dropped.update(r.dropped)
        stats.notes.update(r.notes)
    stats.seconds = time.monotonic() - started
    stage.adopt(finished, given.fingerprint, stats, consumed=len(rows))
    return stats
