"""Moving a store between the backends (`migrate-store`, `export --format sqlite`) and the PostgreSQL roles of
deploy/postgres/roles.sql, against real databases."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.classify import classify
from bouncemilter.cli import main
from bouncemilter.store import StoreError
from bouncemilter.store import connect as store_connect
from bouncemilter.suppressions import open_store
from tests.e2e import messages as M
from tests.pg_rig import PgServer
from tests.test_suppress_cli import HISTORY, build_db

from .conftest import make_meta, query_rows

REPO = Path(__file__).resolve().parents[1]
TABLES = ("messages", "recipients", "suppressions", "suppression_log", "pending_suppressions", "suppression_changes")


def cli(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == code, (res.output, res.exception)
    return res.output + (res.stderr if code else "")


def suppressed(db: str) -> list[dict]:
    return json.loads(cli("suppressed", "--db", db, "--format", "json"))


def counts(db: str) -> dict[str, int]:
    return {t: query_rows(db, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


def test_migrate_store_copies_everything_and_the_copy_goes_on(tmp_path: Path, pg_url: str) -> None:
    src = str(build_db(tmp_path / "bounces.db"))
    out = json.loads(cli("migrate-store", "--from", src, "--to", pg_url))
    assert out["messages"] == len(HISTORY)
    assert counts(pg_url) == counts(src)
    assert suppressed(pg_url) == suppressed(src)
    assert (
        json.loads(cli("history", "--db", pg_url, "--format", "json", "full@example.org"))["events"]
        == json.loads(cli("history", "--db", src, "--format", "json", "full@example.org"))["events"]
    )
    # the PostgreSQL store goes on from there: new ids after the copied ones, a copied message is known
    with open_store(pg_url) as store:
        mid = query_rows(src, "SELECT MAX(id) FROM messages")[0][0]
        row, inserted = store.record(make_meta(9001), classify(M.hard_bounce("after", "new@example.org")), "accept")
        assert inserted and row == mid + 1
    # a second copy into a store that has messages is refused, nothing written
    assert "already holds" in cli("migrate-store", "--from", src, "--to", pg_url, code=1)
    assert query_rows(pg_url, "SELECT COUNT(*) FROM messages")[0][0] == len(HISTORY) + 1


def test_export_sqlite_snapshot_of_a_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    build_db(pg_url)
    dest = tmp_path / "snapshot.db"
    out = json.loads(cli("export", "--db", pg_url, "--format", "sqlite", str(dest)))
    assert out["messages"] == len(HISTORY) and dest.exists()
    assert not Path(f"{dest}-wal").exists()
    assert counts(str(dest)) == counts(pg_url)
    assert suppressed(str(dest)) == suppressed(pg_url)
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
        assert {"recent_bounces", "suppression_list", "domain_rates", "daily_counts"} <= views
        assert conn.execute("SELECT COUNT(*) FROM suppression_list").fetchone()[0] == len(suppressed(pg_url))
    finally:
        conn.close()
    assert "exists" in cli("export", "--db", pg_url, str(dest), code=1)
    cli("export", "--db", pg_url, "--force", str(dest))
    # backup of a PostgreSQL store is the same snapshot
    out = cli("backup", "--db", pg_url, str(tmp_path / "backup.db"))
    assert f"{len(HISTORY)} messages" in out
    assert counts(str(tmp_path / "backup.db")) == counts(pg_url)


def test_roles_and_grants_of_deploy_postgres(pg_server: PgServer) -> None:
    pg_server.psql_file(str(REPO / "deploy" / "postgres" / "roles.sql"))
    base = f"127.0.0.1:{pg_server.port}/bouncemilter"
    owner, milter, report = (f"postgresql://bouncemilter_{r}@{base}" for r in ("owner", "milter", "report"))
    with pytest.raises(StoreError):  # the milter's role cannot create the schema
        open_store(milter, 2.0)
    assert json.loads(cli("migrate-store", "--to", owner))["schema_version"] >= 9
    with open_store(milter, 2.0) as store:  # ... but records bounces, suppressions included
        assert store.record(make_meta(1), classify(M.hard_bounce("r1", "dead@example.org")), "accept")[1]
    conn = store_connect(milter)
    try:
        for sql in ("DELETE FROM messages", "DROP TABLE sent", "CREATE TABLE x (y int)"):
            with pytest.raises(sqlite3.Error, match=r"permission denied|must be owner"):
                conn.execute(sql)
    finally:
        conn.close()
    assert [r["address"] for r in suppressed(report)] == ["dead@example.org"]
    assert "permission denied" in cli("suppress", "--db", report, "x@example.org", code=1)
    cli("suppress", "--db", owner, "x@example.org")
    assert {r["address"] for r in suppressed(report)} == {"dead@example.org", "x@example.org"}
