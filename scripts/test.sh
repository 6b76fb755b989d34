#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against a real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest "$@"
