#!/usr/bin/env bash
# Regenerate the Python code for proto/ (tests/test_proto.py fails when it is stale).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
  proto/executor/v1/executor.proto
