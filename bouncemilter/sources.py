"""Where messages come from for batch commands: files, directories, mbox files, Maildirs, stdin."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MBOX_FROM = b"From "


@dataclass(slots=True)
class SourceError:
    source: str
    message: str


def iter_messages(paths: list[str], errors: list[SourceError]) -> Iterator[tuple[str, bytes]]:
    """Yield (source, raw bytes) for every message under `paths`; problems go to `errors`.

    `source` is the path as given, `path#N` for the Nth message (from 1) of an mbox file.
    """
    for given in paths:
        if given == "-":
            yield from _split_if_mbox("-", sys.stdin.buffer.read())
            continue
        path = Path(given)
        try:
            if path.is_dir():
                yield from _iter_dir(given, path, errors)
            else:
                yield from _split_if_mbox(given, path.read_bytes())
        except OSError as exc:
            errors.append(SourceError(given, exc.strerror or str(exc)))


def _iter_dir(given: str, path: Path, errors: list[SourceError]) -> Iterator[tuple[str, bytes]]:
    if (path / "cur").is_dir() and (path / "new").is_dir():  # a Maildir
        files = sorted([*(path / "cur").iterdir(), *(path / "new").iterdir()])
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    for file in files:
        source = os.path.join(given, os.path.relpath(file, path))
        try:
            data = file.read_bytes()
        except OSError as exc:
            errors.append(SourceError(source, exc.strerror or str(exc)))
            continue
        yield from _split_if_mbox(source, data)


def _split_if_mbox(source: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(_MBOX_FROM):
        yield source, data
        return
    messages = split_mbox(data)
    if len(messages) == 1:
        yield source, messages[0]
        return
    for n, message in enumerate(messages, 1):
        yield f"{source}#{n}", message


def split_mbox(data: bytes) -> list[bytes]:
    """Split an mbox (mboxrd/mboxo) into messages; '>From ' quoting is undone."""
    data = data.replace(b"\r\n", b"\n")
    chunks = data.split(b"\n\nFrom ")
    out: list[bytes] = []
    for i, chunk in enumerate(chunks):
        if i > 0:
            chunk = b"From " + chunk
        # drop the envelope line "From sender date"
        _, _, body = chunk.partition(b"\n")
        if b"\n>From " in body or body.startswith(b">From "):
            body = _unquote_from(body)
        out.append(body)
    return out


def _unquote_from(body: bytes) -> bytes:
    lines = body.split(b"\n")
    for i, line in enumerate(lines):
        stripped = line.lstrip(b">")
        if stripped.startswith(b"From ") and len(line) > len(stripped):
            lines[i] = line[1:]
    return b"\n".join(lines)
