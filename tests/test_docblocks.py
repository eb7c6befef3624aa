"""The rules tests/test_docs_blocks.py runs the docs' blocks by (tests/docblocks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .docblocks import Block, blocks, commands, cron_command, localize, output_mismatch, programs, transcript


def test_blocks_are_found_with_their_info_string_line_and_indentation(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from . import docblocks

    monkeypatch.setattr(docblocks, "REPO", tmp_path)
    doc = tmp_path / "guide.md"
    doc.write_text("text\n\n```sh\necho one\n```\n\n1. step:\n\n   ```\n   a = b\n   ```\n")
    assert blocks(doc) == [Block("guide.md", 3, "sh", "echo one\n"), Block("guide.md", 9, "", "a = b\n")]


def test_commands_join_continued_lines_and_drop_comment_lines() -> None:
    text = """# a comment
bouncemilter stats   # a trailing comment stays
sqlite3 x.db "SELECT a
              FROM b"
journalctl -f | jq . |
    while read -r l; do
    echo "$l"; done
one \\
  two && three
"""
    assert commands(text) == [
        "bouncemilter stats   # a trailing comment stays",
        'sqlite3 x.db "SELECT a\n              FROM b"',
        'journalctl -f | jq . |\n    while read -r l; do\n    echo "$l"; done',
        "one \\\n  two && three",
    ]


def test_cron_lines() -> None:
    assert cron_command("*/5 * * * * app  cur=1 && run") == ("app", "cur=1 && run")
    assert cron_command("bouncemilter check --since 1h") is None
    assert cron_command("0 3 * * 1-5 root /usr/bin/x") == ("root", "/usr/bin/x")


def test_console_transcripts() -> None:
    assert transcript("$ a\nout 1\n\n$ b\n$ c\nout c\n\n") == [("a", ["out 1", ""]), ("b", []), ("c", ["out c"])]
    with pytest.raises(ValueError):
        transcript("output first\n$ a\n")


def test_paths_move_below_the_root_once() -> None:
    root = Path("/tmp/r")
    text = "--config /etc/bouncemilter/x.toml --db bounces.db > /tmp/b.png; cat /etc/bouncemilter.d/keep"
    assert localize(text, root) == (
        "--config /tmp/r/etc/bouncemilter/x.toml --db /tmp/r/var/lib/bouncemilter/bouncemilter.db "
        "> /tmp/r/tmp/b.png; cat /etc/bouncemilter.d/keep"
    )
    assert localize("out > bounces.jsonl", root) == "out > bounces.jsonl"


def test_output_comparison() -> None:
    shown = ["TIME  KIND", "2026-11-21T13:23:23  bounce  452 ... full ...", "3 new (3 bounce)"]
    printed = ["TIME                 KIND", "2030-01-02T03:04:05  bounce  452 4.2.2 <x>: full, ok", "3 new (3 bounce)"]
    assert output_mismatch(shown, printed) is None
    assert output_mismatch(shown, printed[:2]) is not None  # a line missing
    assert "the docs show" in (output_mismatch(shown, [*printed[:2], "4 new (4 bounce)"]) or "")
    assert output_mismatch(shown, [*printed[:2], "4 new (4 bounce)"], numbers=True) is None
    assert output_mismatch(["a b"], ["a  b  "]) is None  # blanks: table widths follow the data


def test_programs_of_a_command_line() -> None:
    line = "umask 027; X=1 openssl rand 32 > k && cat $(ls /x) | /usr/bin/jq . | while read -r l; do mail -s a b; done"
    assert programs(line) == ["umask", "openssl", "cat", "ls", "jq", "read", "mail"]
    assert programs("sudo apt-get install x  # not: apt-get") == ["sudo"]
