"""`stats`: the library numbers for every grouping, and the table, JSON, terminal chart and PNG outputs."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import cli_report, reports
from bouncemilter.cli import main
from tests.report_db import build

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgres":
        return str(build(request.getfixturevalue("pg_server").new_schema(), NOW))
    return str(build(tmp_path_factory.mktemp("reports") / "bounces.db", NOW))


@pytest.fixture
def conn(db: str):
    c = cli_report._read_only(db, 5.0)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_report, "_now", lambda: NOW)


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    assert res.exit_code == code, res.output
    return res.output


def table(st: reports.Stats) -> dict[str, tuple[int, int, int]]:
    return {r.key: (r.messages, r.recipients, r.hard) for r in st.rows}


DAY = timedelta(hours=24)


def test_by_kind(conn) -> None:
    st = reports.stats(conn, "kind", NOW - DAY, NOW)
    assert table(st) == {
        "bounce": (9, 9, 5),
        "complaint": (1, 1, 0),
        "delay": (1, 1, 0),
        "auto_reply": (1, 1, 0),
        "not_bounce": (1, 0, 0),
    }
    assert (st.total_messages, st.total_recipients, st.total_hard, st.unit) == (13, 12, 5, "messages")
    assert st.rows[0].key == "bounce" and st.rows[0].share == pytest.approx(9 / 13)
    everything = reports.stats(conn, "kind", None, NOW)
    assert table(everything)["bounce"] == (10, 10, 6) and table(everything)["complaint"] == (2, 2, 0)


def test_by_reason(conn) -> None:
    st = reports.stats(conn, "reason", NOW - DAY, NOW)
    assert table(st) == {
        "userunknown": (5, 5, 5),
        "mailboxfull": (2, 2, 0),
        "blocked": (2, 2, 0),
        "expired": (1, 1, 0),
        "feedback": (1, 1, 0),
        "vacation": (1, 1, 0),
    }
    assert st.unit == "recipients" and sum(r.share for r in st.rows) == pytest.approx(1.0)
    assert [r.key for r in st.rows][:1] == ["userunknown"]  # largest first


def test_by_domain(conn) -> None:
    st = reports.stats(conn, "domain", NOW - timedelta(hours=1), NOW)
    assert table(st) == {"example.org": (5, 5, 2), "example.net": (4, 4, 1)}


def test_by_remote_mta(conn) -> None:
    st = reports.stats(conn, "remote-mta", NOW - DAY, NOW)
    got = table(st)
    assert got["mx1.example.org"] == (4, 4, 2)
    assert got["mx.example.net"] == (4, 4, 1)
    assert got["mail.example.com.test"] == (2, 2, 2)
    assert got[reports.NONE_LABEL] == (2, 2, 0)  # the complaint and the auto-reply name no remote MTA


def test_by_hour_fills_quiet_hours(conn) -> None:
    st = reports.stats(conn, "hour", NOW - timedelta(hours=12), NOW)
    assert len(st.rows) in (12, 13)  # every hour of the window, the partial first one included
    assert sum(r.messages for r in st.rows) == 13
    assert [r.key for r in st.rows] == sorted(r.key for r in st.rows)  # in time order
    assert sum(1 for r in st.rows if r.messages == 0) >= 8
    assert st.rows[-1].key == NOW.strftime("%Y-%m-%d %H:00")


def test_empty_window_and_bad_grouping(conn) -> None:
    st = reports.stats(conn, "hour", NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert st.rows == [] and st.total_messages == 0
    with pytest.raises(ValueError):
        reports.stats(conn, "planet", None, NOW)


def test_window_start() -> None:
    assert reports.window_start("24h", NOW) == NOW - DAY
    assert reports.window_start("2w", NOW) == NOW - timedelta(days=14)
    assert reports.window_start("", NOW) is None
    assert reports.window_start("2026-05-01", NOW) == datetime(2026, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="use 24h"):
        reports.window_start("yesterday", NOW)


# ------------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("by", reports.BY_CHOICES)
def test_cli_json_each_grouping(db: str, by: str) -> None:
    data = json.loads(run("stats", "--db", db, "--by", by, "--format", "json"))
    assert data["by"] == by and data["total"] == {"messages": 13, "recipients": 12, "hard": 5, "unverified": 0}
    keys = {"key", "messages", "recipients", "hard", "unverified", "share"}
    assert data["rows"] and all(set(r) == keys for r in data["rows"])


def test_cli_table(db: str) -> None:
    out = run("stats", "--db", db, "--by", "reason", "--since", "all")
    lines = out.splitlines()
    assert lines[0].startswith("recipients by reason, all time")
    assert lines[1].split() == ["reason", "messages", "recipients", "hard", "unverified", "share"]
    assert lines[2].split() == ["userunknown", "6", "6", "6", "0", "42.9%"]
    assert lines[-1] == "total: 15 message(s), 14 recipient(s), 6 hard"


def test_cli_chart_fits_the_terminal(db: str) -> None:
    for columns in (40, 80, 160):
        out = run("stats", "--db", db, "--by", "domain", "--format", "chart", env={"COLUMNS": str(columns)})
        rows = [line for line in out.splitlines() if "│" in line]
        labels = [r.split()[0] for r in rows]
        assert labels[:2] == ["example.org", "example.net"]
        assert labels[2] == "example.com.test" or (columns < 60 and labels[2].endswith("…"))  # long labels cut
        assert all(len(r) <= columns for r in rows), (columns, rows)
        longest = max(r.count("█") for r in rows)
        assert longest >= columns // 4  # the largest bar uses the width
        assert rows[0].rstrip().endswith("6 (50.0%)")


def test_bar_eighths() -> None:
    assert cli_report.bar(0, 10, 20) == ""
    assert cli_report.bar(10, 10, 20) == "█" * 20
    assert cli_report.bar(1, 16, 2) == "▏"  # one eighth of a cell
    assert cli_report.bar(5, 10, 3) == "█▌"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, tag = struct.unpack(">I4s", data[8:16])
    assert tag == b"IHDR" and length == 13
    assert struct.unpack(">I", data[16 + length : 20 + length])[0] == zlib.crc32(data[12 : 16 + length])
    return struct.unpack(">II", data[16:24])


def test_cli_png(db: str, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    png = tmp_path / "reasons.png"
    out = run("stats", "--db", db, "--by", "reason", "--png", str(png))
    assert "userunknown" in out  # the table is printed as well
    width, height = _png_size(png.read_bytes())
    assert 400 < width < 2000 and 60 < height < 400
    img = Image.open(png).convert("RGB")
    colours = {c for _, c in img.getcolors(maxcolors=1 << 16)}
    assert (0x3B, 0x6F, 0xB6) in colours and (0xB6, 0x3B, 0x3B) in colours  # bars, and the hard part in red

    empty = tmp_path / "empty.png"
    run("stats", "--db", db, "--since", "2099-01-01", "--png", str(empty), "--format", "json")
    assert _png_size(empty.read_bytes())[0] > 100


def test_cli_errors(db: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["stats", "--db", str(tmp_path / "missing.db")])
    assert res.exit_code == 1 and "no such database" in res.output
    assert not (tmp_path / "missing.db").exists()  # a typo must not create a database
    res = CliRunner().invoke(main, ["stats", "--db", db, "--since", "last week"])
    assert res.exit_code == 2 and "use 24h" in res.output


def test_by_day_week_month_and_until(db: str) -> None:
    everything = json.loads(run("stats", "--db", db, "--since", "all", "--format", "json"))
    total = everything["total"]["messages"]
    for by, width in (("day", 10), ("month", 7)):
        data = json.loads(run("stats", "--db", db, "--since", "all", "--by", by, "--format", "json"))
        keys = [r["key"] for r in data["rows"]]
        assert keys == sorted(keys) and all(len(k) == width for k in keys)  # in time order
        assert sum(r["messages"] for r in data["rows"]) == total
    weeks = json.loads(run("stats", "--db", db, "--since", "all", "--by", "week", "--format", "json"))["rows"]
    for row in weeks:
        monday = datetime.fromisoformat(row["key"].removeprefix("week of "))
        assert monday.weekday() == 0
    assert sum(r["messages"] for r in weeks) == total
    # --until closes the window: the last day is left out, and the two windows add up
    day = timedelta(days=1)
    older = json.loads(run("stats", "--db", db, "--since", "all", "--until", "24h", "--format", "json"))
    newer = json.loads(run("stats", "--db", db, "--since", "24h", "--format", "json"))
    assert older["until"] == (NOW - day).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert older["total"]["messages"] + newer["total"]["messages"] == total
    assert 0 < older["total"]["messages"] < total


def test_since_and_until_errors_list_every_form(db: str) -> None:
    for args in (["--since", "last week"], ["--until", "soon"]):
        res = CliRunner().invoke(main, ["stats", "--db", db, *args])
        assert res.exit_code == 2
        for form in ("24h", "7d", "30m", "2w", "2026-05-01", "all"):
            assert form in res.output, (form, res.output)
    res = CliRunner().invoke(main, ["stats", "--db", db, "--since", "24h", "--until", "7d"])
    assert res.exit_code == 2 and "before --since" in res.output
