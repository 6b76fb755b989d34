"""The SFT dataset: JSONL, and a `datasets` dataset saved on disk, with a dataset card.

By default the columns, their order and their types are those of the authors' released dataset,
`bigcode/self-oss-instruct-sc2-exec-filter-50k` (its README's `dataset_info`):

| column | type | here |
| --- | --- | --- |
| `fingerprint` | null | always null (theirs held the OpenAI `system_fingerprint`, null from vLLM) |
| `sha1` | string | the seed's `sha1` when the seed set gave one, else the SHA-1 of the seed's text |
| `seed` | string | the seed function |
| `response` | string | the response whose own tests passed |
| `concepts` | list of strings | the concepts (S->C) |
| `prompt` | string | the I->R prompt that the response was sampled from (null for imported rows without one) |
| `instruction` | string | the instruction (C->I) |
| `id` | int64 | the seed's `id` in the seed set; seeds extracted here have none, so it is the first 60 bits of `sha1` |

`extra_columns` adds any of `EXTRA_COLUMNS`: `messages` (the pair as user and assistant turns,
what TRL's `SFTTrainer` takes without a mapping function), `category`, `difficulty` and `row_id`
(this pipeline's row key). The JSONL and the dataset carry exactly the same columns.

The folder is written with `Dataset.save_to_disk`, so `datasets.load_from_disk(folder)` loads it;
the card (README.md) beside it records the run's config and funnel. `push_to_hub` uploads the
dataset and then the card where a hub is reachable.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from generator.rows import concepts_list, seed_sha1
from generator.stage import WHOLE_INPUT, BatchResult, Stage

if TYPE_CHECKING:
    from generator.pipeline import PipelineConfig

RELEASED_COLUMNS = ("fingerprint", "sha1", "seed", "response", "concepts", "prompt", "instruction", "id")
EXTRA_COLUMNS = ("messages", "category", "difficulty", "row_id")


@dataclass
class ExportConfig:
    extra_columns: list[str] = field(default_factory=list)   # any of EXTRA_COLUMNS, after the released ones

    def __post_init__(self) -> None:
        unknown = [c for c in self.extra_columns if c not in EXTRA_COLUMNS]
        if unknown:
            raise ValueError(f"[export] extra_columns: unknown {', '.join(unknown)} "
                             f"(known: {', '.join(EXTRA_COLUMNS)})")

    def columns(self) -> tuple[str, ...]:
        return RELEASED_COLUMNS + tuple(c for c in EXTRA_COLUMNS if c in self.extra_columns)


def seed_number(sha1: str) -> int:
    """An int64 `id` for a seed without one: the first 60 bits of its SHA-1 (stable, no order)."""
    return int(sha1[:15], 16)


def messages(instruction: str, response: str) -> list[dict]:
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def export_row(row: dict, columns: tuple[str, ...]) -> dict:
    """One exported row: the released columns from a pipeline row, then the chosen extras."""
    seed = row.get("seed")
    sha1 = row.get("sha1") or (seed_sha1(seed) if isinstance(seed, str) else None)
    index = row.get("seed_index")
    values = {
        "fingerprint": None,
        "sha1": sha1,
        "seed": seed,
        "response": row["response"],
        "concepts": concepts_list(row.get("concepts")),
        "prompt": row.get("prompt"),
        "instruction": row["instruction"],
        "id": index if isinstance(index, int) else (seed_number(sha1) if sha1 else None),
        "messages": messages(row["instruction"], row["response"]),
        "category": row.get("category"),
        "difficulty": row.get("difficulty"),
        "row_id": row["id"],
    }
    return {c: values[c] for c in columns}


def features(columns: tuple[str, ...]):
    import datasets

    types = {
        "fingerprint": datasets.Value("null"),
        "concepts": datasets.Sequence(datasets.Value("string")),
        "id": datasets.Value("int64"),
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
    }
    return datasets.Features({c: types.get(c, datasets.Value("string")) for c in columns})


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


def dataset_card(rows: int, columns: tuple[str, ...] = RELEASED_COLUMNS, config: dict | None = None,
                 funnel: list[dict] | None = None) -> str:
    """A dataset card: YAML metadata for the hub copy (`push_to_hub` writes `data/train-*`), then
    how the data was made."""
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train-*",
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
        "Columns: " + ", ".join(f"`{c}`" for c in columns) + ". The first eight are those of",
        "`bigcode/self-oss-instruct-sc2-exec-filter-50k`, in its order and types. Load the folder with",
        "`datasets.load_from_disk`.",
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

    def __init__(self, output, dataset_dir: str | Path, export: ExportConfig | None = None, progress: bool = True):
        super().__init__(output, progress)
        self.dataset_dir = Path(dataset_dir)
        self.columns = (export or ExportConfig()).columns()

    @classmethod
    def from_config(cls, cfg: PipelineConfig, output) -> Export:
        return cls(output, Path(cfg.dir) / "dataset", cfg.export, cfg.progress)

    def settings(self) -> dict:
        return {"columns": list(self.columns)}

    def process_batch(self, rows: list[dict]) -> BatchResult:
        import datasets

        out = [export_row(row, self.columns) for row in sorted(rows, key=lambda r: str(r["id"]))]
        table = datasets.Dataset.from_dict({c: [r[c] for r in out] for c in self.columns},   # also for zero rows
                                           features=features(self.columns))
        # Written beside and swapped in, so a crash never leaves half a dataset under the name.
        staging = self.dataset_dir.with_name(self.dataset_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        table.save_to_disk(str(staging))
        (staging / "README.md").write_text(dataset_card(len(out), self.columns))
        if self.dataset_dir.exists():
            shutil.rmtree(self.dataset_dir)
        staging.rename(self.dataset_dir)
        return BatchResult(kept=out)


def write_card(dataset_dir: str | Path, rows: int, columns: tuple[str, ...], config: dict,
               funnel: list[dict]) -> None:
    (Path(dataset_dir) / "README.md").write_text(dataset_card(rows, columns, config, funnel))


def push_to_hub(dataset_dir: str | Path, repo: str, private: bool = False) -> str:
    """Upload the dataset (as Parquet, by `datasets`) and then its card to a hub dataset repo."""
    import datasets
    from huggingface_hub import HfApi

    datasets.load_from_disk(str(dataset_dir)).push_to_hub(repo, private=private)
    HfApi().upload_file(path_or_fileobj=str(Path(dataset_dir) / "README.md"), path_in_repo="README.md",
                        repo_id=repo, repo_type="dataset")
    return f"https://huggingface.co/datasets/{repo}"
