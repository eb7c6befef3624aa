"""`check`: Nagios exit codes 0/1/2/3, one line per breached threshold, perfdata on the first line."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import cli_report, reports
from bouncemilter.cli import main
from bouncemilter.reports import CRITICAL, OK, UNKNOWN, WARNING, Threshold, parse_threshold
from tests.report_db import build

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
# the last hour of tests/report_db.py: 6 bounced recipients, 3 hard (rate 0.5), 1 complaint, 2 blocked


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgres":
        return str(build(request.getfixturevalue("pg_server").new_schema(), NOW))
    return str(build(tmp_path_factory.mktemp("check") / "bounces.db", NOW))


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_report, "_now", lambda: NOW)


def check(*args: str) -> tuple[int, list[str]]:
    res = CliRunner().invoke(main, ["check", *args], catch_exceptions=False)
    return res.exit_code, res.output.splitlines()


def perfdata(first_line: str) -> dict[str, list[str]]:
    _, _, perf = first_line.partition(" | ")
    return {k: v.split(";") for k, v in (item.split("=") for item in perf.split())}


def test_ok(db: str) -> None:
    code, lines = check("--db", db, "--max-hard-rate", "60%", "--max-complaints", "1", "--max-blocked", "2",
                        "--min-bounces", "5")  # fmt: skip
    assert code == OK, lines
    assert lines[0].startswith("BOUNCEMILTER OK - 10 message(s) in the last 1h: hard rate 50.0% (3/6), ")
    assert len(lines) == 1
    perf = perfdata(lines[0])
    assert perf["hard_rate"] == ["0.5000", "", "0.6", "0", "1"]
    assert perf["complaints"][:3] == ["1", "", "1"] and perf["blocked"][:3] == ["2", "", "2"]
    assert perf["bounces"][0] == "6" and perf["hard"][0] == "3" and perf["messages"][0] == "10"


def test_warning(db: str) -> None:
    code, lines = check("--db", db, "--since", "1h", "--max-hard-rate", "40%,60%", "--max-complaints", "0,3",
                        "--max-blocked", "5", "--min-bounces", "5")  # fmt: skip
    assert code == WARNING, lines
    assert lines[0].startswith("BOUNCEMILTER WARNING - 2 threshold(s) breached in the last 1h | ")
    assert lines[1:] == [
        "WARNING: hard bounce rate 50.0% (3 of 6 bounced recipients) > 40.0%",
        "WARNING: 1 complaint(s) > 0",
    ]
    assert perfdata(lines[0])["hard_rate"][1:3] == ["0.4", "0.6"]


def test_critical_worst_breach_wins(db: str) -> None:
    code, lines = check("--db", db, "--max-hard-rate", "0.2,0.4", "--max-complaints", "0,", "--max-blocked", "1",
                        "--min-bounces", "5")  # fmt: skip
    assert code == CRITICAL, lines
    assert lines[0].startswith("BOUNCEMILTER CRITICAL - 3 threshold(s) breached")
    # critical lines first, one per breach
    assert lines[1] == "CRITICAL: hard bounce rate 50.0% (3 of 6 bounced recipients) > 40.0%"
    assert lines[2] == "CRITICAL: 2 blocked recipient(s) (blocked 2) > 1"
    assert lines[3] == "WARNING: 1 complaint(s) > 0"


def test_longer_window_and_min_bounces(db: str) -> None:
    # 24h: 9 bounced recipients, 5 hard; with the default --min-bounces 10 the rate is not judged
    code, lines = check("--db", db, "--since", "24h", "--max-hard-rate", "10%")
    assert code == OK, lines
    assert lines[-1] == "hard rate not judged: 9 bounced recipient(s) < --min-bounces 10"
    code, lines = check("--db", db, "--since", "24h", "--max-hard-rate", "10%", "--min-bounces", "9")
    assert code == CRITICAL and "(5 of 9 bounced recipients)" in lines[1]


def test_unknown_when_the_database_cannot_be_read(db: str, tmp_path: Path) -> None:
    code, lines = check("--db", str(tmp_path / "missing.db"), "--max-complaints", "1")
    assert code == UNKNOWN and lines[0].startswith("BOUNCEMILTER UNKNOWN - cannot read ")
    assert not (tmp_path / "missing.db").exists()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    code, lines = check("--db", str(garbage), "--max-complaints", "1")
    assert code == UNKNOWN and "cannot read" in lines[0]

    other = tmp_path / "other.db"  # a SQLite file, but not ours
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    code, lines = check("--db", str(other), "--max-complaints", "1")
    assert code == UNKNOWN and "no such table: messages" in lines[0]


def test_unknown_on_usage_errors(db: str, tmp_path: Path) -> None:
    # click's usage errors exit 2, which a monitoring system would read as CRITICAL
    assert check("--db", db, "--max-blocked", "many")[0] == UNKNOWN
    assert check("--db", db, "--max-hard-rate", "150%")[0] == UNKNOWN
    assert check("--db", db, "--no-such-option")[0] == UNKNOWN
    code, lines = check("--db", db)
    assert code == UNKNOWN and "no threshold given" in lines[0]
    code, lines = check("--db", db, "--since", "soon", "--max-blocked", "1")
    assert code == UNKNOWN and "use 24h" in lines[0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[nope]\n")
    code, lines = check("--config", str(bad), "--max-blocked", "1")
    assert code == UNKNOWN and "unknown section" in lines[0]


def test_library_with_injected_clock(db: str) -> None:
    conn = cli_report._read_only(db, 5.0)
    try:
        later = NOW + timedelta(hours=6)  # nothing in the last hour then
        quiet = reports.check(conn, later - HOUR, later, complaints=Threshold(None, 0), blocked=Threshold(0, 1))
        assert quiet.state == OK and quiet.window.messages == 0 and quiet.window.hard_rate == 0.0
        old = NOW - timedelta(days=3)  # the window three days ago holds one complaint
        past = reports.check(conn, old - HOUR, old + HOUR, complaints=Threshold(None, 0), label="2h")
        assert past.state == CRITICAL and past.lines[1] == "CRITICAL: 1 complaint(s) > 0"
        w = reports.window_counts(conn, NOW - HOUR, NOW)
        assert (w.bounces, w.hard, w.complaints, w.blocked, w.blocked_by_reason) == (6, 3, 1, 2, {"blocked": 2})
    finally:
        conn.close()


def test_parse_threshold() -> None:
    assert parse_threshold("5") == Threshold(None, 5)
    assert parse_threshold("1,5") == Threshold(1, 5)
    assert parse_threshold("1,") == Threshold(1, None)
    assert parse_threshold("10%,0.25", rate=True) == Threshold(0.1, 0.25)
    for bad in ("", ",", "5,1", "-1", "a", "1,2,3"):
        with pytest.raises(ValueError):
            parse_threshold(bad)
    with pytest.raises(ValueError):
        parse_threshold("2", rate=True)
    assert Threshold(1, 5).state(1) == OK and Threshold(1, 5).state(2) == WARNING
    assert Threshold(1, 5).state(6) == CRITICAL and Threshold().state(99) == OK


def test_output_is_nagios_plugin_text(db: str) -> None:
    _, lines = check("--db", db, "--max-complaints", "0,5")
    assert re.fullmatch(r"BOUNCEMILTER (OK|WARNING|CRITICAL) - [^|]+ \| (\S+=\S+ ?)+", lines[0])


@pytest.mark.parametrize(
    "args", [["--no-such-option"], ["--max-blocked", "many"], ["--max-hard-rate"], ["--min-bounces", "0"]]
)
def test_bad_arguments_print_a_status_line_on_stdout(db: str, args: list[str]) -> None:
    # NRPE passes on stdout only: an UNKNOWN with an empty stdout is a blank alert nobody can act on
    out = subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", "check", "--db", db, *args], capture_output=True, text=True
    )
    assert out.returncode == UNKNOWN
    first = out.stdout.splitlines()[0]
    assert first.startswith("BOUNCEMILTER UNKNOWN - ") and len(first) > len("BOUNCEMILTER UNKNOWN - ") + 5
