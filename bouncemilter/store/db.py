"""Connections for the store's readers and the CLI, on either backend (the milter writes through `Store`)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from .core import StoreError, has_table, is_url, migrate


class NoDatabase(Exception):
    """--db names no store: a missing SQLite file, or a PostgreSQL database without the bouncemilter schema."""


class ForeignDatabase(StoreError):
    """--db names another program's SQLite database: writing would add our tables (and WAL mode) to it."""


def refuse_foreign(conn: sqlite3.Connection, db: str) -> None:
    """Raise ForeignDatabase unless the SQLite file is empty (a new store) or a bouncemilter store (any schema
    version: every one has had schema_version). Called before anything writes: opening it for writing would
    otherwise switch another program's database to WAL mode and create our tables beside its own."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' ESCAPE '^'"
        )
    ]
    if names and "schema_version" not in names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise ForeignDatabase(
            f"{db}: not a bouncemilter store: it holds {len(names)} other table(s) ({shown}); "
            "name a new file or an existing bouncemilter store instead"
        )


def display_name(db: str) -> str:
    """How messages name the store: the path, or the URL without its password."""
    if is_url(db):
        from .postgres import redact

        return redact(db)
    return db


def connect(db: str, timeout: float = 5.0, write: bool = False, read_only: bool = False) -> Any:
    """An autocommit connection to an existing store (rows by index and by name); `write` also brings the schema
    up to date, `read_only` refuses writes (SQLite mode=ro; PostgreSQL default_transaction_read_only).

    Errors are sqlite3.Error on both backends (the PostgreSQL adapter raises its errors as the sqlite3 kinds),
    so callers handle one family; a PostgreSQL server that cannot be reached raises sqlite3.OperationalError."""
    if is_url(db):
        from .postgres import connect as pg_connect

        conn = pg_connect(db, timeout, read_only=read_only)
        try:
            if write:
                migrate(conn)
            elif not has_table(conn, "messages"):
                raise NoDatabase(
                    f"{display_name(db)}: no bouncemilter store in this database (run the milter or "
                    "`bouncemilter import` with this --db first)"
                )
        except BaseException:
            conn.close()
            raise
        return conn
    if not os.path.exists(db):
        raise NoDatabase(f"{db}: no such database (give --db or store.db in --config)")
    if read_only:
        uri = "file:" + os.path.abspath(db).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(db, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        if write:
            refuse_foreign(conn, db)
            migrate(conn)
        else:
            _readable(conn, db)
    except BaseException:
        conn.close()
        raise
    return conn


def _readable(conn: sqlite3.Connection, db: str) -> None:
    """A reader that may not write the store's directory (a monitoring user in the store's group) can read a WAL
    store only while its -shm file exists, i.e. while a milter or another command has it open: SQLite must create
    that file otherwise, and says only "attempt to write a readonly database". Say what is wrong instead."""
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        folder = os.path.dirname(os.path.abspath(db))
        if "readonly" not in str(exc) or os.path.exists(db + "-shm") or os.access(folder, os.W_OK):
            raise
        conn.close()
        # Not "give the group write access to the directory": the -shm and -wal files this user's read would
        # create are then its own, mode 0640, and a milter started later cannot write them (it refuses to start).
        # Nor SQLite's immutable=1: a milter starting meanwhile would checkpoint into the file under the reader.
        raise sqlite3.OperationalError(
            f"cannot read it while nothing has it open: SQLite (WAL mode) must create {os.path.basename(db)}-shm "
            f"in {folder}, which this user may not write (read while the milter runs, run as the store's owner "
            f"{_owner(db)}, or read a copy made by `bouncemilter backup`)"
        ) from exc


def _owner(db: str) -> str:
    import pwd

    try:
        uid = os.stat(db).st_uid
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return "(the milter's user)"


__all__ = ["ForeignDatabase", "NoDatabase", "StoreError", "connect", "display_name", "refuse_foreign"]
