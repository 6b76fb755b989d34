"""The job's seccomp filter, as libseccomp builds it, judged on every rule: the exported BPF
program is run here by a classic-BPF interpreter on the system calls a job could make. The live
refusals are tested in the sandbox too (tests/test_redteam.py)."""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
import tempfile

import pytest

from executor import agent

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers below are x86-64's")

AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 = 0xC000003E, 0x40000003
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
NR = {"socket": 41, "socketpair": 53, "getpid": 39, "io_uring_setup": 425, "io_uring_enter": 426,
      "io_uring_register": 427, "openat": 257}


def exported_bpf() -> list[tuple[int, int, int, int]]:
    lib, ctx = agent._seccomp_filter()
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    with tempfile.TemporaryFile() as f:
        assert lib.seccomp_export_bpf(ctx, f.fileno()) == 0
        f.seek(0)
        data = f.read()
    return [struct.unpack("HBBI", data[i:i + 8]) for i in range(0, len(data), 8)]


def run_bpf(program, nr: int, args=(0, 0, 0, 0, 0, 0), arch: int = AUDIT_ARCH_X86_64) -> int:
    """struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]} through the filter."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        if cls == 0x00:   # BPF_LD | BPF_W | BPF_ABS
            acc = struct.unpack_from("<I", data, k)[0]
        elif cls == 0x04:   # BPF_ALU
            op = code & 0xF0
            acc = {0x50: acc & k, 0x40: acc | k, 0x00: (acc + k) & 0xFFFFFFFF}[op]
        elif cls == 0x05:   # BPF_JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
            else:
                taken = {0x10: acc == k, 0x20: acc > k, 0x30: acc >= k, 0x40: bool(acc & k)}[op]
                pc += jt if taken else jf
        elif cls == 0x06:   # BPF_RET
            return k
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x}")
        pc += 1


@pytest.fixture(scope="module")
def program():
    return exported_bpf()


def test_io_uring_is_refused_as_missing(program):
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert run_bpf(program, NR[name]) == ERRNO | errno.ENOSYS, name


def test_vsock_is_refused_whatever_the_high_bits_of_the_family(program):
    for name in ("socket", "socketpair"):
        assert run_bpf(program, NR[name], (40, 1, 0, 0, 0, 0)) == ERRNO | errno.EAFNOSUPPORT
        # the kernel reads the family as an int: high bits set must not get past the filter
        assert run_bpf(program, NR[name], ((0xDEAD << 32) | 40, 1, 0, 0, 0, 0)) == ERRNO | errno.EAFNOSUPPORT
        assert run_bpf(program, NR[name], (1, 1, 0, 0, 0, 0)) == ALLOW    # AF_UNIX
        assert run_bpf(program, NR[name], (2, 1, 0, 0, 0, 0)) == ALLOW    # AF_INET (the engine decides)


def test_other_abis_are_refused(program):
    """x32 numbers under the x86-64 audit arch, and a foreign architecture (i386's int 0x80)."""
    for name in ("getpid", "socket", "openat"):
        assert run_bpf(program, 0x40000000 | NR[name], (40, 0, 0, 0, 0, 0)) == ERRNO | errno.ENOSYS, name
        assert run_bpf(program, NR[name], arch=AUDIT_ARCH_I386) == ERRNO | errno.ENOSYS, name


def test_ordinary_calls_are_allowed(program):
    for name in ("getpid", "openat"):
        assert run_bpf(program, NR[name]) == ALLOW
