from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import settings

from bouncemilter.store import MessageMeta

# CI must not fail by the luck of the draw: the same examples every run there (a found bug still
# fails every run); developers keep random exploration.
settings.register_profile("ci", derandomize=True)
# Commands read /etc/bouncemilter/bouncemilter.toml when there is one (deploy/setup.sh installs it): the tests
# use the embedded defaults and their own files, whatever this host has (subprocesses inherit this too).
os.environ["BOUNCEMILTER_CONFIG"] = ""
if os.environ.get("CI"):
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "sisimai-dev"


@pytest.fixture
def fixture_bytes():
    def load(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return load


def make_meta(n: int = 1, **kw: object) -> MessageMeta:
    """The envelope facts of the nth test bounce (a DSN from <> to bounces@example.com)."""
    values: dict[str, object] = dict(
        queue_id=f"4Q{n:05d}",
        client_addr="192.0.2.10",
        client_name="mx.example.net",
        helo="mx.example.net",
        envelope_from="",
        bounce_addresses=["bounces@example.com"],
        verp_recipients=[""],
        message_id=f"<dsn-{n}@mx.example.net>",
        size=2048,
        processing_ms=0.7,
    )
    values.update(kw)
    return MessageMeta(**values)  # type: ignore[arg-type]


def query_rows(db: Path | str, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    """Rows of one query on a store file, from a connection of its own (as any reader of the store)."""
    if is_pg(db):
        from bouncemilter.store import connect

        conn = connect(str(db))
    else:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- both backends


@pytest.fixture(scope="session")
def pg_server():
    """One private PostgreSQL for the session (tests/pg_rig.py), torn down after."""
    from tests.pg_rig import PgServer, bin_dir

    if bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: tests/run.sh installs the postgresql package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; tests/run.sh does)")
    server = PgServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A URL to an empty schema of its own on the session's PostgreSQL."""
    return pg_server.new_schema()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store to test on: a SQLite file, then a PostgreSQL URL (every store and CLI test runs on both)."""
    if request.param == "sqlite":
        return str(tmp_path / "bounces.db")
    return request.getfixturevalue("pg_url")


def is_pg(db: object) -> bool:
    return isinstance(db, str) and db.startswith("postgresql://")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked sqlite_only (database files, file modes, SQLite locks) runs on the SQLite backend only: its
    PostgreSQL variant is not collected."""
    keep = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("sqlite_only") and "postgres" in params.values():
            continue
        keep.append(item)
    items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test is about SQLite files; no PostgreSQL variant")


def db_connect(db: Path | str, timeout: float = 5.0):
    """A plain connection to a store on either backend, as a test reads or tampers with it (sqlite3 for a file;
    for PostgreSQL the store's adapter, which takes the same statements and returns tuples)."""
    if is_pg(db):
        from bouncemilter.store import connect

        return connect(str(db), timeout)
    return sqlite3.connect(db, timeout=timeout, isolation_level=None)
