"""The PostgreSQL backend: a sqlite3-shaped connection over psycopg 3, and the Store on a connection pool.

`--db`/`[store] db` name PostgreSQL with a libpq URL (``postgresql://user@host:5432/bouncemilter?sslmode=...``);
the password comes from the URL, PGPASSWORD, or a password file (PGPASSFILE, ~/.pgpass), as libpq reads them.

Why this shape:
- The store's statements are written once for both engines where SQL allows it (the parameter marks are
  translated once per statement text and cached). Where the engines differ, the statement for each engine is
  named in `bouncemilter.store` (`SQL`), so each backend's queries are in one place.
- `PgConnection` answers the part of the sqlite3 API the store and its readers use (execute, executemany,
  fetchone/fetchall, description, rowcount, lastrowid, rows by name and by index), so the suppression policy,
  reports and maintenance run unchanged on either engine inside the store's transaction.
- Exactly once across hosts: the idempotency key is a unique constraint, and a message is inserted with
  ``ON CONFLICT (dedup_key) DO NOTHING`` (two MX hosts storing the same retry at once give one row, the second
  waits for the first and then sees it). The suppression policy takes a transaction-scoped advisory lock per
  address before it reads the address's state, so two hosts updating one address serialise instead of one
  overwriting the other's evidence.
- Faults: every transaction sets ``statement_timeout`` to what is left of the caller's deadline, the pool
  wait is bounded by the same deadline, a broken connection is dropped and the write is tried once more on a
  fresh one while time remains (safe: the retry finds the key if the first COMMIT did land). Anything else is
  StoreError, and the milter answers TEMPFAIL.
"""

from __future__ import annotations

import contextlib
import functools
import re
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import FloatLoader

from .core import (
    _INSERT_MESSAGE_ONCE,
    _STORED_KEY,
    PG_MIGRATIONS,
    MessageMeta,
    RecordHook,
    Store,
    StoreError,
    _message_params,
    _recipient_params,
    _recipient_rows,
    dedup_key,
    legacy_dedup_key,
    migrate,
    utc_now,
)

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from ..classify.model import Classification

_T = TypeVar("_T")
URL_SCHEMES = ("postgresql://", "postgres://")
WRITE_LOCK = 7310317  # the advisory lock key of the store's write lock (see PgConnection.begin)
_BEGINS = {"BEGIN": False, "BEGIN IMMEDIATE": True, "BEGIN EXCLUSIVE": True, "BEGIN DEFERRED": False}
DIALECT = "postgres"
# tables whose single-row INSERT returns its new id (sqlite3's lastrowid)
_ID_TABLES = {
    "messages",
    "recipients",
    "suppressions",
    "suppression_log",
    "pending_suppressions",
    "sent",
}


def is_url(db: str | object) -> bool:
    return isinstance(db, str) and db.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://..."
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@functools.lru_cache(maxsize=1024)
def translate(sql: str, params: bool = True) -> str:
    """sqlite3 statement text -> psycopg text: ? marks become %s (a literal % doubles) when the statement has
    parameters, BEGIN IMMEDIATE is BEGIN, INSERT OR IGNORE is ON CONFLICT DO NOTHING, and a single-row INSERT
    into a table with an id returns it (for lastrowid)."""
    if params:
        out = []
        for i, part in enumerate(re.split(r"('(?:[^']|'')*')", sql)):
            if i % 2:  # a quoted literal: keep, only escape %
                out.append(part.replace("%", "%%"))
            else:
                out.append(part.replace("%", "%%").replace("?", "%s"))
        text = "".join(out)
    else:
        text = sql  # sent as it is (psycopg reads no placeholders in a statement without parameters)
    ignore = re.match(r"(?is)\s*INSERT\s+OR\s+IGNORE\s+INTO\b", text)
    if ignore:  # SQLite's INSERT OR IGNORE: skip a row that breaks a unique constraint
        text = "INSERT INTO" + text[ignore.end() :].rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    stripped = text.strip()
    if re.fullmatch(r"(?i)BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?", stripped):
        return "BEGIN"
    m = re.match(r"(?is)\s*INSERT\s+INTO\s+(\w+)\b", text)
    if (
        m
        and m.group(1) in _ID_TABLES
        and not ignore
        and not re.search(r"(?i)\bRETURNING\b", text)
        and "SELECT" not in text
    ):
        text = text.rstrip().rstrip(";") + " RETURNING id"
    return text


class Row(tuple):
    """A row by index and by column name, like sqlite3.Row (dict(row) works)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _names(cursor: Any) -> dict[str, int]:
    """Column name -> index of the cursor's result, straight from the result (psycopg's Column objects cost
    more than the query on the milter's path)."""
    res = cursor.pgresult
    return {res.fname(i).decode(): i for i in range(res.nfields)} if res is not None else {}


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    index = _names(cursor)
    return lambda values: Row(values, index)


class Cursor:
    """What sqlite3's cursor gives the store's callers: fetchone, fetchall, iteration, description, rowcount,
    lastrowid (read from the statement's RETURNING id when asked)."""

    __slots__ = ("_conn", "_cur", "_returning")

    def __init__(self, conn: PgConnection, cur: Any, returning: bool) -> None:
        self._conn = conn
        self._cur = cur
        self._returning = returning

    @property
    def rowcount(self) -> int:
        self._settle()
        return self._cur.rowcount

    def _settle(self) -> None:
        """In pipeline mode a statement's answer comes with the next sync: get it now if it has not come."""
        pipeline = self._conn.pipeline
        if pipeline is not None and self._cur.pgresult is None:
            pipeline.sync()

    @property
    def lastrowid(self) -> int | None:
        if not self._returning:
            return None
        row = self._cur.fetchone()
        return int(row[0]) if row is not None else None

    @property
    def description(self) -> list[tuple]:
        return [(name, None, None, None, None, None, None) for name in _names(self._cur)]

    def _has_rows(self) -> bool:
        self._settle()
        res = self._cur.pgresult
        return res is not None and res.nfields > 0

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._has_rows() else None

    def fetchmany(self, size: int) -> list[Any]:
        return self._cur.fetchmany(size) if self._has_rows() else []

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._has_rows() else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection in autocommit mode that takes the store's sqlite3-style statements: transactions are
    explicit BEGIN ... COMMIT, as on the SQLite side."""

    dialect = DIALECT

    def __init__(self, conn: psycopg.Connection) -> None:
        self.raw = conn
        self.row_factory: object = None  # accepted for sqlite3 compatibility: rows always work by name and index
        self.statement_timeout_ms = 0  # >0: BEGIN also sets it for the transaction
        self.pipeline: psycopg.Pipeline | None = None  # set while the store writes in pipeline mode

    def execute(self, sql: str, params: Sequence[Any] | None = None, prepare: bool | None = None) -> Cursor:
        if sql in _BEGINS:
            return self.begin(exclusive=_BEGINS[sql])
        try:
            return self._execute(translate(sql, params is not None), params, prepare)
        except psycopg.Error as exc:
            raise as_sqlite_error(exc) from exc

    def _execute(self, text: str, params: Sequence[Any] | None, prepare: bool | None) -> Cursor:
        cur = self.raw.cursor(row_factory=_row_factory)
        cur.execute(text, tuple(params) if params is not None else None, prepare=prepare)
        return Cursor(self, cur, text.endswith(" RETURNING id"))

    def begin(self, exclusive: bool) -> Cursor:
        """BEGIN, in one round trip with what the transaction needs first: the statement timeout (the rest of the
        caller's deadline), and the store's write lock. SQLite's BEGIN IMMEDIATE takes the one write lock: code
        written for it (manual changes, rebuild, approve, imports, the webhook outbox, prune) reads, decides and
        writes as if alone. Here it takes the exclusive side of one advisory lock, whose shared side every
        milter transaction (plain BEGIN) takes: milters on many hosts write side by side (per-address locks and
        the unique key keep them apart), and an admin command still has the store to itself while it runs."""
        steps = ["BEGIN"]
        if self.statement_timeout_ms > 0:
            steps.append(f"SET LOCAL statement_timeout = {int(self.statement_timeout_ms)}")
        steps.append(f"SELECT pg_advisory_xact_lock{'' if exclusive else '_shared'}({WRITE_LOCK})")
        cur = self.raw.cursor()
        try:
            cur.execute("; ".join(steps))
        except psycopg.Error as exc:
            raise as_sqlite_error(exc) from exc
        return Cursor(self, cur, False)

    def pipelined(self, work: Callable[[], _T]) -> _T:
        """Run `work` in pipeline mode: statements go out without waiting for their answers; an answer is waited
        for only when it is read (`Cursor`), so a transaction's reads and writes share few round trips. An error
        surfaces at the next sync, as psycopg.Error.

        The error is raised once pipeline mode is left (an error leaving it too is not allowed to hide it)."""
        failure: BaseException | None = None
        result: Any = None
        try:
            with self.raw.pipeline() as pipeline:
                self.pipeline = pipeline
                try:
                    result = work()
                except BaseException as exc:  # raised below, once out of pipeline mode
                    failure = exc
        except psycopg.Error as exc:  # leaving pipeline mode failed too (e.g. the connection is gone)
            if failure is None:
                failure = exc
        finally:
            self.pipeline = None
        if failure is not None:
            raise failure
        return result

    def begin_pipelined(self) -> None:
        """A milter transaction's BEGIN in pipeline mode (no multi-statement text there): the same steps as
        `begin(exclusive=False)`, as separate prepared statements."""
        raw = self.raw
        raw.execute("BEGIN")
        if self.statement_timeout_ms > 0:
            ms = str(int(self.statement_timeout_ms))
            raw.execute(_TIMEOUTS_AND_SHARED_LOCK, (ms, ms), prepare=True)
        else:
            raw.execute(_SHARED_WRITE_LOCK, prepare=True)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        text = translate(sql)
        if text.endswith(" RETURNING id"):
            text = text[: -len(" RETURNING id")]
        cur = self.raw.cursor()
        rows = [tuple(p) for p in seq]
        try:
            if rows:
                cur.executemany(text, rows)
        except psycopg.Error as exc:
            raise as_sqlite_error(exc) from exc
        return Cursor(self, cur, False)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction and not self.raw.closed:
            self.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spoke_while_idle(raw: psycopg.Connection) -> bool:
    """The server sent something to a connection no statement was waiting on: it is going away (shutdown,
    pg_terminate_backend, idle timeout: a FATAL, then EOF), so it must not be used.

    Why look (one poll, no round trip): in pipeline mode libpq reports such a message as a notice, through a
    callback that takes the GIL by PyGILState; in a pymilter thread (a thread Python did not start, whose
    callbacks run on per-connection thread states) that corrupted the interpreter's state: the milter's eom
    returned garbage instead of TEMPFAIL (tests/e2e/test_fleet_e2e.py, PostgreSQL stopped mid-run)."""
    try:
        fd = raw.pgconn.socket
    except psycopg.Error:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def as_sqlite_error(exc: psycopg.Error) -> sqlite3.Error:
    """The sqlite3 exception of the same kind, so that the store's readers handle one family of errors."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


def _configure(conn: psycopg.Connection) -> None:
    # SUM() and ROUND() give numeric: the callers expect Python numbers as sqlite3 returns them
    conn.adapters.register_loader("numeric", FloatLoader)


def connect(url: str, timeout: float = 5.0, read_only: bool = False) -> PgConnection:
    """One connection (autocommit; statements wait at most `timeout`). Raises psycopg.Error."""
    ms = max(int(timeout * 1000), 1)
    options = f"-c statement_timeout={ms} -c lock_timeout={ms}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    try:
        given = conninfo_to_dict(url).get("options") or ""  # the URL's own ?options= (e.g. a search_path) stay
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=max(int(timeout + 0.999), 2), options=f"{given} {options}".strip()
        )
    except psycopg.Error as exc:
        raise sqlite3.OperationalError(f"{redact(url)}: cannot connect: {exc}".strip()) from exc
    _configure(conn)
    return PgConnection(conn)


class _PoolState:
    """The pool and the per-connection wrappers (a wrapper per psycopg connection, created once)."""

    def __init__(self, url: str, timeout: float, size: int) -> None:
        from psycopg_pool import ConnectionPool

        self.wrappers: dict[int, PgConnection] = {}
        self.lock = threading.Lock()
        self.pool: ConnectionPool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(size, 1),
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(int(timeout + 0.999), 2)},
            configure=_configure,
            open=False,
            name="bouncemilter",
        )
        self.pool.open(wait=False)

    def wrap(self, raw: psycopg.Connection) -> PgConnection:
        with self.lock:
            w = self.wrappers.get(id(raw))
            if w is None or w.raw is not raw:
                w = self.wrappers[id(raw)] = PgConnection(raw)
            return w

    def forget(self, raw: psycopg.Connection) -> None:
        with self.lock:
            self.wrappers.pop(id(raw), None)


class PgStore(Store):
    """The Store on PostgreSQL: the same record()/record_many()/record_sent() contract (returns only after
    COMMIT, else StoreError), on a pool of connections so that the milter's sessions write in parallel."""

    dialect = DIALECT
    POOL_SIZE = 10  # connections at most: the milter's writers; a full pool waits until the deadline
    # The milter's GroupCommit writes one batch at a time (as on SQLite): measured at 10 writers on 2 cores, one
    # leader batching the others (py 0.47 + server 0.38 ms CPU per bounce, p99 12-18 ms) beat ten transactions
    # side by side (0.64 + 0.70 ms, p99 29-33 ms): concurrent transactions cost the server more (locks, WAL
    # insertion, context switches) than the round trips a batch shares.
    writers = 1

    def __init__(self, path: str, timeout: float = 5.0, policy_hook: RecordHook | None = None) -> None:
        self.path = path
        self.name = redact(path)
        self.timeout = timeout
        self.suppressions = policy_hook
        self.hooks: list[RecordHook] = [policy_hook] if policy_hook is not None else []
        self._closed = False
        self._legacy_last = 0
        self._lock = threading.Lock()  # unused by writers (the pool serialises nothing); kept for close()
        try:
            with connect(path, timeout) as conn:  # bring the schema up to date once, before the pool opens
                version = migrate(conn)
                self._legacy_last = int(
                    conn.execute("SELECT COALESCE(MAX(last_id), 0) FROM dedup_legacy").fetchone()[0]
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.name}: cannot prepare the database: {exc}") from exc
        known = max(v for v, _ in PG_MIGRATIONS)
        if version > known:
            raise StoreError(
                f"{self.name}: database schema version {version} is newer than this bouncemilter supports "
                f"({known}); upgrade bouncemilter"
            )
        self._pool = _PoolState(path, timeout, self.POOL_SIZE)

    def open_reader(self) -> Any:
        """A connection for queries (the caller closes it)."""
        return connect(self.path, self.timeout)

    def _locked(
        self, write: Callable[[Any], list[tuple[int, bool]]], deadline: float | None = None
    ) -> list[tuple[int, bool]]:
        """Run `write` (one transaction) on a pooled connection within one deadline; errors become StoreError.
        A connection found broken (server restarted, connection reset) is replaced and the write tried again
        while time remains: the idempotency key makes a second try of a landed COMMIT a no-op."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        last: BaseException | None = None
        failures = 0
        while failures < 3:
            if self._closed:
                raise StoreError(f"{self.name}: store is closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0.005:
                break
            raw = None
            try:
                with self._pool.pool.connection(timeout=remaining) as raw:
                    if _spoke_while_idle(raw):
                        # gone while idle (server restarted, connection reset): the pool drops it, and the
                        # idle ones that share its fate; not a failure of ours, the deadline still bounds us
                        raw.close()
                        with contextlib.suppress(Exception):
                            self._pool.pool.check()
                        continue
                    conn = self._pool.wrap(raw)
                    conn.statement_timeout_ms = max(int((deadline - time.monotonic()) * 1000), 1)
                    return write(conn)
            except StoreError:
                raise
            except (psycopg.Error, sqlite3.Error, OSError) as exc:
                last = exc
                failures += 1
                if raw is not None and (raw.broken or raw.closed):
                    # the server restarted or the connection was reset: drop the idle connections that share
                    # its fate, then try once more on a fresh one if the deadline allows
                    self._pool.forget(raw)
                    with contextlib.suppress(Exception):
                        self._pool.pool.check()
                    continue
                if exc.__class__.__name__ == "PoolTimeout":
                    raise StoreError(
                        f"{self.name}: no connection before the deadline (pool full or server "
                        f"unreachable; store.timeout {self.timeout:g}s): {exc}"
                    ) from exc
                raise StoreError(f"{self.name}: not stored: {_one_line(exc)}") from exc
        raise StoreError(
            f"{self.name}: not stored before the deadline (store.timeout {self.timeout:g}s)"
            + (f": {_one_line(last)}" if last else "")
        )

    def _write(self, conn: Any, items: list[tuple[MessageMeta, Classification, str]]) -> list[tuple[int, bool]]:
        """One transaction for `items`: a message whose key is stored (by any host, or earlier in the batch) is not
        inserted again; the hooks run inside the same transaction.

        Pipeline mode: BEGIN, the INSERT of a message with its recipients (one statement) and the policy's reads
        go out together and are answered in one round trip; the policy's writes and COMMIT in a second one. (A
        statement per round trip was 11 round trips per bounce; the server's work is the same.) A batch whose
        messages share no address and no key sends every message's INSERT and reads before the first answer
        (`_independent`): two round trips for the batch. Otherwise a message's reads go out after the writes of
        the one before it, which they must see: a round trip per message, and one for the COMMIT."""
        out: list[tuple[int, bool]] = []

        def work() -> None:
            conn.begin_pipelined()
            plans = [_Plan(dedup_key(meta), meta, result, action) for meta, result, action in items]
            if len(plans) > 1 and not self._legacy_last and _independent(plans):
                batch: dict[str, int] = {}  # what the batch's reads cannot see yet (the hook keeps it)
                for plan in plans:
                    self._send(conn, plan, batch)
                out.extend(self._finish(conn, plan) for plan in plans)
            else:
                for plan in plans:
                    out.append(self._write_one(conn, plan))
            conn.raw.execute("COMMIT")
            if conn.pipeline is not None:
                conn.pipeline.sync()  # COMMIT answered: durable

        try:
            conn.pipelined(work)
            return out
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise

    def _write_one(self, conn: Any, plan: _Plan) -> tuple[int, bool]:
        key, meta = plan.key, plan.meta
        if self._legacy_last and key is not None and key.startswith("m2:"):
            # a retry of a message stored (in SQLite, then migrated) before migration 6 has the old key
            row = conn.execute(
                "SELECT id FROM messages WHERE dedup_key = ? AND id <= ?",
                (legacy_dedup_key(meta), self._legacy_last),
            ).fetchone()
            if row is not None:
                return int(row[0]), False
        self._send(conn, plan, None)
        return self._finish(conn, plan)

    def _send(self, conn: Any, plan: _Plan, batch: dict[str, int] | None) -> None:
        """Send the message and its recipients in one statement, and the hooks' reads behind it, without waiting
        for the answers."""
        params = plan.params
        # the recipients' own values (not received_at, kind, the original's Message-ID: the message's) as one
        # JSON text: one parameter for any number of rows, cheaper to send than an array per column
        rows = orjson.dumps([rec[2:15] + rec[16:] for rec in plan.recs]).decode()
        plan.cursor = conn.raw.execute(
            _INSERT_MESSAGE_AND_RECIPIENTS, (*params, params[0], params[10], params[16], rows), prepare=True
        )
        for hook in self.hooks:
            prefetch = getattr(hook, "prefetch", None)
            if prefetch is not None:
                plan.prefetched[id(hook)] = prefetch(conn, plan.meta, plan.result, plan.addresses, params[0], batch)

    def _finish(self, conn: Any, plan: _Plan) -> tuple[int, bool]:
        """The INSERT's answer (the sync, with the reads behind it), then the hooks; a key stored already (by
        another host, or earlier in the batch) gives its row's id. The reads of a message not inserted only took
        locks, which COMMIT lets go."""
        row = plan.cursor.fetchone()
        if row is None:
            row = conn.execute(_STORED_KEY, (plan.key,), prepare=True).fetchone()
            return int(row[0]), False
        msg_id, ids = int(row[0]), row[1]
        self._run_hooks(conn, msg_id, plan.meta, plan.result, plan.action, plan.params, plan.recs, ids, plan.prefetched)
        return msg_id, True

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._pool.pool.close(timeout=max(self.timeout, 1.0))


class _Plan:
    """One message of a transaction: its rows' values (computed before anything is sent), then what was sent."""

    __slots__ = ("action", "addresses", "cursor", "key", "meta", "params", "prefetched", "recs", "result")

    def __init__(self, key: str | None, meta: MessageMeta, result: Classification, action: str) -> None:
        self.key = key
        self.meta = meta
        self.result = result
        self.action = action
        rows = _recipient_rows(meta, result)
        self.params = _message_params(key, meta, result, action, meta.received_at or utc_now(), len(rows))
        self.recs = _recipient_params(self.params, rows)
        self.addresses = sorted({rec[2] for rec in self.recs if rec[2]})
        self.cursor: Any = None
        self.prefetched: dict[int, Any] = {}


def _independent(plans: list[_Plan]) -> bool:
    """No two messages share an address or a key: no message's policy reads need another one's writes."""
    keys: set[str | None] = set()
    addresses: set[str] = set()
    for plan in plans:
        if plan.key in keys or not addresses.isdisjoint(plan.addresses):
            return False
        keys.add(plan.key)
        addresses.update(plan.addresses)
    return True


_SHARED_WRITE_LOCK = f"SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})"
# The transaction's timeouts (what is left of the caller's deadline), then the shared side of the write lock, in
# one statement: the subquery sets them first (a subquery with volatile functions is not flattened), and
# lock_timeout bounds this very statement's wait for the lock (it is read when a wait begins), statement_timeout
# the statements after it.
_TIMEOUTS_AND_SHARED_LOCK = (
    f"SELECT pg_advisory_xact_lock_shared({WRITE_LOCK}) FROM (SELECT set_config('lock_timeout', %s, true), "
    "set_config('statement_timeout', %s, true)) AS deadline"
)
# The message and its recipients in one statement: the recipients' values as one JSON array of rows (the same
# text for any number of recipients, so one prepared statement), inserted in their order, so that the ids
# returned in order are theirs. No row when the key is stored already (ON CONFLICT DO NOTHING).
_RECIPIENT_VALUES = (  # (column, type) of each value of a JSON row, in _recipient_params' order
    ("address", "text"), ("reported_address", "text"), ("verp_address", "text"), ("domain", "text"),
    ("action", "text"), ("status", "text"), ("reply_code", "text"), ("reason", "text"), ("hard", "int"),
    ("diagnostic", "text"), ("remote_mta", "text"), ("verified", "int"), ("note", "text"), ("flags", "text"),
    ("reason_rule", "text"),
)  # fmt: skip
_INSERT_MESSAGE_AND_RECIPIENTS = (
    "WITH m AS (" + translate(_INSERT_MESSAGE_ONCE) + "), "
    "r AS (INSERT INTO recipients (message_id, received_at, kind, original_message_id, "
    + ", ".join(name for name, _ in _RECIPIENT_VALUES)
    + ") SELECT m.id, %s, %s, %s, "
    + ", ".join(f"(u.v->>{i})::{kind}" for i, (_, kind) in enumerate(_RECIPIENT_VALUES))
    + " FROM m, json_array_elements(%s::json) WITH ORDINALITY AS u(v, n) ORDER BY u.n RETURNING id) "
    "SELECT m.id, ARRAY(SELECT id FROM r ORDER BY id) FROM m"
)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
