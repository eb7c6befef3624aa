"""`bouncemilter import-suppressions FILE.csv`: ESP exports in their own shapes, a report of every row skipped and
why, nothing lost, nothing imported twice."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import suppress_import as si
from bouncemilter import suppressions as sup
from bouncemilter.cli import main
from bouncemilter.policy import Policy
from bouncemilter.suppressions import open_store
from tests.conftest import db_connect

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    path = request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path / "b.db"
    open_store(str(path)).close()
    return path


def run(db: Path, path: Path, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["import-suppressions", "--db", str(db), str(path), *args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def rows(db: Path) -> dict[str, dict]:
    conn = db_connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {r["address"]: dict(r) for r in conn.execute("SELECT * FROM suppressions WHERE state = 'suppressed'")}
    finally:
        conn.close()


# A Mailchimp-style export of unsubscribes, a SendGrid-style one (epoch seconds), a semicolon file from Excel
MAILCHIMP = """Email Address,First Name,Last Name,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_REASON
alice@example.org,Alice,Example,2025-03-01 10:15:00,March news,No longer interested
BOB@Example.ORG,Bob,Example,2025-03-02 08:00:00,March news,
"""
SENDGRID = """email,created,reason,status
carol@example.org,1740000000,"550 5.1.1 The email account that you tried to reach does not exist",5.1.1
dave@example.org,1740000100,spam report,
erin@example.org,1740000200,Unsubscribed from all,
"""


def test_esp_exports_are_read_with_their_own_column_names(db: Path, tmp_path: Path) -> None:
    (tmp_path / "mc.csv").write_text(MAILCHIMP)
    code, out, err = run(db, tmp_path / "mc.csv", "--category", "opt-out", "--by", "ann")
    assert (code, err) == (0, "")
    assert out.startswith("2 row(s): 2 suppressed (2 opt-out), 0 already suppressed, 0 skipped")
    assert "address='Email Address'" in out and "reason='UNSUB_REASON'" in out and "date='UNSUB_TIME'" in out
    (tmp_path / "sg.csv").write_text(SENDGRID)
    code, out, _ = run(db, tmp_path / "sg.csv")
    assert code == 0 and "3 suppressed (1 complaint, 1 hard, 1 opt-out)" in out
    got = rows(db)
    assert {a: (r["category"], r["source"]) for a, r in got.items()} == {
        "alice@example.org": ("opt-out", "opt-out"),
        "bob@example.org": ("opt-out", "opt-out"),  # lower-cased like every address in the store
        "carol@example.org": ("hard", "manual"),
        "dave@example.org": ("complaint", "manual"),
        "erin@example.org": ("opt-out", "opt-out"),
    }
    assert got["alice@example.org"]["suppressed_at"] == "2025-03-01T10:15:00.000Z"
    assert (
        got["alice@example.org"]["reason"] == "No longer interested" and got["alice@example.org"]["manual_by"] == "ann"
    )
    assert got["bob@example.org"]["reason"] == "from mc.csv"
    assert got["carol@example.org"]["suppressed_at"] == "2025-02-19T21:20:00.000Z"
    # the same files again: nothing changes
    before = rows(db)
    assert run(db, tmp_path / "sg.csv")[1].startswith("3 row(s): 0 suppressed, 3 already suppressed, 0 skipped")
    assert rows(db) == before
    # rebuilds keep them: there is no evidence to replay
    conn = db_connect(db)
    try:
        counts = sup.rebuild(conn, Policy())
    finally:
        conn.close()
    assert counts["removed"] == 0 and counts["suppressed"] == 5


def test_bad_rows_are_skipped_with_why_and_written_out_nothing_lost(db: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text(
        "address,reason,date\n"
        "good@example.org,unsubscribed,2025-01-01\n"
        "not-an-address,unsubscribed,2025-01-01\n"
        "vic\u200btim@example.org,unsubscribed,2025-01-01\n"
        "when@example.org,unsubscribed,01/02/2025\n"
        "later@example.org,unsubscribed,2999-01-01\n"
        "what@example.org,unsubscribed,next tuesday\n"
        "good@example.org,again,2025-01-02\n"
        ",no address,2025-01-01\n"
        "\n"
        "fine@example.org,,\n",
        encoding="utf-8",
    )
    code, out, err = run(db, tmp_path / "bad.csv", "--rejects", str(tmp_path / "rejects.csv"))
    assert code == 1
    assert "2 suppressed" in out and "7 skipped" in out
    lines = err.splitlines()
    assert lines == [
        "bouncemilter: " + str(tmp_path / "bad.csv") + f":{n}: skipped: {why}"
        for n, why in [
            (3, "not an email address: 'not-an-address' (address rejected (not local@domain): not-an-address)"),
            (4, r"not an email address: 'vic\u200btim@example.org' (address rejected (invisible or control "
                r"character \u200b): vic\u200btim@example.org)"),
            (5, "date '01/02/2025' is ambiguous (day/month order): write it as YYYY-MM-DD"),
            (6, "date '2999-01-01' is in the future"),
            (7, "date 'next tuesday' not understood (YYYY-MM-DD, ISO 8601, RFC 2822 or Unix seconds)"),
            (8, "good@example.org repeats line 2"),
            (9, "no address in this row"),
        ]
    ]  # fmt: skip
    assert set(rows(db)) == {"good@example.org", "fine@example.org"}
    with open(tmp_path / "rejects.csv", newline="", encoding="utf-8") as fh:
        rejected = list(csv.reader(fh))
    assert rejected[0] == ["address", "reason", "date", "line", "why"]
    assert [r[3] for r in rejected[1:]] == ["3", "4", "5", "6", "7", "8", "9"]
    assert rejected[3][:3] == ["when@example.org", "unsubscribed", "01/02/2025"]  # as it was: fix it, load it
    # fixed, the rejects load (their extra columns are not in the way)
    fixed = (tmp_path / "rejects.csv").read_text().replace("01/02/2025", "2025-02-01")
    (tmp_path / "fixed.csv").write_text(fixed)
    code, out, _ = run(db, tmp_path / "fixed.csv")
    assert code == 1 and "1 suppressed" in out and "when@example.org" in rows(db)


def test_formats_delimiters_encodings_and_a_file_without_header(db: Path, tmp_path: Path) -> None:
    # Excel: a BOM, semicolons, a Windows-1252 reason
    (tmp_path / "excel.csv").write_bytes(
        b"E-Mail;Grund;Datum\r\nmax@example.de;Abgemeldet (M\xfcller);2025-05-01T08:00:00+02:00\r\n"
    )
    code, out, _ = run(db, tmp_path / "excel.csv")
    assert code == 0 and "read as cp1252" in out
    assert rows(db)["max@example.de"]["reason"] == "Abgemeldet (Müller)"
    assert rows(db)["max@example.de"]["category"] == "opt-out"
    assert rows(db)["max@example.de"]["suppressed_at"] == "2025-05-01T06:00:00.000Z"
    (tmp_path / "bom.csv").write_bytes("\ufeffemail\tdate\nzoë@example.es\tSat, 01 Mar 2025 10:00:00 +0000\n".encode())
    assert run(db, tmp_path / "bom.csv")[0] == 0 and "zoë@example.es" in rows(db)
    (tmp_path / "bare.csv").write_text("plain@example.net,hard bounce,2025/03/04\nother@example.net\n")
    code, out, _ = run(db, tmp_path / "bare.csv")
    assert code == 0 and "2 suppressed" in out
    assert rows(db)["plain@example.net"]["category"] == "hard"
    assert rows(db)["plain@example.net"]["suppressed_at"] == "2025-03-04T00:00:00.000Z"


def test_a_file_that_cannot_be_imported_saves_nothing(db: Path, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("name,city\nAlice,Paris\n")
    code, _, err = run(db, tmp_path / "x.csv")
    assert code == 1 and "no address column in the header" in err and "nothing saved" in err
    (tmp_path / "empty.csv").write_text("\n\n")
    assert "no rows" in run(db, tmp_path / "empty.csv")[2]
    assert "cannot read" in run(db, tmp_path / "missing.csv")[2]
    assert rows(db) == {}


def test_a_newer_unsuppress_wins_over_an_older_row(db: Path, tmp_path: Path) -> None:
    conn = db_connect(db)
    try:
        sup.suppress(conn, "back@example.org", "x", "ann", stamp="2025-06-01T00:00:00.000Z")
        sup.unsuppress(conn, "back@example.org", "resubscribed", "ann", stamp="2025-07-01T00:00:00.000Z")
    finally:
        conn.close()
    (tmp_path / "old.csv").write_text("email,date\nback@example.org,2025-01-01\n")
    code, _, err = run(db, tmp_path / "old.csv")
    assert code == 1 and "back@example.org was unsuppressed on 2025-07-01, after this row's date" in err
    assert rows(db) == {}
    (tmp_path / "new.csv").write_text("email,date\nback@example.org,2025-08-01\n")
    assert run(db, tmp_path / "new.csv")[0] == 0 and "back@example.org" in rows(db)


def test_dry_run_json_and_no_notify(db: Path, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("email,reason\na@example.org,unsubscribe\nb@example.org,bounce\n")
    res = CliRunner().invoke(
        main, ["import-suppressions", "--db", str(db), str(tmp_path / "a.csv"), "--dry-run", "--format", "json"]
    )
    summary = json.loads(res.stdout)
    assert (summary["suppressed"], summary["dry_run"], summary["by_category"]) == (2, True, {"hard": 1, "opt-out": 1})
    assert rows(db) == {}
    assert run(db, tmp_path / "a.csv", "--no-notify")[0] == 0
    conn = db_connect(db)
    try:
        assert conn.execute("SELECT COUNT(*), SUM(notify) FROM suppression_changes").fetchone() == (2, 0)
    finally:
        conn.close()


def test_parse_dates_and_categories() -> None:
    assert si.parse_date("2025-03-01", NOW) == datetime(2025, 3, 1, tzinfo=UTC)
    assert si.parse_date("2025-03-01T10:00:00Z", NOW) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert si.parse_date("1740000000123", NOW) == datetime(2025, 2, 19, 21, 20, 0, 123000, tzinfo=UTC)
    with pytest.raises(ValueError, match="before 1990"):
        si.parse_date("1980-01-01", NOW)
    assert [si.category_of(r) for r in ("Unsubscribed", "opt-out", "Spam complaint", "Hard bounce", "soft bounce",
                                        "Mailbox does not exist", "asked by phone", "")] == [
        "opt-out", "opt-out", "complaint", "hard", "soft", "hard", "manual", "manual"]  # fmt: skip


def test_a_list_may_come_before_the_milter_ever_ran(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("email\nfirst@example.org\n")
    db = tmp_path / "new" / "b.db"
    db.parent.mkdir()
    code, out, _ = run(db, tmp_path / "a.csv")
    assert code == 0 and "1 suppressed" in out and set(rows(db)) == {"first@example.org"}
