"""Reading a file an admin names (a configuration, a key, a message) without hanging on what is not a file.

open() of a FIFO blocks until some process writes to it, and /dev/zero or /dev/urandom never end: a typo in
--config or a path argument must be an error, not a command that hangs. Named files must be regular files,
opened without blocking (O_NONBLOCK: a FIFO swapped in between the check and the open is still caught), and
what is read is capped where a sane file has a size limit."""

from __future__ import annotations

import errno
import os
import stat

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegular(OSError):
    """The path names a directory, a FIFO, a socket or a device. An OSError, so callers that report
    `exc.strerror` for unreadable files say this too."""


def kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse(mode: int) -> NotRegular:
    what = kind(mode)
    return NotRegular(errno.EINVAL, f"{what}, not a regular file" if what != "not a regular file" else what)


def open_regular(path: str) -> int:
    """A descriptor (blocking, close-on-exec) on the regular file `path`; NotRegular for anything else, OSError
    as os.open raises it (missing, permission denied)."""
    st = os.stat(path)  # a socket cannot even be opened (ENXIO): say what it is first
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(st.st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(st.st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, limit: int | None = None) -> bytes:
    """The content of the regular file `path`; with `limit`, OSError (EFBIG) past that many bytes. /dev/null is
    read as empty, as everywhere (`--config /dev/null`: no configuration file)."""
    if os.path.realpath(path) == os.devnull:
        return b""
    with os.fdopen(open_regular(path), "rb") as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {_size(limit)}")
    return data


def _size(n: int) -> str:
    return (
        f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n >> 10} KiB" if not n % 1024 else f"{n} bytes"
    )
