"""Server-side limits: defaults for what a request leaves open, maxima it may not exceed.

A request over a maximum is rejected with a message rather than clamped: a program that ran
under other limits than its author asked for would give a misleading result.
"""

from __future__ import annotations

from dataclasses import dataclass

from executor.jobs import Limits, Program

LANGUAGES = ("python",)


class InvalidRequest(ValueError):
    """The request cannot be run as given; the message says why."""


class RequestTooLarge(InvalidRequest):
    """The request's code or stdin is over the server's size limit."""


@dataclass(frozen=True)
class ResolvedLimits:
    timeout_s: float
    memory_mb: int
    max_output_bytes: int


@dataclass(frozen=True)
class ServerLimits:
    default_timeout_s: float = 10.0
    default_memory_mb: int = 1024
    default_output_bytes: int = 1 << 20
    max_timeout_s: float = 120.0
    max_memory_mb: int = 4096
    max_output_bytes: int = 16 << 20
    max_code_bytes: int = 1 << 20
    max_stdin_bytes: int = 8 << 20
    max_id_bytes: int = 1024
    max_language_bytes: int = 32
    min_memory_mb: int = 32

    def defaults(self) -> Limits:
        return Limits(self.default_timeout_s, self.default_memory_mb, self.default_output_bytes)

    def maxima(self) -> Limits:
        return Limits(self.max_timeout_s, self.max_memory_mb, self.max_output_bytes)

    def check(self, program: Program) -> ResolvedLimits:
        """Validate a program against these limits and fill in the defaults."""
        if len(program.id.encode("utf-8", "surrogatepass")) > self.max_id_bytes:
            raise InvalidRequest(f"id is over the limit of {self.max_id_bytes} bytes")
        if len(program.language.encode("utf-8", "surrogatepass")) > self.max_language_bytes:
            raise InvalidRequest(f"language is over the limit of {self.max_language_bytes} bytes")
        if program.language not in ("", *LANGUAGES):
            raise InvalidRequest(
                f"unknown language {program.language!r}; supported: {', '.join(LANGUAGES)}")
        if not program.code.strip():
            raise InvalidRequest("code is empty")
        if "\x00" in program.code:
            raise InvalidRequest("code contains a NUL byte, which Python source cannot hold")
        size = len(program.code.encode("utf-8", "surrogatepass"))
        if size > self.max_code_bytes:
            raise RequestTooLarge(f"code is {size} bytes, over the limit of {self.max_code_bytes}")
        if len(program.stdin) > self.max_stdin_bytes:
            raise RequestTooLarge(
                f"stdin is {len(program.stdin)} bytes, over the limit of {self.max_stdin_bytes}")
        lim = program.limits
        timeout = self.default_timeout_s if lim.timeout_s is None else lim.timeout_s
        memory = self.default_memory_mb if lim.memory_mb is None else lim.memory_mb
        output = self.default_output_bytes if lim.max_output_bytes is None else lim.max_output_bytes
        if not (timeout > 0) or timeout > self.max_timeout_s:  # `not >` also rejects NaN
            raise InvalidRequest(f"timeout_s={timeout} is outside (0, {self.max_timeout_s}]")
        if not self.min_memory_mb <= memory <= self.max_memory_mb:
            raise InvalidRequest(
                f"memory_mb={memory} is outside [{self.min_memory_mb}, {self.max_memory_mb}]")
        if not 0 < output <= self.max_output_bytes:
            raise InvalidRequest(
                f"max_output_bytes={output} is outside (0, {self.max_output_bytes}]")
        return ResolvedLimits(float(timeout), int(memory), int(output))
