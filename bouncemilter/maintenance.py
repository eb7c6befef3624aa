"""Lifecycle of the store: prune old rows (personal data), and a consistent online backup.

Both work beside a running milter: prune deletes in small transactions (the milter's writes wait for one
batch at most, far below its store timeout); backup copies a snapshot in one read transaction, which WAL
lets the milter write through.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store as store_db
from .store import fmt_time
from .store import sql as Q

PRUNE_BATCH = 1000  # messages per transaction


def _connect(path: str, timeout: float) -> Any:
    try:
        return store_db.connect(path, timeout)
    except store_db.NoDatabase as exc:
        raise FileNotFoundError(str(exc)) from None


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
            n = conn.execute(Q.PRUNE_COUNT_SUPPRESSIONS, (cutoff,)).fetchone()[0]  # opt-outs never expire
            out["suppressions"] = int(n)
            if not dry_run:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(Q.PRUNE_SUPPRESSIONS, (cutoff,))
                conn.execute(Q.PRUNE_SUPPRESSION_LOG, (cutoff,))
                # the feed's old changes of addresses no longer suppressed, and delivered webhook bodies (the
                # cursor ids are never reused, so a consumer misses nothing it still needs)
                if store_db.has_table(conn, "suppression_changes"):
                    conn.execute(
                        Q.PRUNE_FEED,
                        (cutoff,),
                    )
                    conn.execute(Q.PRUNE_OUTBOX, (cutoff,))
                conn.execute("COMMIT")
        pg = store_db.dialect(conn) == "postgres"
        if not dry_run and not pg and store_db.has_table(conn, "client_suppressions"):
            # the per-client cap's minute buckets (store migration 15) count only for an hour
            stale = fmt_time((now or datetime.now(UTC)) - timedelta(hours=2))[:16]
            conn.execute(Q.PRUNE_CLIENT_SUPPRESSIONS, (stale,))
        for sql in Q.PG_PRUNE_KEEP if pg else Q.PRUNE_KEEP:
            conn.execute(sql)
        out["kept_as_evidence"] = conn.execute(Q.PG_PRUNE_KEPT if pg else Q.PRUNE_KEPT, (cutoff,)).fetchone()[0]
        if dry_run:
            count = Q.PG_PRUNE_COUNT_MESSAGES if pg else Q.PRUNE_COUNT_MESSAGES
            out["messages"] = conn.execute(count, (cutoff,)).fetchone()[0]
            count = Q.PG_PRUNE_COUNT_RECIPIENTS if pg else Q.PRUNE_COUNT_RECIPIENTS
            out["recipients"] = conn.execute(count, (cutoff,)).fetchone()[0]
            return out
        next_batch = Q.PG_PRUNE_NEXT_BATCH if pg else Q.PRUNE_NEXT_BATCH
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [r[0] for r in conn.execute(next_batch, (cutoff, batch))]
                if ids:
                    out["recipients"] += conn.execute(Q.prune_recipients(len(ids)), ids).rowcount
                    out["messages"] += conn.execute(Q.prune_messages(len(ids)), ids).rowcount
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


def check_destination(src: str, dest: str) -> None:
    """Refuse a copy's destination that renaming a new file over would destroy or make useless: a device, pipe or
    socket (`--force /dev/null` would replace the device node with a regular file) and the store itself (a milter
    writing to it would go on writing to the unlinked old file, and those bounces would be lost)."""
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OSError(exc.errno, f"{dest}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{dest}: not a regular file (the copy is written beside it and renamed over it)")
    if not store_db.is_url(src):
        for name in (src, src + "-wal", src + "-shm"):
            with contextlib.suppress(OSError):
                if os.path.samefile(name, dest):
                    raise ValueError(f"{dest}: is the store itself (or its -wal/-shm file); write the copy elsewhere")


def backup(path: str, dest: str, *, timeout: float = 5.0, force: bool = False) -> dict[str, Any]:
    """A consistent copy of the store at one instant, while the milter writes (sqlite3's backup API).

    A plain `cp` of a WAL database copies the main file without the committed pages still in the -wal
    file: often an empty or stale database. The copy is written beside `dest`, checked, synced to disk,
    then renamed into place, so `dest` is never a half-written file. It is a single file (no -wal).
    """
    check_destination(path, dest)
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
            dst.execute(Q.SQLITE_SELF_CONTAINED)  # one self-contained file
            check = dst.execute(Q.SQLITE_QUICK_CHECK).fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy fails its check: {check}")
            counts = {
                table: dst.execute(Q.count_rows(table)).fetchone()[0]
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
