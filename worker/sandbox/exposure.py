"""What the fallback sandbox's user could read of the service's own files, and whether it can
run the guest's Python at all.

In fallback mode the guest has no mount namespace: it sees the host's file system as `nobody`.
The service's database, splits (labels) and stored uploads must then be out of its reach;
`grade serve` and `grade worker` refuse to start in fallback mode when any of them is not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from worker.sandbox.isolation import setpriv_argv

# Runs as the guest's user: the kernel answers, so modes, owners, ACLs and every parent
# directory's search permission count exactly as they would for a model.
_CHECK = (
    "import os, sys\n"
    "for p in sys.stdin.buffer.read().split(b'\\0'):\n"
    "    if p and os.access(p, os.R_OK):\n"
    "        sys.stdout.buffer.write(p + b'\\0')\n"
)


def _files_under(roots: Iterable[Path], exclude: Path | None) -> list[Path]:
    found: set[Path] = set()
    skip = exclude.resolve() if exclude is not None else None
    for root in roots:
        if root.is_file():
            found.add(root)
        elif root.is_dir():
            for parent, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if Path(parent, d).resolve() != skip]
                found.update(Path(parent, name) for name in files)
    return sorted(found)


def readable_by_guest(roots: Iterable[Path], exclude: Path | None = None) -> list[Path]:
    """Files at or under `roots` (not under `exclude`) that the fallback guest's user could open
    for reading.

    Needs root (it asks as that user, through setpriv). Symlinks count by what they point to.
    """
    files = _files_under(roots, exclude)
    if not files:
        return []
    done = subprocess.run([*setpriv_argv(), sys.executable, "-I", "-S", "-c", _CHECK],
                          input=b"\0".join(os.fsencode(p) for p in files), capture_output=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cannot check file access as the sandbox user: "
                           f"{done.stderr.decode(errors='replace').strip()[-500:]}")
    return [Path(os.fsdecode(p)) for p in done.stdout.split(b"\0") if p]


def guest_python_problem(python: str = sys.executable) -> str | None:
    """Why the fallback guest's user could not run this Python with its packages (the guest is
    started from it), or None when it can. A venv under a 0700 home directory is the usual cause."""
    try:
        done = subprocess.run([*setpriv_argv(), python, "-c", "import numpy, torch"],
                              capture_output=True, timeout=300, check=False)
    except OSError as exc:
        return f"cannot start {python}: {exc.strerror}"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else f"exit status {done.returncode}"

