"""The registry of stages: every step the pipeline (or `generator <step>`) can run, by name.

Each stage class builds itself from the pipeline config with `from_config(cfg, output)` and
says in `settings()` what its output depends on; the runner (`generator.runner`) does the rest.
"""

from __future__ import annotations

from generator.stage import Stage
from generator.stages.concepts import Concepts
from generator.stages.decontaminate import Decontaminate
from generator.stages.dedup import Dedup
from generator.stages.execute import Execute
from generator.stages.export import Export
from generator.stages.instructions import Instructions
from generator.stages.judge import JudgeSeeds
from generator.stages.responses import Responses
from generator.stages.sanitize import CheckFormat, Rewrite
from generator.stages.seeds import DedupSeeds, ExtractSeeds, TypecheckSeeds
from generator.stages.select import Select

REGISTRY: dict[str, type[Stage]] = {cls.name: cls for cls in (
    ExtractSeeds, DedupSeeds, TypecheckSeeds, JudgeSeeds, Concepts, Instructions, Responses, Execute,
    CheckFormat, Select, Dedup, Rewrite, Decontaminate, Export)}
