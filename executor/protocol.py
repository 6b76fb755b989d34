"""The line protocol between the executor and the agent inside each sandbox.

One JSON object per line each way, over the container's attached stdin and stdout: the agent
says `Hello` once, then answers every `Job` with one `Reply`, in order. Replies carry the job's
nonce, so a line a program forges into the agent's output cannot pass for an answer.

Standard library only: this file is copied into the sandbox image beside the agent
(`sandbox_image/Dockerfile`), which imports it as a top-level module there and as
`executor.protocol` here.
"""

from __future__ import annotations

import json
from typing import TypedDict

OUTPUT_KEYS = ("stdout_b64", "stderr_b64")   # large fields the agent streams in base64 pieces


class Hello(TypedDict):
    ready: bool
    python: str            # the sandbox's Python version
    pid: int
    agent_uid: int
    job_uid: int | None


class Job(TypedDict):
    id: str
    nonce: str
    code: str
    stdin_b64: str
    timeout_s: float
    max_output_bytes: int
    memory_mb: int | None


class Reply(TypedDict, total=False):
    id: str | None
    nonce: str | None
    status: str            # an executor.jobs.Status value
    reason: str
    exit_code: int | None
    signal: int | None
    stdout_b64: str
    stderr_b64: str
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time_s: float
    cpu_time_s: float
    peak_memory_mb: float
    clean: bool            # the sandbox is as it was before the job: it may run another
    agent_error: str       # the agent could not run the job (the sandbox is replaced)


def encode(message: Hello | Job | Reply | dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | bytearray) -> dict:
    """One line as a dict; ValueError when it is not a JSON object."""
    message = json.loads(line.decode("utf-8"))   # decoded here: json would first guess the encoding
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message
