"""The Python code generated from proto/ must be what protoc makes of it today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["executor_pb2.py", "executor_pb2.pyi", "executor_pb2_grpc.py"]


def test_generated_code_is_fresh(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(ROOT / "proto/executor/v1/executor.proto")],
        check=True,
    )
    stale = [name for name in GENERATED
             if (tmp_path / "executor/v1" / name).read_bytes() != (ROOT / "executor/v1" / name).read_bytes()]
    assert stale == [], f"regenerate with scripts/gen-proto.sh: {stale} differ from proto/"
