"""Terminal escape injection: report text reaches `history`, `suppressed` and `stats` tables and CSV escaped,
and JSON exact (issue #15, 4.)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.classify import classify
from bouncemilter.cli import main
from bouncemilter.cli_common import printable
from bouncemilter.store import MessageMeta
from bouncemilter.suppressions import open_store

CLEAR = "\x1b[2J"
HIDE = "\x1b[1A\x1b[2K"  # cursor up, erase line: hides the row above
TITLE = "\x1b]0;owned\x07"  # OSC: retitle the terminal
RLO = "\u202e"  # right-to-left override
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def _dsn(n: int, rcpt: str, diagnostic: str, mta: str) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.net
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <esc-{n}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Delivery failed.

--b
Content-Type: message/delivery-status; charset=utf-8

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; {mta}
Diagnostic-Code: smtp; 550 5.1.1 {diagnostic}

--b--
""".replace("\n", "\r\n").encode()


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "esc.db"
    with open_store(str(path)) as store:
        for n, (rcpt, diag, mta) in enumerate(
            [
                ("dead@example.org", f"user unknown{CLEAR}", f"mx{TITLE}.example.org"),
                ("dead@example.org", f"gone{HIDE}{RLO}txet", f"mx.example.org{CLEAR}"),
            ]
        ):
            raw = _dsn(n, rcpt, diag, mta)
            meta = MessageMeta("Q", "192.0.2.1", "mx", "mx", "", ["bounces@example.com"], [""], f"<{n}@x>", 1, 0.1)
            store.record(meta, classify(raw), "accept")
    conn = sqlite3.connect(path)
    with conn:  # a row written before addresses were checked, or by hand: the tables must cope anyway
        conn.execute("UPDATE suppressions SET summary = summary || ?", (HIDE + TITLE,))
        # signed return paths: an unverified row's reason names what the report quoted (its Message-ID)
        conn.execute("UPDATE recipients SET verified = 0 WHERE id = 1")
        conn.execute("UPDATE messages SET verified = 0, verification = ? WHERE id = 1", (f"quoted <x{CLEAR}@y>",))
        conn.execute("INSERT INTO suppressions (address, domain, state, source, summary, created_at, updated_at)"
                     " VALUES (?, 'x', 'suppressed', 'manual', ?, '2026-01-01', '2026-01-01')",
                     (f"ev{CLEAR}il@example.org", f"by hand{CLEAR}"))  # fmt: skip
    conn.close()
    return str(path)


def run(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _clean(out: str) -> None:
    assert not any(ch in out for ch in RAW), repr(out)


def test_printable_escapes_only_what_is_not_printable() -> None:
    assert printable(f"a{CLEAR}b") == "a\\x1b[2Jb"
    assert printable(TITLE) == "\\x1b]0;owned\\x07"
    assert printable(f"{RLO}x\u200by") == "\\u202ex\\u200by"
    assert printable("vіctim 山田 ü") == "vіctim 山田 ü"  # printable letters of any script stay
    assert printable(None) == ""


def test_history_table_is_escaped_and_json_exact(db: str) -> None:
    out = run("history", "--db", db, "dead@example.org")
    _clean(out)
    assert "user unknown\\x1b[2J" in out and "\\x1b[1A\\x1b[2K\\u202etxet" in out
    assert "\\x1b]0;owned\\x07" in out  # the remote MTA, and the suppression summary in the header
    assert "quoted <x\\x1b[2J@y>" in out  # the list of unverified events and why
    data = json.loads(run("history", "--db", db, "dead@example.org", "--format", "json"))
    diagnostics = [e["diagnostic"] for e in data["events"]]
    assert any(d.endswith(CLEAR) for d in diagnostics) and any(HIDE + RLO in d for d in diagnostics)
    assert data["suppression"]["summary"].endswith(HIDE + TITLE)


def test_suppressed_table_and_csv_are_escaped_and_json_exact(db: str) -> None:
    table = run("suppressed", "--db", db)
    _clean(table)
    assert "ev\\x1b[2Jil@example.org" in table and "\\x1b[1A\\x1b[2K" in table
    text = run("suppressed", "--db", db, "--format", "csv")
    _clean(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["address"] for r in rows} == {"dead@example.org", "ev\\x1b[2Jil@example.org"}
    rows = json.loads(run("suppressed", "--db", db, "--format", "json"))
    assert {r["address"] for r in rows} == {"dead@example.org", f"ev{CLEAR}il@example.org"}


@pytest.mark.parametrize("fmt", ["table", "chart"])
def test_stats_by_remote_mta_is_escaped(db: str, fmt: str) -> None:
    out = run("stats", "--db", db, "--since", "all", "--by", "remote-mta", "--format", fmt)
    _clean(out)
    assert "\\x1b]0;owned\\x07" in out or "\\x1b]0;owned" in out  # a chart label may be cut short
    keys = {r["key"] for r in json.loads(run("stats", "--db", db, "--since", "all", "--by", "remote-mta",
                                              "--format", "json"))["rows"]}  # fmt: skip
    assert f"mx{TITLE}.example.org" in keys
