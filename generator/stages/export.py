"""The SFT dataset: JSONL, and a Hugging Face dataset folder (Parquet plus a dataset card).

`datasets.load_dataset(PATH)` loads the folder as is, and its `messages` column (a user turn and
an assistant turn) is what TRL's `SFTTrainer` and chat templates take without a mapping
function. The card records the run's config and its funnel, so a published copy says how it was
made. `push_to_hub` uploads the folder where a hub is reachable.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig

FIELDS = ("id", "instruction", "response", "seed", "concepts", "category", "difficulty", "fingerprint")
DATA_FILE = "data/train-00000-of-00001.parquet"


def fingerprint(instruction: str, response: str) -> str:
    return hashlib.sha256(f"{instruction}\x1f{response}".encode()).hexdigest()[:16]


def messages(instruction: str, response: str) -> list[dict]:
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def made_by(config: dict | None) -> str:
    """What wrote the generated fields, as the run's backend says: a model by name, or recorded
    outputs (the quickstart's replay), never "a base model" when none ran."""
    backend = (config or {}).get("backend") or {}
    kind, model = backend.get("kind"), backend.get("model")
    if kind == "replay":
        return f"recorded outputs replayed from `{model}` (no model ran)"
    if kind in ("vllm", "transformers", "openai"):
        return f"the base model `{model}` (backend {kind})"
    if kind == "import":
        return f"a custom backend, `{model}`"
    return "the run's backend (see its config)"


def dataset_card(rows: int, config: dict | None = None, funnel: list[dict] | None = None) -> str:
    """A dataset card: YAML metadata that `datasets` reads, then how the data was made."""
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {DATA_FILE}",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- code",
        "- selfcodealign",
        "---",
        "",
        "# Self-aligned code instructions",
        "",
        f"{rows} instruction-response pairs made by the selfalign pipeline (SelfCodeAlign): from seed functions,",
        f"the concepts, instructions and responses were written by {made_by(config)}; responses were kept",
        "only when their own tests passed in a sandbox, then selected, deduplicated, rewritten and decontaminated.",
        "",
        "Columns: `instruction`, `response`, `messages` (the same pair as chat turns), `seed`, `concepts`,",
        "`category`, `difficulty`, `id`, `fingerprint`.",
    ]
    if funnel:
        lines += ["", "## Funnel", "", "| stage | in | kept | dropped (by reason) |", "| --- | ---: | ---: | --- |"]
        for s in funnel:
            reasons = ", ".join(f"{k} {v}" for k, v in s.get("dropped", {}).items()) or "-"
            lines.append(f"| {s['stage']} | {s['rows_in']} | {s['kept']} | {reasons} |")
    if config is not None:
        lines += ["", "## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True, default=str), "```"]
    return "\n".join(lines) + "\n"


class Export(Stage):
    name = "export"
    batch_size = WHOLE_INPUT

    def __init__(self, output, dataset_dir: str | Path, progress: bool = True):
        super().__init__(output, progress)
        self.dataset_dir = Path(dataset_dir)

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Export:
        return cls(output, Path(cfg.dir) / "dataset", cfg.progress)

    def process_batch(self, rows: list[dict]) -> BatchResult:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = []
        for row in sorted(rows, key=lambda r: r["id"]):
            rec = {k: row.get(k) for k in FIELDS if k != "fingerprint"}
            rec["concepts"] = list(rec.get("concepts") or [])
            rec["fingerprint"] = fingerprint(row["instruction"], row["response"])
            out.append(rec)
        if self.dataset_dir.exists():
            shutil.rmtree(self.dataset_dir)
        (self.dataset_dir / DATA_FILE).parent.mkdir(parents=True)
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        schema = pa.schema([(k, pa.list_(pa.string()) if k == "concepts" else pa.string()) for k in FIELDS]
                           + [("messages", pa.list_(message))])
        columns = {k: [row[k] for row in out] for k in FIELDS}   # also right for zero rows
        columns["messages"] = [messages(r["instruction"], r["response"]) for r in out]
        pq.write_table(pa.table(columns, schema=schema), self.dataset_dir / DATA_FILE)
        (self.dataset_dir / "README.md").write_text(dataset_card(len(out)))
        return BatchResult(kept=out)


def write_card(dataset_dir: str | Path, rows: int, config: dict, funnel: list[dict]) -> None:
    (Path(dataset_dir) / "README.md").write_text(dataset_card(rows, config, funnel))


def push_to_hub(dataset_dir: str | Path, repo: str, private: bool = False) -> str:
    """Upload the dataset folder (data and card) to a Hugging Face dataset repository."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(dataset_dir), repo_id=repo, repo_type="dataset")
    return f"https://huggingface.co/datasets/{repo}"
