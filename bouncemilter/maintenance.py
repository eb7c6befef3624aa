"""Lifecycle of the store: prune old rows (personal data), and a consistent online backup.

Both work beside a running milter: prune deletes in small transactions (the milter's writes wait for one
batch at most, far below its store timeout); backup copies a snapshot in one read transaction, which WAL
lets the milter write through.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store as store_db
from .store import fmt_time

PRUNE_BATCH = 1000  # messages per transaction
_OPT_OUT = "'opt-out' IN (source, category)"


def _connect(path: str, timeout: float) -> Any:
    try:
        return store_db.connect(path, timeout)
    except store_db.NoDatabase as exc:
        raise FileNotFoundError(str(exc)) from None


# The message ids that are evidence of a current suppression, into a temporary table `keep` (per engine: SQLite's
# json_each, PostgreSQL's jsonb_array_elements_text; evidence is a JSON list of recipients.id in both).
_KEEP = {
    "sqlite": [
        "CREATE TEMP TABLE IF NOT EXISTS keep (id INTEGER PRIMARY KEY)",
        "DELETE FROM temp.keep",
        """INSERT OR IGNORE INTO temp.keep SELECT r.message_id FROM recipients r WHERE r.id IN (
               SELECT CAST(e.value AS INTEGER) FROM suppressions s, json_each(s.evidence) e
               WHERE s.state = 'suppressed' AND json_valid(s.evidence))""",
    ],
    "postgres": [
        "CREATE TEMP TABLE IF NOT EXISTS keep (id BIGINT PRIMARY KEY)",
        "DELETE FROM pg_temp.keep",
        """INSERT INTO pg_temp.keep SELECT DISTINCT r.message_id FROM recipients r WHERE r.id IN (
               SELECT e.value::bigint FROM suppressions s, jsonb_array_elements_text(s.evidence::jsonb) e
               WHERE s.state = 'suppressed' AND s.evidence LIKE '[%') ON CONFLICT DO NOTHING""",
    ],
}


def prune(
    path: str,
    days: int,
    *,
    with_suppressions: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    timeout: float = 5.0,
    batch: int = PRUNE_BATCH,
) -> dict[str, Any]:
    """Delete messages (and their recipients) received more than `days` ago.

    The rows that are the evidence of a current suppression are kept, so that the list can still say why
    and rebuild-suppressions still finds it. With `with_suppressions`, suppressions last changed before the
    cutoff go too (with their log), and then their evidence as well: the address may be mailed again.
    """
    cutoff = fmt_time((now or datetime.now(UTC)) - timedelta(days=days))
    conn = _connect(path, timeout)
    out = {"cutoff": cutoff, "messages": 0, "recipients": 0, "kept_as_evidence": 0, "suppressions": 0}
    try:
        if with_suppressions:
            # an opt-out never expires: the subscriber asked, and only unsuppress lifts it (issue #11)
            old = f"updated_at < ? AND NOT (state = 'suppressed' AND {_OPT_OUT})"
            n = conn.execute(f"SELECT COUNT(*) FROM suppressions WHERE {old}", (cutoff,)).fetchone()[0]
            out["suppressions"] = int(n)
            if not dry_run:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(f"DELETE FROM suppressions WHERE {old}", (cutoff,))
                conn.execute("DELETE FROM suppression_log WHERE at < ?", (cutoff,))
                # the feed's old changes of addresses no longer suppressed, and delivered webhook bodies (the
                # cursor ids are never reused, so a consumer misses nothing it still needs)
                if store_db.has_table(conn, "suppression_changes"):
                    conn.execute(
                        """DELETE FROM suppression_changes WHERE at < ? AND address NOT IN
                               (SELECT address FROM suppressions WHERE state = 'suppressed')""",
                        (cutoff,),
                    )
                    conn.execute("DELETE FROM notify_outbox WHERE delivered_at < ?", (cutoff,))
                conn.execute("COMMIT")
        for sql in _KEEP[store_db.dialect(conn)]:
            conn.execute(sql)
        keep = "temp.keep" if store_db.dialect(conn) == "sqlite" else "pg_temp.keep"
        out["kept_as_evidence"] = conn.execute(
            f"SELECT COUNT(*) FROM messages WHERE received_at < ? AND id IN (SELECT id FROM {keep})", (cutoff,)
        ).fetchone()[0]
        doomed = f"SELECT id FROM messages WHERE received_at < ? AND id NOT IN (SELECT id FROM {keep})"
        if dry_run:
            out["messages"] = conn.execute(f"SELECT COUNT(*) FROM ({doomed}) AS d", (cutoff,)).fetchone()[0]
            out["recipients"] = conn.execute(
                f"SELECT COUNT(*) FROM recipients WHERE message_id IN ({doomed})", (cutoff,)
            ).fetchone()[0]
            return out
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [r[0] for r in conn.execute(f"{doomed} LIMIT ?", (cutoff, batch))]
                if ids:
                    marks = ",".join("?" * len(ids))
                    out["recipients"] += conn.execute(
                        f"DELETE FROM recipients WHERE message_id IN ({marks})", ids
                    ).rowcount
                    out["messages"] += conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if len(ids) < batch:
                break
        return out
    finally:
        conn.close()


def backup(path: str, dest: str, *, timeout: float = 5.0, force: bool = False) -> dict[str, Any]:
    """A consistent copy of the store at one instant, while the milter writes (sqlite3's backup API).

    A plain `cp` of a WAL database copies the main file without the committed pages still in the -wal
    file: often an empty or stale database. The copy is written beside `dest`, checked, synced to disk,
    then renamed into place, so `dest` is never a half-written file. It is a single file (no -wal).
    """
    if os.path.exists(dest) and not force:
        raise FileExistsError(f"{dest}: exists (give --force to replace it)")
    if store_db.is_url(path):  # PostgreSQL: a SQLite snapshot of one read transaction (pg_dump is the other way)
        from .store.transfer import export_sqlite

        return export_sqlite(path, dest, timeout=timeout, force=force)
    t0 = time.perf_counter()
    src = _connect(path, timeout)
    tmp = f"{dest}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)  # personal data: not world-readable
    os.close(fd)
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, i.e. one read snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy fails its check: {check}")
            counts = {
                table: dst.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("messages", "recipients", "suppressions")
            }
        finally:
            dst.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        dirfd = os.open(os.path.dirname(os.path.abspath(dest)), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        src.close()
    return {"dest": dest, "bytes": os.path.getsize(dest), "seconds": round(time.perf_counter() - t0, 3), **counts}
