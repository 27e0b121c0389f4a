"""Self-confinement the guest applies after its imports and before it reads the upload.

Everything here is irreversible for the process and inherited by anything it starts: rlimits
cannot be raised again by an unprivileged process, a seccomp filter cannot be removed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal
import struct

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# x86_64 syscall numbers refused with EPERM: no new sessions/groups (the parent kills the
# whole process group), no namespaces, no tracing, no kernel-surface extras.
_X86_64_DENY = {
    "setsid": 112, "setpgid": 109, "ptrace": 101, "unshare": 272, "setns": 308,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321,
    "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "kexec_load": 246, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "process_vm_readv": 310, "process_vm_writev": 311,
    "socket": 41,   # no sockets of any family: no network, no unix sockets of host services
}
_X86_64_CLONE, _X86_64_CLONE3 = 56, 435
_AUDIT_ARCH_X86_64 = 0xC000003E
_CLONE_NS_FLAGS = 0x7E020000   # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000


def _errno(code: int) -> int:
    return _RET_ERRNO | code


def _seccomp_program() -> bytes:
    """A classic-BPF seccomp program (list of sock_filter structs)."""
    LD_ABS, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06
    prog: list[tuple[int, int, int, int]] = []

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> None:
        prog.append((code, jt, jf, k))

    op(LD_ABS, 4)                                     # arch
    op(JEQ, _AUDIT_ARCH_X86_64, 1, 0)
    op(RET, _RET_KILL_PROCESS)
    op(LD_ABS, 0)                                     # syscall number
    op(JGE, 0x40000000, 0, 1)                         # x32 ABI
    op(RET, _errno(1))
    for nr in sorted(_X86_64_DENY.values()):
        op(JEQ, nr, 0, 1)
        op(RET, _errno(1))
    op(JEQ, _X86_64_CLONE3, 0, 1)                     # flags are behind a pointer: ENOSYS
    op(RET, _errno(38))                               # makes glibc fall back to clone()
    op(JEQ, _X86_64_CLONE, 0, 3)
    op(LD_ABS, 16)                                    # clone flags (low 32 bits of arg 0)
    op(JSET, _CLONE_NS_FLAGS, 0, 1)
    op(RET, _errno(1))
    op(RET, _RET_ALLOW)
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def install_seccomp() -> bool:
    """Install the filter; False (and nothing done) on an architecture we have no table for."""
    if platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    code = _seccomp_program()
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(SECCOMP)")
    return True


def die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    # In bwrap the parent is the namespace's init, which dies with the worker (--die-with-parent).
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _set(limit: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    cur_soft, cur_hard = resource.getrlimit(limit)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    resource.setrlimit(limit, (soft, hard))


def apply_rlimits(limits: dict, on_gpu: bool) -> None:
    """limits: memory_bytes, cpu_time_s, nproc, max_file_bytes, max_open_files (already resolved)."""
    used_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    cpu = int(used_cpu + limits["cpu_time_s"]) + 1
    _set(resource.RLIMIT_CPU, cpu, cpu + 5)           # SIGXCPU, then SIGKILL
    _set(resource.RLIMIT_FSIZE, int(limits["max_file_bytes"]))
    _set(resource.RLIMIT_NOFILE, int(limits["max_open_files"]))
    _set(resource.RLIMIT_NPROC, int(limits["nproc"]))
    _set(resource.RLIMIT_CORE, 0)
    if not on_gpu:
        # RLIMIT_DATA (private writable memory) rather than RLIMIT_AS: the CUDA build of torch
        # maps large read-only/reserved regions that an address-space limit would count.
        # On GPU the parent's RSS watchdog is the only memory limit (CUDA reserves huge
        # address ranges and private mappings).
        _set(resource.RLIMIT_DATA, int(limits["memory_bytes"]))
