"""Self-confinement the guest applies after its imports and before it reads the upload.

Everything here is irreversible for the process and inherited by anything it starts: rlimits
cannot be raised again by an unprivileged process, a seccomp filter cannot be removed.

The seccomp filter is compiled by libseccomp (through `pyseccomp`), which resolves syscall names
to each architecture's numbers and adds the architecture check itself. Without libseccomp the
guest refuses to run models (`SeccompUnavailable`) rather than run them unfiltered.
"""

from __future__ import annotations

import ctypes
import errno
import resource
import signal

PR_SET_PDEATHSIG = 1

# Refused with EPERM: no new sessions/groups (the parent kills the whole process group), no
# namespaces, no tracing, no kernel-surface extras, no sockets of any family (no network, no
# unix sockets of host services).
DENIED_SYSCALLS = (
    "setsid", "setpgid", "ptrace", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "init_module",
    "finit_module", "delete_module", "process_vm_readv", "process_vm_writev", "socket",
)
# CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}: clone() creating any namespace is refused.
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                         0x40000000)


class SeccompUnavailable(RuntimeError):
    """libseccomp cannot be used here: the guest must not run a model."""


def _libseccomp():
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError) as err:   # RuntimeError: libseccomp.so not found
        raise SeccompUnavailable(f"libseccomp is not usable ({type(err).__name__}: {err}); "
                                 "install libseccomp2 and the pyseccomp package") from None
    return pyseccomp


def build_filter(arch: int | None = None):
    """The guest's filter (a pyseccomp.SyscallFilter) for `arch` (default: this machine's).

    Any other architecture's syscall ABI (x32, 32-bit compat) kills the process.
    """
    seccomp = _libseccomp()
    try:
        flt = seccomp.SyscallFilter(seccomp.ALLOW)
        flt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
        # Threads started during the imports (torch's pools) get the filter too.
        flt.set_attr(seccomp.Attr.CTL_TSYNC, 1)
        if arch is not None and arch != seccomp.system_arch():
            flt.add_arch(arch)
            flt.remove_arch(seccomp.Arch.NATIVE)
        deny = seccomp.ERRNO(errno.EPERM)
        for name in DENIED_SYSCALLS:
            flt.add_rule(deny, name)
        for flag in CLONE_NAMESPACE_FLAGS:
            flt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        # clone3 passes its flags behind a pointer the filter cannot read: ENOSYS makes glibc
        # fall back to clone(), whose flags it can.
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    except OSError as err:
        raise SeccompUnavailable(f"libseccomp could not compile the filter: {err}") from None
    return flt


def install_seccomp(flt) -> None:
    """Load `flt` (from build_filter) into this process and all its threads; also sets no_new_privs."""
    try:
        flt.load()
    except OSError as err:
        raise SeccompUnavailable(f"the kernel refused the seccomp filter: {err}") from None


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
