"""Process-tree bookkeeping from /proc (no psutil): descendants, their memory, killing them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        # Field 4 (ppid) follows the ")" that closes the command name, which may contain spaces.
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """`root` and every process below it (processes, not threads)."""
    children = _ppid_map()
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _sum_fields(path: str, keys: tuple[bytes, ...]) -> int:
    total = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(keys):
                    total += int(line.split()[1]) * 1024
    except OSError:
        pass
    return total


def anon_memory_bytes(pids: list[int]) -> int:
    """Anonymous + shared-memory RSS of the processes: what they cost in RAM (file pages excluded).

    Summing RSS counts copy-on-write pages once per forked process; when several processes are
    involved, the proportional set size (smaps_rollup, slower to read) is used instead.
    """
    rss = sum(_sum_fields(f"/proc/{pid}/status", (b"RssAnon:", b"RssShmem:")) for pid in pids)
    if len(pids) <= 3:        # bwrap's small helpers + one guest: no sharing to correct for
        return rss
    pss = sum(_sum_fields(f"/proc/{pid}/smaps_rollup", (b"Pss_Anon:", b"Pss_Shmem:")) for pid in pids)
    return pss or rss


def count_tasks_of_uid(uid: int) -> int:
    """Threads + processes owned by `uid` (what RLIMIT_NPROC counts)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                total += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return total


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()      # [state, ppid, pgrp, session, ...]


def pid_namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def members(pid_ns: int | None, pgid: int | None) -> list[int]:
    """Live (non-zombie) processes in the sandbox's pid namespace, or else in its process group.

    Unlike a parent/child walk this still finds orphans that were re-parented outside the tree.
    """
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if not fields or fields[0] in (b"Z", b"X"):
            continue
        if (pid_ns is not None and pid_namespace(pid) == pid_ns) or (pid_ns is None and int(fields[2]) == pgid):
            found.append(pid)
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
