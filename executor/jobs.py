"""The data of the executor: programs, limits, results and their statuses.

These dataclasses are what the client library, the server and `run-batch` share; the
conversions to and from the protobuf messages live here so that no other module needs to
know the wire format.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from executor.v1 import executor_pb2 as pb

# The gRPC service name: health checks, probes and client-side load balancing ask for it.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Executor"].full_name
# In the initial metadata of a stream the server took; a refused stream ends without it.
STREAM_TAKEN_KEY = "selfalign-stream"
# In the initial metadata of an ExecuteBatches stream: how many programs the server wants queued
# (twice its sandboxes), so that a client gathering a batch never leaves one idle.
KEEP_QUEUED_KEY = "selfalign-keep-queued"


class Status(enum.StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SANDBOX_ERROR = "SANDBOX_ERROR"


@dataclass(frozen=True)
class Limits:
    """Per-program limits; None means the server's default."""

    timeout_s: float | None = None
    memory_mb: int | None = None
    max_output_bytes: int | None = None

    def to_proto(self) -> pb.Limits:
        return pb.Limits(
            timeout_s=self.timeout_s or 0.0,
            memory_mb=self.memory_mb or 0,
            max_output_bytes=self.max_output_bytes or 0,
        )

    @classmethod
    def from_proto(cls, msg: pb.Limits) -> Limits:
        return cls(msg.timeout_s or None, msg.memory_mb or None, msg.max_output_bytes or None)


@dataclass(frozen=True)
class Program:
    code: str
    id: str = ""
    stdin: bytes = b""
    limits: Limits = field(default_factory=Limits)
    language: str = "python"

    def to_proto(self) -> pb.ExecuteRequest:
        stdin = self.stdin.encode() if isinstance(self.stdin, str) else self.stdin
        return pb.ExecuteRequest(
            id=self.id, language=self.language, code=self.code, stdin=stdin,
            limits=self.limits.to_proto(),
        )


@dataclass
class ExecutionResult:
    id: str
    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_memory_mb: float = 0.0
    reason: str = ""
    sandbox_image: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_proto(self) -> pb.ExecuteResult:
        msg = pb.ExecuteResult(
            id=self.id, status=self.status.value, stdout=self.stdout,
            stderr=self.stderr, stdout_truncated=self.stdout_truncated,
            stderr_truncated=self.stderr_truncated, wall_time_s=self.wall_time_s,
            cpu_time_s=self.cpu_time_s, peak_memory_mb=self.peak_memory_mb, reason=self.reason,
            sandbox_image=self.sandbox_image,
        )
        if self.exit_code is not None:
            msg.exit_code = self.exit_code
        if self.signal is not None:
            msg.signal = self.signal
        return msg

    @classmethod
    def from_proto(cls, msg: pb.ExecuteResult) -> ExecutionResult:
        return cls(
            id=msg.id, status=Status(pb.Status.Name(msg.status)),
            exit_code=msg.exit_code if msg.HasField("exit_code") else None,
            signal=msg.signal if msg.HasField("signal") else None,
            stdout=msg.stdout, stderr=msg.stderr, stdout_truncated=msg.stdout_truncated,
            stderr_truncated=msg.stderr_truncated, wall_time_s=msg.wall_time_s,
            cpu_time_s=msg.cpu_time_s, peak_memory_mb=msg.peak_memory_mb, reason=msg.reason,
            sandbox_image=msg.sandbox_image,
        )

    def to_row(self) -> dict:
        """A JSON-ready row; output bytes that are not UTF-8 become backslash escapes."""
        return {
            "id": self.id, "status": self.status.value, "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout.decode("utf-8", "backslashreplace"),
            "stderr": self.stderr.decode("utf-8", "backslashreplace"),
            "stdout_truncated": self.stdout_truncated, "stderr_truncated": self.stderr_truncated,
            "wall_time_s": self.wall_time_s, "cpu_time_s": self.cpu_time_s,
            "peak_memory_mb": self.peak_memory_mb, "reason": self.reason,
            "sandbox_image": self.sandbox_image,
        }

    @classmethod
    def from_row(cls, row: dict) -> ExecutionResult:
        fields = dict(row)
        fields["status"] = Status(fields["status"])
        for name in ("stdout", "stderr"):
            fields[name] = fields.get(name, "").encode("utf-8", "surrogateescape")
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in fields.items() if k in known})
