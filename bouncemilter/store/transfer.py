"""Copying a whole store from one backend to the other: `migrate-store` (SQLite -> PostgreSQL, or back) and
`export --format sqlite` (a PostgreSQL store as one SQLite file, for Datasette and sqlite3).

The copy reads one snapshot of the source (a read transaction: the milter may go on writing) and writes the
destination in one transaction, so a failure leaves no half-filled store. Row ids are kept (the suppressions'
evidence lists name recipients.id), and PostgreSQL's id sequences are moved past them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import Any

from .core import Store, is_url
from .db import connect, display_name, refuse_foreign

# every table with rows of its own, parents before children (recipients name messages.id)
TABLES = ("messages", "recipients", "suppressions", "suppression_log", "pending_suppressions", "sent")
BATCH = 2000


def _columns(conn: Any, table: str) -> list[str]:
    cur = conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [c[0] for c in cur.description]


def _has(conn: Any, table: str) -> bool:
    from .core import has_table

    return has_table(conn, table)


def copy_store(src: str, dst: str, *, timeout: float = 30.0, allow_nonempty: bool = False) -> dict[str, Any]:
    """Copy every row of the store `src` into the store `dst` (created, or brought up to date, first).

    Refuses a destination that already has messages unless `allow_nonempty` (then a clash of ids fails the
    whole copy: nothing is written)."""
    t0 = time.perf_counter()
    s = connect(src, timeout, read_only=True)
    try:
        if not is_url(src):  # (connect() refuses a PostgreSQL database without our schema itself)
            # another program's SQLite file: refused before the destination is created (the copy would fail on
            # a missing table, or copy nothing of an empty file)
            refuse_foreign(s, src)
        Store(dst, timeout).close()  # the destination's schema, by its own migrations
        d = connect(dst, timeout)
    except BaseException:
        s.close()
        raise
    counts: dict[str, int] = {}
    try:
        if not allow_nonempty:
            n = d.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            if n:
                raise ValueError(f"{display_name(dst)}: already holds {n} messages (copy into an empty store)")
        # one snapshot of the source: the milter may keep writing while we copy
        s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if is_url(src) else "BEGIN")
        d.execute("BEGIN")
        try:
            for table in TABLES:
                if not _has(s, table):
                    counts[table] = 0
                    continue
                wanted = set(_columns(d, table))
                cols = [c for c in _columns(s, table) if c in wanted]
                names = ", ".join(cols)
                marks = ", ".join("?" * len(cols))
                insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"
                n = 0
                cur = s.execute(f"SELECT {names} FROM {table} ORDER BY id")
                while chunk := [tuple(r) for r in cur.fetchmany(BATCH)]:
                    d.executemany(insert, chunk)
                    n += len(chunk)
                counts[table] = n
            legacy = s.execute("SELECT COALESCE(MAX(last_id), 0) FROM dedup_legacy").fetchone()[0]
            d.execute("UPDATE dedup_legacy SET last_id = ?", (int(legacy),))
            if is_url(dst):
                for table in TABLES:
                    d.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                    )
            d.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                d.execute("ROLLBACK")
            raise
        finally:
            with contextlib.suppress(Exception):
                s.execute("COMMIT")
    finally:
        s.close()
        d.close()
    return {
        "from": display_name(src),
        "to": display_name(dst),
        **counts,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def export_sqlite(src: str, dest: str, *, timeout: float = 30.0, force: bool = False) -> dict[str, Any]:
    """The store `src` (either backend) as a new SQLite file `dest`, written beside it and renamed into place."""
    if os.path.exists(dest) and not force:
        raise FileExistsError(f"{dest}: exists (give --force to replace it)")
    tmp = f"{dest}.tmp-{os.getpid()}"
    for name in (tmp, tmp + "-wal", tmp + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    try:
        out = copy_store(src, tmp, timeout=timeout)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            conn.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        for name in (tmp, tmp + "-wal", tmp + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        raise
    out["to"] = dest
    out["dest"] = dest
    out["bytes"] = os.path.getsize(dest)
    return out
