"""The optional sent log (`[signing] log_sent = true`): Message-ID, token and recipients of every signed message.

It lets a bounce verify that lost our return path but quotes the original's Message-ID, and tells which
recipients a message token speaks for (`verdict.Verifier`). Rows are kept `sent_retention_days`.

Outbound mail must stay cheap, so the milter only puts a row on a queue (`SentLog.add`, a few microseconds);
a writer thread commits the queue in batches (one transaction, one fsync, per batch). The sent log is evidence,
not mail: a row lost in a crash only means that one bounce of that message cannot be verified by its Message-ID.
A full queue (the store stuck for long) drops rows and says so in the log and in `dropped`, never silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import logjson
from . import store as store_db
from .store import fmt_time, utc_now

BATCH = 500  # rows per transaction at most
FLUSH_SECONDS = 0.5  # a row waits at most this long for its batch
QUEUE_MAX = 100_000
PRUNE_SECONDS = 3600.0


class SentReader:
    """Look-ups in the sent table on a connection of its own (a reader never blocks the writer in WAL mode)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _rows(self, column: str, value: str) -> list[set[str]] | None:
        if not value:
            return None
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = store_db.connect(self.path, self.timeout)  # SQLite file or PostgreSQL URL
                query = store_db.sql.SENT_BY_TOKEN if column == "token" else store_db.sql.SENT_BY_MESSAGE_ID
                rows = self._conn.execute(query, (value,))
                out = [{str(a).lower() for a in json.loads(r[0] or "[]")} for r in rows]
            except (sqlite3.Error, store_db.NoDatabase, ValueError):
                self.close_locked()
                return None  # evidence unavailable: the bounce is judged without it
        return out or None

    def by_token(self, token: str) -> list[set[str]] | None:
        return self._rows("token", token.strip().lower())

    def by_message_id(self, message_id: str) -> list[set[str]] | None:
        return self._rows("message_id", " ".join(message_id.split()))

    def close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


class SentLog(SentReader):
    """The milter's sent log: `add()` queues a row, a daemon thread writes batches through `store.record_sent`."""

    def __init__(
        self, store: Any, retention_days: int, logger: logging.Logger | None = None, metrics: Any = None
    ) -> None:
        super().__init__(store.path, store.timeout)
        self.store = store
        self.retention_days = retention_days
        self.logger = logger or logging.getLogger(logjson.LOGGER_NAME)
        self.metrics = metrics
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[tuple | None] = queue.Queue(QUEUE_MAX)
        # rows queued but not committed yet, so that a bounce that comes back at once (a local 550 turned into a
        # DSN by Postfix within milliseconds) still finds its message: (column, value) -> recipient sets
        self._pending: dict[tuple[str, str], list[set[str]]] = {}
        self._pending_lock = threading.Lock()
        self._pruned_at = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> SentLog:
        self._thread = threading.Thread(target=self._run, name="sentlog", daemon=True)
        self._thread.start()
        return self

    def add(
        self, queue_id: str, message_id: str, envelope_from: str, return_path: str, token: str, recipients: list[str]
    ) -> None:
        """Queue one signed message (never blocks, never raises)."""
        row = (
            utc_now(),
            queue_id,
            " ".join(message_id.split())[:998],
            envelope_from,
            return_path,
            token,
            json.dumps([r.lower() for r in recipients[:1000]]),
        )
        try:
            self._queue.put_nowait(row)
            recips = {r.lower() for r in recipients[:1000]}
            with self._pending_lock:
                if token:
                    self._pending.setdefault(("token", token), []).append(recips)
                if row[2]:
                    self._pending.setdefault(("message_id", row[2]), []).append(recips)
        except queue.Full:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.count("sent_log_dropped")
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logjson.event(
                    self.logger,
                    logging.WARNING,
                    "sent_log_dropped",
                    "sent log queue full (store stuck?): rows dropped, their bounces can only verify by token",
                    dropped=self.dropped,
                )

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[tuple] = []
            try:
                item = self._queue.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                item = ()
            deadline = time.monotonic() + FLUSH_SECONDS
            while item is not None:
                if item:
                    batch.append(item)
                if len(batch) >= BATCH or time.monotonic() >= deadline:
                    break
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    break
            stop = item is None
            self._write(batch)
            self._prune()

    def _write(self, batch: list[tuple]) -> None:
        if not batch:
            return
        try:
            self.store.record_sent(batch)
            self.written += len(batch)
        except Exception as exc:
            self.dropped += len(batch)
            logjson.event(
                self.logger, logging.ERROR, "sent_log_failed", f"{len(batch)} sent-log row(s) not stored: {exc}"
            )
        with self._pending_lock:
            for row in batch:
                self._pending.pop(("token", row[5]), None)
                self._pending.pop(("message_id", row[2]), None)

    def _rows(self, column: str, value: str) -> list[set[str]] | None:
        with self._pending_lock:
            pending = list(self._pending.get((column, value), ()))
        stored = super()._rows(column, value) or []
        return (pending + stored) or None

    def _prune(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._pruned_at < PRUNE_SECONDS:
            return
        self._pruned_at = now
        cutoff = fmt_time(datetime.now(UTC) - timedelta(days=self.retention_days))
        try:
            removed = self.store.prune_sent(cutoff)
        except Exception as exc:
            logjson.event(self.logger, logging.WARNING, "sent_log_prune_failed", str(exc))
            return
        if removed:
            logjson.event(self.logger, logging.INFO, "sent_log_pruned", removed=removed, before=cutoff)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
            self._thread = None
        super().close()
