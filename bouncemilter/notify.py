"""The suppression webhook ([notify] url): each new suppression POSTed as JSON, HMAC-signed, from a durable outbox.

Never on the SMTP path. The milter (`bouncemilter run`, a thread beside libmilter) or `bouncemilter notify` (cron)
works the outbox in three short steps, none of which holds the database's write lock during a request:

1. **enqueue**: the new additions of the feed (`suppression_changes`, op ``add``) after the outbox's position
   (``notify_state``) become ``notify_outbox`` rows, and the position moves past them, in one transaction. The
   first run starts at the end of the feed (a new webhook is told about new suppressions; the feed has the
   rest). Changes made while nothing delivers (the milter stopped, a CLI import) wait in the feed.
2. **claim**: the rows due (not delivered, ``next_attempt_at`` reached, not claimed by another sender) are
   claimed for the length of a request, so that the milter and a cron run never post the same row at once.
3. **post** each, in order; a 2xx answer marks it delivered. Anything else records the error on the row, puts
   its next attempt off (``retry_min``, doubled per attempt up to ``retry_max``) and logs it. When the receiver
   as a whole is unavailable (no answer: refused, timeout, TLS; or a 5xx, 408, 429) the rows behind it wait as
   long and the pass ends, so that they arrive in order and a receiver that is down is not hammered; a 4xx or a
   redirect concerns that one request, and the others go on. A delivery is never given up.

So nothing is lost across restarts or outages: a suppression is in the feed as soon as it is committed, and in
the outbox until the receiver said 2xx. Delivery is at least once: a sender that dies after the receiver got
the body but before it recorded the answer posts it again once its claim expires. The receiver deduplicates on
``id`` (also the ``X-Bouncemilter-Delivery`` header).

The request: ``POST url``, ``Content-Type: application/json``, ``X-Bouncemilter-Delivery: <id>``,
``X-Bouncemilter-Signature: sha256=<hex HMAC-SHA256 of the exact body with the secret>``; the body:
``{"id", "event": "suppression.added", "address", "category", "source", "reason", "summary", "suppressed_at",
"changed_at"}``. The body is built once, when queued, so every attempt signs the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import __version__, logjson
from . import store as store_db
from .store import fmt_time
from .store import sql as Q

SECRET_MIN = 16  # bytes of HMAC key
BATCH = 200  # rows claimed per pass
CLAIM_SLACK = 5.0  # seconds a claim outlives the request timeout
SIGNATURE_HEADER = "X-Bouncemilter-Signature"
DELIVERY_HEADER = "X-Bouncemilter-Delivery"


class NotifyError(Exception):
    """The webhook cannot work at all (no secret): nothing is sent, nothing is lost."""


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """For receivers (and the tests): constant-time comparison of the signature header."""
    return hmac.compare_digest(sign(secret, body), signature.strip())


def read_secret(path: str) -> bytes:
    """The HMAC key. Refused, like the signing keys, when every local user may read it: whoever holds it can
    post suppressions the application believes."""
    from .regularfile import open_regular

    try:
        with open(open_regular(path), "rb") as fh:  # a FIFO or a device is an error, not a hang
            mode = os.fstat(fh.fileno()).st_mode
            secret = fh.read().strip()
    except OSError as exc:
        raise NotifyError(f"notify.secret_file: {path}: cannot read: {exc.strerror or exc}") from None
    if mode & stat.S_IROTH:
        raise NotifyError(
            f"notify.secret_file: {path}: readable by every local user (mode {stat.S_IMODE(mode):04o}); chmod 0640 it"
        )
    if len(secret) < SECRET_MIN:
        raise NotifyError(f"notify.secret_file: {path}: the key must be at least {SECRET_MIN} bytes")
    return secret


def backoff(attempts: int, lo: float, hi: float) -> float:
    """Seconds before the next attempt after `attempts` failures: lo, 2 lo, 4 lo ... at most hi."""
    return min(hi, lo * (2 ** min(max(attempts - 1, 0), 40)))


def _receiver_down(error: str) -> bool:
    """No answer, a 5xx, 408 or 429: the receiver as a whole cannot take anything now. (A 4xx or a redirect is
    about this request: the others may still go.)"""
    if error.startswith("no answer"):
        return True
    code = error.removeprefix("HTTP ").partition(":")[0]
    return code.isdigit() and (int(code) >= 500 or int(code) in (408, 429))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body: a redirect is a failure to report
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST and return the HTTP status; raises OSError (urllib.error.URLError is one) when there is none."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            resp.read(65536)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            exc.read(65536)
        exc.close()
        return int(exc.code)


@dataclass
class PassResult:
    queued: int = 0  # new outbox rows
    delivered: int = 0
    failed: int = 0
    waiting: int = 0  # undelivered rows after the pass
    error: str = ""  # the last failure
    delivered_ids: list[int] = field(default_factory=list)


class Notifier:
    """Works the outbox of one database for one URL. `poster` and `clock` are injectable for tests."""

    def __init__(
        self,
        db: str,
        settings: Any,  # config.Settings, or a callable returning the current ones
        logger: logging.Logger | None = None,
        poster: Callable[[str, bytes, dict[str, str], float], int] = post,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        db_timeout: float = 5.0,
    ) -> None:
        self.db = db
        self._settings = settings
        self.logger = logger or logging.getLogger(logjson.LOGGER_NAME)
        self.poster = poster
        self.clock = clock
        self.db_timeout = db_timeout
        self.failures = 0  # consecutive failed attempts: the pause before the next pass

    # -- database steps (short transactions) ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return store_db.connect(self.db, self.db_timeout)  # a SQLite file or a PostgreSQL URL

    @property
    def settings(self) -> Any:
        """The current settings (a callable given to the constructor is asked each time: a reload applies)."""
        return self._settings() if callable(self._settings) else self._settings

    def start(self) -> int:
        """The outbox's position in the feed, set to the end of the feed on the first run. The milter calls it
        before it listens, so that nothing suppressed after its start is taken for history."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                position = self._position(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return position
        finally:
            conn.close()

    def _position(self, conn: sqlite3.Connection) -> int:
        """Inside the caller's transaction: the position, created at the end of the feed when there is none."""
        row = conn.execute(Q.NOTIFY_CURSOR).fetchone()
        if row is not None:
            return int(row[0])
        position = store_db.last_feed_id(conn)
        conn.execute(Q.NOTIFY_CURSOR_INSERT, (str(position),))
        logjson.event(
            self.logger,
            logging.INFO,
            "notify_start",
            "the webhook announces suppressions from now on; the feed has the earlier ones",
            after_change=position,
        )
        return position

    def enqueue(self, conn: sqlite3.Connection) -> int:
        """New additions of the feed into the outbox, and the position past them (one transaction)."""
        now = fmt_time(self.clock())
        conn.execute("BEGIN IMMEDIATE")
        try:
            position = self._position(conn)
            changes = conn.execute(
                Q.FEED_TO_NOTIFY,
                (position, store_db.last_feed_id(conn)),  # ids up to it are final (see feed.py)
            ).fetchall()
            queued = 0
            for c in changes:
                if c["op"] != "add" or not c["notify"]:
                    continue
                body = json.dumps(
                    {
                        "id": c["id"],
                        "event": "suppression.added",
                        "address": c["address"],
                        "category": c["category"],
                        "source": c["source"],
                        "reason": c["reason"],
                        "summary": c["summary"],
                        "suppressed_at": c["suppressed_at"],
                        "changed_at": c["at"],
                    },
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                queued += conn.execute(
                    Q.OUTBOX_ADD,
                    (c["id"], c["address"], body, now, now),
                ).rowcount
            if changes:
                conn.execute(
                    Q.NOTIFY_CURSOR_SET,
                    (str(changes[-1]["id"]),),
                )
            conn.execute("COMMIT")
            return queued
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def claim(self, conn: sqlite3.Connection, retry_now: bool = False) -> list[sqlite3.Row]:
        now = self.clock()
        stamp = fmt_time(now)
        until = fmt_time(now + timedelta(seconds=float(self.settings.notify_timeout) + CLAIM_SLACK))
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                Q.outbox_claimable(retry_now), (stamp, stamp, BATCH) if not retry_now else (stamp, BATCH)
            ).fetchall()
            conn.executemany(Q.OUTBOX_CLAIM, [(until, r["id"]) for r in rows])
            conn.execute("COMMIT")
            return rows
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _settle(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _release(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        if ids:
            self._settle(conn, Q.outbox_release(len(ids)), tuple(ids))

    # -- one pass -----------------------------------------------------------------------------------------------

    def run_once(self, retry_now: bool = False, stop: threading.Event | None = None) -> PassResult:
        """Queue what is new, post what is due (in order; a receiver that is down ends the pass). Raises NotifyError
        when no secret can be read, sqlite3.Error when the database fails: nothing is lost either way."""
        out = PassResult()
        conn = self._connect()
        try:
            out.queued = self.enqueue(conn)
            secret = read_secret(self.settings.notify_secret_file)
            rows = self.claim(conn, retry_now)
            for i, row in enumerate(rows):
                if stop is not None and stop.is_set():  # shutting down: the rest stays for the next start
                    self._release(conn, [r["id"] for r in rows[i:]])
                    break
                error = self._post(secret, row)
                now = self.clock()
                if not error:
                    self._settle(
                        conn,
                        Q.OUTBOX_DELIVERED,
                        (fmt_time(now), fmt_time(now), row["id"]),
                    )
                    self.failures = 0
                    out.delivered += 1
                    out.delivered_ids.append(int(row["id"]))
                    logjson.event(
                        self.logger,
                        logging.INFO,
                        "notify_delivered",
                        id=row["id"],
                        address=row["address"],
                        attempts=row["attempts"] + 1,
                    )
                    continue
                attempts = row["attempts"] + 1
                wait = backoff(attempts, self.settings.notify_retry_min, self.settings.notify_retry_max)
                later = fmt_time(now + timedelta(seconds=wait))
                self._settle(
                    conn,
                    Q.OUTBOX_FAILED,
                    (attempts, fmt_time(now), error[:500], later, row["id"]),
                )
                down = _receiver_down(error)
                if down:
                    # the receiver is down or overloaded: the rest wait as long, so that they arrive in order after
                    # this one, and the receiver is not hammered
                    rest = [r["id"] for r in rows[i + 1 :]]
                    self._release(conn, rest)
                    self._settle(
                        conn,
                        Q.OUTBOX_DEFER_OTHERS,
                        (later, later, row["id"]),
                    )
                    self.failures += 1
                out.failed += 1
                out.error = error
                waiting = self.waiting(conn)
                logjson.event(
                    self.logger,
                    logging.WARNING,
                    "notify_failed",
                    f"POST {self.settings.notify_url}: {error}; kept in the outbox, next attempt in {wait:g} s",
                    id=row["id"],
                    address=row["address"],
                    attempts=attempts,
                    retry_in=wait,
                    waiting=waiting,
                )
                if down:
                    break
            out.waiting = self.waiting(conn)
            return out
        finally:
            conn.close()

    def _post(self, secret: bytes, row: sqlite3.Row) -> str:
        """ "" when the receiver took it (2xx), else why not."""
        body = row["body"].encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"bouncemilter/{__version__}",
            DELIVERY_HEADER: str(row["id"]),
            SIGNATURE_HEADER: sign(secret, body),
        }
        try:
            status = self.poster(self.settings.notify_url, body, headers, float(self.settings.notify_timeout))
        except (OSError, ValueError) as exc:  # refused, unreachable, timeout, TLS, a bad URL
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, OSError) and reason.strerror:
                reason = reason.strerror
            return f"no answer: {reason}"
        if 200 <= status < 300:
            return ""
        if 300 <= status < 400:
            return f"HTTP {status}: a redirect (notify.url must name the final URL)"
        return f"HTTP {status}"

    @staticmethod
    def waiting(conn: sqlite3.Connection) -> int:
        return int(conn.execute(Q.OUTBOX_WAITING).fetchone()[0])

    def pause(self) -> float:
        """Seconds to wait before the next pass: the interval, or the backoff after failures."""
        if self.failures:
            return backoff(self.failures, self.settings.notify_retry_min, self.settings.notify_retry_max)
        return float(self.settings.notify_interval)

    def loop(self, stop: threading.Event) -> None:
        """Passes until `stop` is set (the milter's thread, `bouncemilter notify --watch`). Never raises."""
        while not stop.is_set():
            try:
                self.run_once(stop=stop)
            except NotifyError as exc:
                self.failures += 1
                logjson.event(self.logger, logging.ERROR, "notify_failed", f"{exc}; nothing sent, nothing lost")
            except sqlite3.Error as exc:
                self.failures += 1
                logjson.event(self.logger, logging.ERROR, "notify_failed", f"{self.db}: {exc}; will try again")
            except Exception as exc:  # a bug must not end the thread: the outbox would silently stop
                self.failures += 1
                logjson.event(
                    self.logger, logging.ERROR, "notify_failed", f"{type(exc).__name__}: {exc}", exc_info=True
                )
            stop.wait(self.pause())


def status(conn: sqlite3.Connection) -> dict[str, Any]:
    """The outbox at a glance (`bouncemilter notify --status`)."""
    row = conn.execute(Q.OUTBOX_STATUS).fetchone()
    cur = conn.execute(Q.OUTBOX_WAITING_ROWS)
    found = cur.fetchone()
    last = dict(zip([c[0] for c in cur.description], found, strict=True)) if found is not None else None
    position = conn.execute(Q.NOTIFY_CURSOR).fetchone()
    return {
        "queued_total": int(row[0]),
        "delivered": int(row[1]),
        "waiting": int(row[2]),
        "oldest_waiting": row[3],
        "last_failure": last,
        "after_change": int(position[0]) if position else None,
    }
