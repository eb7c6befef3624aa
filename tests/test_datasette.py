"""The store's views, in sqlite3 and served by a real Datasette on loopback with deploy/datasette/metadata.json."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import query_rows
from tests.report_db import build

ROOT = Path(__file__).resolve().parents[1]
METADATA = ROOT / "deploy" / "datasette" / "metadata.json"
VIEWS = ("recent_bounces", "suppression_list", "domain_rates", "daily_counts")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the file name is the Datasette database name that metadata.json describes
    return build(tmp_path_factory.mktemp("datasette") / "bouncemilter.db", NOW)


def rows(db: Path, sql: str) -> list[dict]:
    return [dict(r) for r in query_rows(db, sql)]


def test_views_in_plain_sqlite(db: Path) -> None:
    recent = rows(db, "SELECT * FROM recent_bounces")
    # 30 days: 10 bounces + 2 complaints + 1 delay; not the auto-reply or the ordinary message
    assert len(recent) == 13 and {r["kind"] for r in recent} == {"bounce", "delay", "complaint"}
    assert recent[0]["address"] == "ann@example.org"  # newest first
    assert recent[0]["reason"] == "userunknown" and recent[0]["hard"] == 1 and recent[0]["status"] == "5.1.1"
    assert recent[0]["original_subject"] == "Weekly offers"

    dead = {r["address"]: r for r in rows(db, "SELECT * FROM suppression_list")}
    assert {"ann@example.org", "old@example.org", "angry@example.org"} <= set(dead)
    assert dead["ann@example.org"]["category"] == "hard" and dead["ann@example.org"]["evidence_count"] == 1
    assert "full@example.org" not in dead and "dot@example.net" not in dead  # 2 soft days; blocked never counts

    rates = {r["domain"]: r for r in rows(db, "SELECT * FROM domain_rates")}
    assert set(rates) == {"example.org", "example.net", "example.com.test"}  # old@ (3 days) is in, 7-day window
    org = rates["example.org"]
    assert (org["bounces"], org["hard"], org["soft"], org["complaints"]) == (5, 3, 2, 2)
    assert org["hard_rate"] == 0.6 and org["suppressed"] >= 4
    net = rates["example.net"]
    assert (net["bounces"], net["hard"], net["delays"], net["hard_rate"]) == (3, 1, 1, 0.333)

    daily = rows(db, "SELECT SUM(messages) AS n FROM daily_counts")
    assert daily[0]["n"] == 15


def test_metadata_describes_every_table_and_view(db: Path) -> None:
    meta = json.loads(METADATA.read_text())
    tables = meta["databases"]["bouncemilter"]["tables"]
    names = {r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert names <= set(tables), names - set(tables)
    for name, table in tables.items():
        assert table.get("description"), name
        if name in names and "columns" in table:
            real = {r["name"] for r in rows(db, f"SELECT name FROM pragma_table_info('{name}')")}
            assert set(table["columns"]) == real, (name, set(table["columns"]) ^ real)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


@pytest.fixture
def datasette(db: Path):
    exe = Path(sys.executable).with_name("datasette")
    if not exe.exists():
        pytest.skip("datasette is not installed (pip install -e '.[test]')")
    port = _free_port()
    proc = subprocess.Popen(
        [str(exe), "serve", str(db), "-m", str(METADATA), "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(base + "/-/versions.json")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    pytest.fail(f"datasette did not start: {out}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_datasette_serves_the_views(datasette: str) -> None:
    recent = _get(datasette + "/bouncemilter/recent_bounces.json?_shape=array")
    assert isinstance(recent, list) and len(recent) == 13
    assert recent[0]["address"] == "ann@example.org" and recent[0]["reason"] == "userunknown"
    assert {r["domain"] for r in recent} == {"example.org", "example.net", "example.com.test"}

    hard = _get(datasette + "/bouncemilter/recent_bounces.json?_shape=array&hard=1&kind=bounce")
    assert {r["address"] for r in hard} == {
        "ann@example.org",
        "ben@example.org",
        "cy@example.net",
        "fay@example.com.test",
        "gus@example.com.test",
        "old@example.org",
    }

    dead = _get(datasette + "/bouncemilter/suppression_list.json?_shape=array")
    assert "ann@example.org" in {r["address"] for r in dead}

    rates = _get(datasette + "/bouncemilter/domain_rates.json?_shape=array")
    assert rates[0]["domain"] == "example.org" and rates[0]["hard_rate"] == 0.6

    meta = _get(datasette + "/-/metadata.json")
    described = meta["databases"]["bouncemilter"]["tables"]["recent_bounces"]
    assert described["description"].startswith("Bounces, delays and complaints")
