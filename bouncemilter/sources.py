"""Where messages come from for batch commands: files, directories, mbox files, Maildirs, stdin.

`collect` turns the paths given on the command line into a list of files (so a progress bar knows
the total before any file is read); `read_messages` reads them and splits mbox files. Problems
never stop a run: each unreadable path becomes a `SourceError` and the rest is still processed.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

STDIN = "-"
_MBOX_FROM = b"From "
# The envelope line that starts each message of an mbox: "From sender Thu Nov 26 12:53:02 2026"
# (asctime) or with an RFC 5322 date. A time of day is required, so that a body paragraph that
# merely starts with "From " after an empty line does not split a message in two.
_ENVELOPE = re.compile(rb"From \S+ [^\n]{0,120}?\b\d{1,2}:\d\d(?::\d\d)?\b[^\n]{0,80}\n")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_MAILDIR_PARTS = ("cur", "new")  # tmp holds deliveries still being written: never read


@dataclass(slots=True)
class SourceError:
    source: str
    message: str


@dataclass(slots=True)
class Entry:
    source: str  # the label printed for this file: the path as given, or joined below a directory
    path: str  # what to open; STDIN for standard input


def collect(paths: Iterable[str], errors: list[SourceError]) -> list[Entry]:
    """The files to read, in a stable order; paths that do not exist go to `errors`."""
    entries: list[Entry] = []
    for given in paths:
        if given == STDIN:
            entries.append(Entry(STDIN, STDIN))
        elif os.path.isdir(given):
            entries.extend(_walk(given, errors))
        elif os.path.lexists(given):
            entries.append(Entry(given, given))  # unreadable files are reported when read
        else:
            errors.append(SourceError(given, "No such file or directory"))
    return entries


def read_messages(
    entries: Iterable[Entry], errors: list[SourceError], done: Callable[[], None] | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield (source, raw bytes) per message; `source` is `path#N` for the Nth message (from 1) of
    an mbox file holding more than one. `done` is called after each entry."""
    for entry in entries:
        try:
            data = read_stdin() if entry.path == STDIN else read_file(entry.path)
        except OSError as exc:
            errors.append(SourceError(entry.source, _describe(exc)))
        else:
            yield from _split_if_mbox(entry.source, data)
        if done is not None:
            done()


def iter_messages(paths: Iterable[str], errors: list[SourceError]) -> Iterator[tuple[str, bytes]]:
    """collect + read_messages in one call."""
    return read_messages(collect(paths, errors), errors)


# What is read from standard input when it is a pipe, a terminal or a device: /dev/zero or a runaway producer
# must not fill the memory. Six times Postfix's default message_size_limit (10,240,000 bytes); a bigger mailbox
# is read from its file, which has no cap (a regular file ends).
STDIN_MAX = 64 << 20


def read_file(path: str) -> bytes:
    """A named file, decompressed. OSError for what is not a regular file: open() of a FIFO would wait forever
    for a writer and /dev/zero never ends, so they are refused (standard input takes a stream)."""
    from .regularfile import NotRegular, read_regular

    try:
        return decompress(read_regular(path))
    except NotRegular as exc:
        raise OSError(exc.errno, f"{exc.strerror}: give a file, or send it to standard input (-)") from None


def read_stdin() -> bytes:
    if sys.stdin is None:  # started with standard input closed (`<&-`, some daemons and cron setups)
        raise OSError(errno.EBADF, "standard input is closed")
    stream = sys.stdin.buffer
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # no descriptor (a test's BytesIO): a stream like any other
        regular = False
    if regular:  # `< file`: it ends
        return decompress(stream.read())
    data = stream.read(STDIN_MAX + 1)
    if len(data) > STDIN_MAX:
        raise OSError(
            errno.EFBIG,
            f"more than {STDIN_MAX >> 20} MiB on standard input: stopped reading (give a mailbox this big as a file)",
        )
    return decompress(data)


# A compressed mailbox is recognised by its magic bytes, not its name (logrotate and people name them freely).
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "lzma"))


def decompress(data: bytes) -> bytes:
    """The content of a gzip, bzip2 or xz file; anything else as it is. OSError if it is truncated or corrupt."""
    for magic, module in _COMPRESSED:
        if data.startswith(magic):
            import importlib

            try:
                return bytes(importlib.import_module(module).decompress(data))
            except Exception as exc:  # BadGzipFile, EOFError (truncated), zlib.error, LZMAError, OSError, ValueError
                raise OSError(f"cannot decompress ({module}): {exc}") from None
    return data


_FIRST_FIELD = re.compile(rb"[!-9;-~]{1,100}[ \t]*:")


def has_header_block(raw: bytes) -> bool:
    """Whether `raw` starts like a mail message: a header field on the first line and no NUL in the header block.

    An image, an archive or random bytes would otherwise be classified as an ordinary message (not_bounce)
    and stored, which hides the mistake; a message needs at least one header field."""
    end = raw.find(b"\n\n", 0, 256 * 1024)
    head = raw[: end if end >= 0 else 256 * 1024]
    return bool(_FIRST_FIELD.match(raw)) and b"\0" not in head


def _describe(exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return exc.strerror or str(exc)


def is_maildir(path: str) -> bool:
    return all(os.path.isdir(os.path.join(path, name)) for name in _MAILDIR_PARTS)


def _walk(given: str, errors: list[SourceError]) -> Iterator[Entry]:
    """Files below a directory. A Maildir (or a Maildir++ folder such as .Bounces) contributes
    only its new/ and cur/ messages, not tmp/ nor its index files; other hidden files and
    folders are skipped. Symlinked folders are not followed (no loops)."""

    def on_error(exc: OSError) -> None:
        name = exc.filename if isinstance(exc.filename, str) else given
        errors.append(SourceError(_label(given, name), _describe(exc)))

    def label_for(root: str, name: str) -> Entry:
        full = os.path.join(root, name)
        return Entry(_label(given, full), full)

    for root, dirs, files in os.walk(given, onerror=on_error):
        if is_maildir(root):
            for part in _MAILDIR_PARTS:
                sub = os.path.join(root, part)
                try:
                    names = sorted(n for n in os.listdir(sub) if not n.startswith("."))
                except OSError as exc:
                    errors.append(SourceError(_label(given, sub), _describe(exc)))
                    continue
                # Anything but a folder is read, so that a broken link is reported, not skipped.
                yield from (label_for(sub, n) for n in names if not os.path.isdir(os.path.join(sub, n)))
            # Maildir++ sub-folders are hidden directories with their own cur/ and new/.
            dirs[:] = sorted(d for d in dirs if d.startswith(".") and is_maildir(os.path.join(root, d)))
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") or is_maildir(os.path.join(root, d)))
        for name in sorted(files):
            if not name.startswith("."):
                yield label_for(root, name)


def _label(given: str, full: str) -> str:
    rel = os.path.relpath(full, given)
    return given if rel == "." else os.path.join(given, rel)


def _split_if_mbox(source: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(_MBOX_FROM):
        yield source, data
        return
    messages = split_mbox(data)
    if len(messages) == 1:  # a single message saved with its envelope line: keep the plain name
        yield source, messages[0]
        return
    for n, message in enumerate(messages, 1):
        yield f"{source}#{n}", message


def split_mbox(data: bytes) -> list[bytes]:
    """Split an mbox (mboxo/mboxrd) into messages without their envelope lines; '>From ' is unquoted.

    A new message starts at a "From " line after an empty line only when it looks like an
    envelope line (it carries a time of day) and a header line follows it.
    """
    return [body for _, body in split_mbox_envelopes(data)]


def split_mbox_envelopes(data: bytes) -> list[tuple[bytes, bytes]]:
    """split_mbox, with each message's envelope line ("From sender date", no newline) beside it."""
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    starts = [0]
    pos = 0
    while True:
        i = data.find(b"\n\nFrom ", pos)
        if i < 0:
            break
        begin = i + 2
        m = _ENVELOPE.match(data, begin)
        if m and _HEADER_LINE.match(data, m.end()):
            starts.append(begin)
        pos = begin
    out: list[tuple[bytes, bytes]] = []
    for k, begin in enumerate(starts):
        end = starts[k + 1] - 1 if k + 1 < len(starts) else len(data)  # keep the message's final newline
        chunk = data[begin:end]
        nl = chunk.find(b"\n")
        envelope, body = (chunk[:nl], chunk[nl + 1 :]) if nl >= 0 else (chunk, b"")
        if b">From " in body:
            body = _unquote_from(body)
        out.append((envelope, body))
    return out


_QUOTED_FROM = re.compile(rb"^>(>*From )", re.M)


def _unquote_from(body: bytes) -> bytes:
    """mboxrd: one '>' is removed from every line matching ^>+From ."""
    return _QUOTED_FROM.sub(rb"\1", body)
