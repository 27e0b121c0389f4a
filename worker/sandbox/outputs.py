"""Reading what the untrusted guest left in its output directory.

Everything is opened relative to a directory file descriptor, without following symlinks and
without blocking: a guest can put a named pipe, a symlink, a device node or a directory where
the worker expects a file, and none of those may hang the worker or lead it anywhere else.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from dataclasses import dataclass

from worker.sandbox.errors import ModelRejected

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = _OPEN_FLAGS | os.O_DIRECTORY


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_output(dir_fd: int, name: str, max_bytes: int) -> io.BufferedReader | None:
    """`name` in the output directory opened for reading, None when it does not exist.

    ModelRejected when it is anything but a regular file of at most `max_bytes`.
    """
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ModelRejected(f"the model replaced its output file {name} with a symbolic link; "
                                "expected a regular file") from None
        raise ModelRejected(f"the model's output file {name} cannot be opened ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelRejected(f"the model replaced its output file {name} with {_kind(st.st_mode)}; "
                                "expected a regular file")
        if st.st_size > max_bytes:
            raise ModelRejected(f"the model's output file {name} has {st.st_size} bytes; "
                                f"at most {max_bytes} were expected")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_output(dir_fd: int, name: str, max_bytes: int) -> bytes | None:
    """The bytes of `name` (at most `max_bytes`, checked again while reading), None if absent."""
    f = open_output(dir_fd, name, max_bytes)
    if f is None:
        return None
    with f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ModelRejected(f"the model's output file {name} grew past {max_bytes} bytes while being read")
    return data


def regular_files(dir_fd: int) -> list[str]:
    """Names of the regular files at the top of the output directory."""
    with os.scandir(dir_fd) as entries:
        return sorted(e.name for e in entries if e.is_file(follow_symlinks=False))


@dataclass(frozen=True)
class Usage:
    bytes: int          # allocated blocks, not apparent sizes: sparse files cost what they use
    entries: int        # files, directories, links, pipes ... at any depth


def usage(dir_fd: int, max_entries: int) -> Usage:
    """What the output tree holds, walked at every depth; stops counting past `max_entries`
    (so a tree of millions of entries costs no more than `max_entries` stat calls)."""
    total = count = 0
    pending = [os.dup(dir_fd)]
    try:
        while pending and count <= max_entries:
            fd = pending.pop()
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        count += 1
                        if count > max_entries:
                            break
                        try:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                            if entry.is_dir(follow_symlinks=False):
                                pending.append(os.open(entry.name, _DIR_FLAGS, dir_fd=fd))
                        except OSError:
                            continue             # removed or replaced while we looked
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        for fd in pending:
            os.close(fd)
    return Usage(total, count)
