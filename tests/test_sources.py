"""Batch sources: files, directories, mbox files, Maildirs, stdin; unreadable paths reported."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from bouncemilter.sources import SourceError, collect, iter_messages, read_messages, split_mbox

CLI = Path(__file__).parent / "fixtures" / "cli"


def _read(paths: list[str]) -> tuple[list[tuple[str, bytes]], list[SourceError]]:
    errors: list[SourceError] = []
    return list(iter_messages(paths, errors)), errors


def test_single_file_keeps_the_path_as_given() -> None:
    given = str(CLI / "plain.eml")
    messages, errors = _read([given])
    assert [s for s, _ in messages] == [given] and not errors


def test_mbox_is_split_on_envelope_lines_only() -> None:
    given = str(CLI / "three.mbox")
    messages, errors = _read([given])
    assert not errors
    assert [s for s, _ in messages] == [f"{given}#1", f"{given}#2", f"{given}#3"]
    first, second, third = (raw for _, raw in messages)
    assert first.startswith(b"Return-Path: <>")
    assert b"From here on, this paragraph" in first  # a body line starting with "From " does not split
    assert b"\nFrom the station" in second and b">From" not in second  # mboxrd unquoting
    assert third.startswith(b"From: Grace")


def test_single_message_with_envelope_line_is_not_numbered(tmp_path: Path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\nSubject: x\n\nbody\n\nFrom me, thanks\n")
    messages, _ = _read([str(path)])
    assert messages == [(str(path), b"Subject: x\n\nbody\n\nFrom me, thanks\n")]


def test_split_mbox_crlf_and_rfc5322_dates() -> None:
    data = (
        b"From a@example.com Thu, 26 Nov 2026 10:00:00 +0000\r\nSubject: 1\r\n\r\none\r\n\r\n"
        b"From b@example.com  Thu Nov 26 10:00:01 2026\r\nSubject: 2\r\n\r\ntwo\r\n"
    )
    assert split_mbox(data) == [b"Subject: 1\n\none\n", b"Subject: 2\n\ntwo\n"]


def test_envelope_like_line_without_a_header_after_it_does_not_split() -> None:
    data = b"From x Thu Nov 26 10:00:00 2026\nSubject: 1\n\nFrom 9:00 to 10:00 in 2026 we meet.\nsee you\n"
    assert len(split_mbox(data)) == 1


def _maildir(root: Path) -> None:
    for sub in ("cur", "new", "tmp", ".Bounces/cur", ".Bounces/new", ".Bounces/tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "1:2,S").write_bytes(b"Subject: cur\n\n")
    (root / "new" / "2").write_bytes(b"Subject: new\n\n")
    (root / "tmp" / "3").write_bytes(b"Subject: being written\n\n")
    (root / ".Bounces" / "new" / "4").write_bytes(b"Subject: subfolder\n\n")
    (root / "dovecot-uidlist").write_bytes(b"3 V1 N5\n")
    (root / "maildirfolder").write_bytes(b"")


def test_maildir_reads_cur_and_new_and_maildirplus_folders_only(tmp_path: Path) -> None:
    _maildir(tmp_path / "Maildir")
    given = str(tmp_path / "Maildir")
    messages, errors = _read([given])
    assert not errors
    assert [s for s, _ in messages] == [
        os.path.join(given, "cur", "1:2,S"),
        os.path.join(given, "new", "2"),
        os.path.join(given, ".Bounces", "new", "4"),
    ]


def test_directory_tree_with_a_maildir_inside(tmp_path: Path) -> None:
    _maildir(tmp_path / "mail" / "alice")
    (tmp_path / "mail" / "b.eml").write_bytes(b"Subject: b\n\n")
    (tmp_path / "mail" / ".hidden").write_bytes(b"Subject: h\n\n")
    (tmp_path / "mail" / ".git").mkdir()
    (tmp_path / "mail" / ".git" / "config").write_bytes(b"x")
    messages, _ = _read([str(tmp_path / "mail")])
    subjects = [raw.split(b"\n")[0] for _, raw in messages]
    assert subjects == [b"Subject: b", b"Subject: cur", b"Subject: new", b"Subject: subfolder"]  # files, then folders


def test_unreadable_paths_are_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ok.eml").write_bytes(b"Subject: ok\n\n")
    os.symlink(tmp_path / "missing", tmp_path / "d" / "broken.eml")
    missing = str(tmp_path / "nope")
    messages, errors = _read([missing, str(tmp_path / "d")])
    assert [raw for _, raw in messages] == [b"Subject: ok\n\n"]
    assert [(e.source, e.message) for e in errors] == [
        (missing, "No such file or directory"),
        (str(tmp_path / "d" / "broken.eml"), "No such file or directory"),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.eml"
    path.write_bytes(b"x")
    path.chmod(0)
    _, errors = _read([str(path)])
    assert errors and "ermission" in errors[0].message


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (CLI / "three.mbox").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    messages, _ = _read(["-"])
    assert [s for s, _ in messages] == ["-#1", "-#2", "-#3"]


def test_done_callback_once_per_entry(tmp_path: Path) -> None:
    errors: list[SourceError] = []
    entries = collect([str(CLI)], errors)
    calls: list[int] = []
    list(read_messages(entries, errors, done=lambda: calls.append(1)))
    assert len(calls) == len(entries) == 3
