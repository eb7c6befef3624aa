"""The suppression list in SQLite: the Store hook, manual changes, rebuild from history, and the queries.

Tables (store migration 2):
``suppressions``: one row per address that is or was suppressed.
  address (unique, lower case), domain, state (suppressed|unsuppressed), source (policy|manual), category (hard|
  complaint|soft|manual), reason (Sisimai reason, feedback type, or the manual reason), status, summary (one line
  for people and the Postfix reject text), suppressed_at (when it became suppressed), first_evidence_at,
  last_evidence_at, evidence (JSON list of recipients.id that caused it and later counted events), soft_score and
  soft_days (the Mailman-style score when it was decided), created_at, updated_at, manual_by, manual_reason,
  manual_at (the last manual action).
``suppression_log``: address, at, action (suppress|unsuppress|lift), source (policy|manual|rebuild), by, why.

Why this shape: the policy (`policy.decide`) is pure and replays one address's events, so the hook, `rebuild`
and `history` all give the same answer. The hook runs inside `Store.record()`'s transaction, so a bounce and the
suppression it causes commit or roll back together. A manual unsuppression is a row in state ``unsuppressed``
whose `manual_at` hides older evidence from the policy, which is how it survives `rebuild`.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .classify.address import canonical, lookalike
from .policy import (
    COUNTED,
    COUNTING_KINDS,
    Decision,
    Event,
    Policy,
    classify_event,
    decide,
    parse_time,
    time_text,
)
from .store import sql as Q
from .store.core import Store, _json_list, fmt_time, has_column, has_table, utc_now
from .store.db import NoDatabase, connect

if TYPE_CHECKING:
    from .classify.model import Classification
    from .store.core import MessageMeta

EVIDENCE_CAP = Q.EVIDENCE_CAP  # ids kept per address: the trigger first, then the most recent


def _event(row: Iterable[Any]) -> Event:
    rid, at, kind, reason, hard, status, feedback_type, verified = row
    checked = None if verified is None else bool(verified)
    # tuple.__new__: what Event(...) does, without the named tuple's __new__ in Python
    return _new_tuple(
        Event, (int(rid), parse_time(at), kind, reason or "", bool(hard), status or "", feedback_type or "", checked)
    )


_new_tuple = tuple.__new__


def get_row(conn: sqlite3.Connection, address: str) -> dict[str, Any] | None:
    cur = conn.execute(Q.SUPPRESSION_ROW, (address,))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([c[0] for c in cur.description], row, strict=True))


def _cap(ids: list[int]) -> list[int]:
    if len(ids) <= EVIDENCE_CAP:
        return ids
    half = EVIDENCE_CAP // 2
    return ids[:half] + ids[-half:]


def _evidence_json(ids: list[int]) -> str:
    """json.dumps(_cap(ids)), built by hand for a list of ints (the json module's encoder is ~15,000
    instructions a call, and every new suppression writes two lists)."""
    if len(ids) == 1 and type(ids[0]) is int:  # a hard bounce's suppression: its one event
        return f"[{ids[0]}]"
    ids = _cap(ids)
    if all(type(i) is int for i in ids):
        return "[" + ", ".join(map(str, ids)) + "]"
    return json.dumps(ids)


_day_shift: tuple[str, int, str] = ("", 0, "")  # the last (date, days, the date that many days before)


def days_before(text: str, days: int) -> str:
    """fmt_time(parse_time(text) - timedelta(days=days)) for the store's text (fmt_time's form): whole days in UTC
    move the date only, and the date a bounce's policy read starts from is the same all day."""
    global _day_shift
    shift = _day_shift  # one read: another thread may replace it meanwhile
    if shift[0] != text[:10] or shift[1] != days:
        shift = _day_shift = (text[:10], days, (date.fromisoformat(text[:10]) - timedelta(days=days)).isoformat())
    return shift[2] + text[10:]


def _t(dt: datetime | None) -> str | None:
    # a decision's times are its events' times, read from the store's text: that text, not formatted again
    return (time_text(dt) or fmt_time(dt)) if dt else None


def _log(
    conn: sqlite3.Connection,
    address: str,
    at: str,
    action: str,
    source: str,
    by: str = "",
    why: str = "",
    client: str = "",
) -> None:
    if client:  # the SMTP client the evidence came from: the per-client cap counts these (migration 5)
        conn.execute(
            Q.LOG_WITH_CLIENT,
            (address, at, action, source, by[:200], why[:1000], client[:100]),
        )
        return
    conn.execute(
        Q.LOG,
        (address, at, action, source, by[:200], why[:1000]),
    )


def address_flags(address: str) -> str:
    """The row's `flags`: "lookalike" for a mixed-script look-alike address (classify/address.py), else ""."""
    return "lookalike" if lookalike(address) else ""


def source_of(category: str) -> str:
    """The suppression's source for a policy decision: an opt-out is the subscriber's own (issue #11)."""
    return "opt-out" if category == "opt-out" else "policy"


def _decision_columns(d: Decision) -> tuple:
    """A decision's columns as the suppressions and pending_suppressions rows hold them, in table order."""
    at = d.suppressed_at
    text = _t(at)
    # a hard bounce's three times are one event's: one text
    first = text if d.first_evidence_at is at else _t(d.first_evidence_at)
    last = text if d.last_evidence_at is at else _t(d.last_evidence_at)
    days = _json_list(d.soft_days) if d.soft_days else "[]"
    evidence = _evidence_json(d.evidence)
    return (d.category, d.reason, d.status, d.summary, text, first, last, evidence, d.soft_score, days)


def _write_policy(
    conn: sqlite3.Connection, address: str, d: Decision, stamp: str, logged_for: str | None = None
) -> None:
    """Insert or turn the row into a policy suppression (keeping created_at and the last manual action).
    `logged_for` (PostgreSQL): with its suppression_log line (the client it came from) in the same statement."""
    params = (
        address,
        address.rpartition("@")[2],
        source_of(d.category),
        *_decision_columns(d),
        stamp,
        stamp,
        address_flags(address),
    )
    if logged_for is not None:
        log = (address, stamp, "suppress", "policy", "", d.summary[:1000], logged_for[:100])
        conn.execute(Q.PG_WRITE_POLICY_LOGGED, params + log, prepare=True)
        return
    conn.execute(Q.WRITE_POLICY, params)


# ------------------------------------------------------------------------------------------------ the Store hook


class SuppressionHook:
    """`Store.hooks` entry: applies the policy to the addresses of each recorded bounce or complaint.

    The store calls `recorded` with the message's recipients as the policy reads them (the values it just
    inserted, so nothing is read back). On PostgreSQL it first calls `prefetch` before it waits for its
    INSERT's answer: the reads the policy needs go to the server in the same round trip (pipeline mode)."""

    def __init__(self, policy: Policy | None = None, clock: Callable[[], str] = utc_now) -> None:
        self.policy = policy or Policy()
        self.clock = clock

    def __call__(
        self, conn: sqlite3.Connection, msg_id: int, meta: MessageMeta, result: Classification, action: str
    ) -> None:
        """The hook called plainly: reads the message's recipients back (`recorded` is what the store calls)."""
        if result.kind in COUNTING_KINDS and meta.bounce_addresses:
            self.recorded(conn, msg_id, meta, result, conn.execute(Q.HOOK_ROWS, (msg_id,)).fetchall())

    def prefetch(
        self,
        conn: sqlite3.Connection,
        meta: MessageMeta,
        result: Classification,
        addresses: list[str],
        at: str,
        batch: dict[str, int] | None = None,
    ) -> Prefetched | None:
        """PostgreSQL, pipeline mode: send what `recorded` will read for `addresses` (sorted) of a message received
        `at` - each address's lock, state and recent events, and the client's count for the cap - as one statement
        (sql.PG_POLICY_READS), without waiting for its answer. Sent after the INSERT of the rows, so the events
        read include them. `batch`: the reads of several messages went out before any of their writes (they share
        no address): per client, the suppressions the batch made since, which the count read cannot see."""
        if result.kind not in COUNTING_KINDS or not meta.bounce_addresses or not addresses:
            return None
        stamp = self.clock()
        client = "" if meta.internal else meta.client_addr
        if not self.policy.max_new_per_client_hour:
            client = ""  # no per-client cap: nothing to count
        since = fmt_time(parse_time(at) - timedelta(days=self.policy.soft_window_days + 1))
        cur = conn.execute(Q.PG_POLICY_READS, (addresses, since, client, cap_window(stamp)), prepare=True)
        return Prefetched(stamp, addresses, cur, batch)

    def recorded(
        self,
        conn: sqlite3.Connection,
        msg_id: int,
        meta: MessageMeta,
        result: Classification,
        rows: list[tuple],
        pre: Prefetched | None = None,
    ) -> None:
        """Apply the policy after message `msg_id` was inserted; `rows`: its recipients (address, then the
        columns of sql.EVENT_COLUMNS) in id order; `pre`: what `prefetch` sent for them."""
        if result.kind not in COUNTING_KINDS or not meta.bounce_addresses:
            return
        client = "" if meta.internal else meta.client_addr
        reads: dict[str, Any] = {}
        if pre is None:
            stamp = self.clock()
            gate = Gate(conn, self.policy, client, msg_id, stamp)
        else:
            stamp = pre.stamp
            count, found = pre.cursor.fetchone()[0]
            reads = dict(zip(pre.addresses, found, strict=True))
            if count is not None and pre.batch:  # suppressions earlier in the batch, sent after this read
                count += pre.batch.get(client, 0)
            gate = Gate(conn, self.policy, client, msg_id, stamp, count)
        if len(rows) == 1:  # the usual bounce: one address
            row = rows[0]
            update_address(conn, row[0], [_event(row[1:])], self.policy, stamp, gate, reads.get(row[0]))
        else:
            for address, group in itertools.groupby(sorted(rows, key=_ADDRESS), key=_ADDRESS):
                events = [_event(r[1:]) for r in group]
                update_address(conn, address, events, self.policy, stamp, gate, reads.get(address))
        if pre is not None and pre.batch is not None and gate.new and client:
            pre.batch[client] = pre.batch.get(client, 0) + gate.new


_ADDRESS = itemgetter(0)


class Prefetched:
    """The reads `SuppressionHook.prefetch` sent: the policy's clock, the addresses, and the cursor whose answer
    comes with the next sync."""

    __slots__ = ("addresses", "batch", "cursor", "stamp")

    def __init__(self, stamp: str, addresses: list[str], cursor: Any, batch: dict[str, int] | None) -> None:
        self.stamp = stamp
        self.addresses = addresses
        self.cursor = cursor
        self.batch = batch


_window: tuple[str, str] = ("", "")  # the last (minute, window start): one parse per minute of the clock


def cap_window(stamp: str) -> str:
    """Where the per-client cap's hour starts for the policy clock's `stamp`: the minute an hour before it
    (2026-05-09T06:35 for 07:35:25.123Z), so the count covers an hour and the part of a minute before it. The
    buckets of store migration 15 count per minute; PostgreSQL counts its log rows over the same window."""
    global _window
    window = _window  # one read: another thread may replace it meanwhile
    if window[0] != stamp[:16]:
        window = _window = (stamp[:16], fmt_time(parse_time(stamp) - timedelta(hours=1))[:16])
    return window[1]


class Gate:
    """The caps on NEW suppressions for one recorded message (defence in depth beside signed return paths).

    One forged report naming thousands of addresses must not suppress them all: past `max_new_per_message` new
    suppressions from this message, or past `max_new_per_client_hour` from this SMTP client within the last
    hour (counted in suppression_log; the hour starts at the beginning of the minute an hour before the policy's
    clock, `cap_window`), a new suppression is held as pending for an admin to approve or reject.
    Addresses already suppressed only gain evidence and are never held. Postfix's own bounces and imported
    mailboxes have no client (""): only the per-message cap applies to them.
    """

    def __init__(
        self, conn: sqlite3.Connection, policy: Policy, client: str, msg_id: int, stamp: str, count: Any = None
    ) -> None:
        self.conn = conn
        self.policy = policy
        self.client = client
        self.msg_id = msg_id
        self.stamp = stamp
        self.new = 0  # suppressions this message made
        # the client's suppressions in the last hour (read when needed, or given: PostgreSQL's prefetch)
        self._client_count: int | None = count

    def held_because(self) -> str:
        """Why the next new suppression must wait for an admin ("" = it may happen now)."""
        per_message, per_client = self.policy.max_new_per_message, self.policy.max_new_per_client_hour
        if per_message and self.new >= per_message:
            return f"per-message cap: more than {per_message} new suppressions from one report"
        if self.client and per_client:
            if self._client_count is None:
                sqlite = type(self.conn) is sqlite3.Connection
                sql = Q.CLIENT_SUPPRESSIONS_SINCE if sqlite else Q.PG_CLIENT_SUPPRESSIONS_SINCE
                self._client_count = self.conn.execute(sql, (self.client, cap_window(self.stamp))).fetchone()[0]
            if self._client_count >= per_client:
                return f"per-client cap: more than {per_client} new suppressions from {self.client} within an hour"
        return ""

    def counts(self) -> bool:
        """Whether the client's count is still to be read (SQLite reads it with the policy's other reads)."""
        return self._client_count is None and bool(self.client) and bool(self.policy.max_new_per_client_hour)

    def count(self, value: int) -> None:
        self._client_count = value

    def suppressed(self) -> None:
        self.new += 1
        if self._client_count is not None:
            self._client_count += 1


def update_address(
    conn: sqlite3.Connection,
    address: str,
    new: list[Event],
    policy: Policy,
    stamp: str,
    gate: Gate | None = None,
    pre: list[Any] | None = None,
) -> None:
    """Apply the policy after `new` events for `address` were inserted (inside the caller's transaction).
    With a `gate`, a new suppression past its caps is held as pending instead. `pre`: what PG_POLICY_READS read
    for the address under its lock (state, manual_at, held, its events since the soft window's start)."""
    pg = type(conn) is not sqlite3.Connection  # once: the SQLite milter's path pays one comparison for it
    now = new[0].at if len(new) == 1 else max(e.at for e in new)
    days = policy.soft_window_days + 1
    text = time_text(now)
    history: list[Any] | None = None
    if pre is not None:
        row = pre
    elif pg:
        _lock_address(conn, address)
        row = conn.execute(Q.ADDRESS_STATE, (address, address)).fetchone()  # one statement: state, manual_at, held
    else:
        # one statement: the history since the soft window's start, the state, and the client's count
        counting = gate is not None and gate.counts()
        start = days_before(text, days) if text is not None else fmt_time(now - timedelta(days=days))
        params = (
            gate.client if counting else "",
            cap_window(stamp) if counting else "",
            address,
            address,
            address,
            start,
        )
        history = conn.execute(Q.POLICY_READS, params).fetchall()
        if history:
            row = history[0][8:]
            if counting:
                gate.count(row[3])
        else:  # suppressed or held (POLICY_READS reads no history then), or, never, no counting event read back
            row = conn.execute(Q.ADDRESS_STATE, (address, address)).fetchone()
    suppressed = row[0] == "suppressed"
    pending = not suppressed and bool(row[2])
    if suppressed or pending:
        # sticky (and a held suppression stays held until decided): further counting events only add evidence
        counted = [e for e in new if classify_event(e, policy) in COUNTED]
        if counted:
            last = _t(max(e.at for e in counted))
            if pg:
                sql = Q.PG_ADD_PENDING_EVIDENCE if pending else Q.PG_ADD_EVIDENCE
            else:
                sql = Q.ADD_PENDING_EVIDENCE if pending else Q.ADD_EVIDENCE
            conn.executemany(sql, [(e.id, last, stamp, address) for e in counted])
        if suppressed and any(e.kind == "opt_out" for e in counted):
            _opt_out_over(conn, address, stamp)
        return
    after = parse_time(row[1]) if row[1] else None
    # only the soft window can matter for an address that is not suppressed yet (hard/complaint are in `new`)
    if after is None and text is not None:
        since = days_before(text, days)
    else:
        lower = now - timedelta(days=days)
        if after is not None and after > lower:
            lower = after
        since = _t(lower)
    # the events just inserted are read again: the ones made of them serve (the same values)
    known = {e.id: e for e in new}
    if pre is not None:  # read from the soft window's start: keep what LOAD_EVENTS would read
        events = [known.get(r[0]) or _event(r) for r in pre[3] if r[1] >= since]
    elif history is not None:  # the same, read from the window's start before the manual action was known
        events = [known.get(r[0]) or _event(r[:8]) for r in history if r[1] >= since]
    else:
        events = [known.get(r[0]) or _event(r) for r in conn.execute(Q.LOAD_EVENTS, (address, since)).fetchall()]
    d = decide(events, policy, now, after, explain=False)
    if not d.suppress:
        return
    held = gate.held_because() if gate is not None else ""
    if held:
        assert gate is not None
        _write_pending(conn, address, d, stamp, held, gate.client, gate.msg_id)
        _log(conn, address, stamp, "hold", "policy", why=f"{d.summary}; held: {held}", client=gate.client)
        return
    client = gate.client if gate else ""
    if pg:  # one statement for both
        _write_policy(conn, address, d, stamp, logged_for=client)
    else:
        _write_policy(conn, address, d, stamp)
        _log(conn, address, stamp, "suppress", "policy", why=d.summary, client=client)
    if gate is not None:
        gate.suppressed()


def _opt_out_over(conn: sqlite3.Connection, address: str, stamp: str) -> None:
    """An address suppressed for another reason asks to be removed: the suppression becomes an opt-out (the
    subscriber's own decision, kept by rebuilds and announced in the feed as an update)."""
    summary = Decision(suppress=True, category="opt-out").summary
    cur = conn.execute(
        Q.OPT_OUT_OVER,
        (summary, stamp, address),
    )
    if cur.rowcount:
        _log(conn, address, stamp, "suppress", "opt-out", why=summary)


def _lock_address(conn: sqlite3.Connection, address: str) -> None:
    """PostgreSQL: serialise policy updates of one address across hosts until this transaction ends (SQLite has
    one writer at a time already). The second host then reads the first one's suppression and evidence."""
    conn.execute(Q.LOCK_ADDRESS, (address,))


def _write_pending(
    conn: sqlite3.Connection, address: str, d: Decision, stamp: str, held: str, client: str, msg_id: int
) -> None:
    conn.execute(
        Q.WRITE_PENDING,
        (
            address,
            address.rpartition("@")[2],
            *_decision_columns(d),
            held,
            client,
            msg_id,
            address_flags(address),
            stamp,
            stamp,
        ),
    )


# ------------------------------------------------------------------------------------------------ manual changes


def suppress(
    conn: sqlite3.Connection, address: str, reason: str, by: str, stamp: str | None = None, source: str = "manual"
) -> bool:
    """Manual suppression (survives rebuilds); False if it already was suppressed so by hand.

    `source` "opt-out": the subscriber asked (a one-click unsubscribe, a request by phone), category opt-out."""
    return suppress_many(conn, [address], reason, by, stamp, source) == 1


SOURCES = ("manual", "opt-out")  # what `suppress --source` may say


def suppress_many(
    conn: sqlite3.Connection,
    addresses: Iterable[str],
    reason: str,
    by: str,
    stamp: str | None = None,
    source: str = "manual",
) -> int:
    """suppress() for many addresses in one transaction (all or none); returns how many changed."""
    if source not in SOURCES:
        raise ValueError(f"{source!r}: must be one of {', '.join(SOURCES)}")
    stamp = stamp or utc_now()
    reason = reason.strip() or source
    changed = 0
    with _transaction(conn):
        for address in addresses:
            addr = canonical(address).address or address.strip().lower()
            changed += _suppress_one(conn, addr, reason, by, stamp, source)
    return changed


def _suppress_one(
    conn: sqlite3.Connection, address: str, reason: str, by: str, stamp: str, source: str = "manual"
) -> bool:
    """One manual suppression inside the caller's transaction; False if it already was suppressed so by hand."""
    row = get_row(conn, address)
    # an opt-out already holds: a manual suppression adds nothing to the subscriber's own decision
    changed = not (row and row["state"] == "suppressed" and row["source"] in (source, "opt-out"))
    category = "opt-out" if source == "opt-out" else "manual"
    summary = f"opted out: {reason}" if source == "opt-out" else f"suppressed manually: {reason}"
    if row is not None and row["state"] == "suppressed" and source == "manual":
        # already suppressed by the policy: keep its evidence, make it manual so that rebuilds keep it
        conn.execute(
            Q.MANUAL_OVER_POLICY,
            (stamp, by, reason, stamp, address),
        )
    elif row is not None and row["state"] == "suppressed":
        # the subscriber's own request: whatever suppressed it before, it is an opt-out now (evidence kept)
        conn.execute(
            Q.OPT_OUT_OVER_MANUAL,
            (reason, summary, stamp, by, reason, stamp, address),
        )
    else:
        conn.execute(
            Q.SUPPRESS_MANUAL,
            (
                address,
                address.rpartition("@")[2],
                source,
                category,
                reason,
                summary,
                stamp,
                stamp,
                stamp,
                by,
                reason,
                stamp,
                address_flags(address),
            ),
        )
    _log(conn, address, stamp, "suppress", source, by, reason)
    conn.execute(Q.DELETE_PENDING_ADDRESS, (address,))  # decided by hand
    return changed


def unsuppress(conn: sqlite3.Connection, address: str, reason: str, by: str, stamp: str | None = None) -> bool:
    """Manual unsuppression: evidence up to now no longer counts, even after a rebuild. False if not suppressed."""
    address = canonical(address).address or address.strip().lower()
    stamp = stamp or utc_now()
    with _transaction(conn):
        row = get_row(conn, address)
        changed = row is not None and row["state"] == "suppressed"
        conn.execute(
            Q.UNSUPPRESS,
            (address, address.rpartition("@")[2], stamp, stamp, by, reason.strip(), stamp),
        )
        _log(conn, address, stamp, "unsuppress", "manual", by, reason.strip())
        conn.execute(Q.DELETE_PENDING_ADDRESS, (address,))  # decided by hand
    return changed


# ------------------------------------------------------------------------------------------------ rebuild


def rebuild(conn: sqlite3.Connection, policy: Policy, now: datetime | None = None, stamp: str | None = None) -> dict:
    """Recompute every policy suppression from the whole history (one transaction).

    Manual suppressions are kept as they are; a manual unsuppression keeps hiding the evidence before it.
    Returns counts: suppressed (total now), added, removed, changed (still suppressed, but with another reason,
    category, status, dates or evidence), unchanged, manual (kept manual suppressions), and pending (held by a cap
    and left for approve/reject) when there are any.
    """
    stamp = stamp or utc_now()
    now = parse_time(now or stamp)
    counts = {"suppressed": 0, "added": 0, "removed": 0, "changed": 0, "unchanged": 0, "manual": 0}
    with _transaction(conn):
        cur = conn.execute(Q.ALL_SUPPRESSIONS)
        names = [c[0] for c in cur.description]
        existing = {r[0 + names.index("address")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
        # held by a cap: only approve/reject decides them (a rebuild applies no caps)
        held = {r[0] for r in conn.execute(Q.PENDING_ADDRESSES)}
        if held:
            counts["pending"] = len(held)
        cur = conn.execute(Q.REBUILD_EVENTS)
        seen: set[str] = set()
        for address, group in itertools.groupby(cur, key=lambda r: r[0]):
            seen.add(address)
            if address in held:
                continue
            _rebuild_one(
                conn, address, [_event(r[1:]) for r in group], existing.get(address), policy, now, stamp, counts
            )
        for address, row in existing.items():
            if address not in seen and address not in held:
                _rebuild_one(conn, address, [], row, policy, now, stamp, counts)
    return counts


def _rebuild_one(
    conn: sqlite3.Connection,
    address: str,
    events: list[Event],
    row: dict | None,
    policy: Policy,
    now: datetime,
    stamp: str,
    counts: dict[str, int],
) -> None:
    if row is not None and row["state"] == "suppressed" and row["source"] == "manual":
        counts["manual"] += 1
        counts["suppressed"] += 1
        return
    if row is not None and row["state"] == "suppressed" and "opt-out" in (row["source"], row["category"]):
        # the subscriber's own decision: it never expires, whatever the evidence left (a CSV import, a one-click
        # unsubscribe, or a request whose message was pruned); only unsuppress lifts it
        counts["opt_out"] = counts.get("opt_out", 0) + 1
        counts["suppressed"] += 1
        return
    after = parse_time(row["manual_at"]) if row is not None and row["manual_at"] else None
    d = decide(events, policy, now, after, explain=False)
    was = row is not None and row["state"] == "suppressed"
    if d.suppress:
        counts["suppressed"] += 1
        same = was and row is not None and _same(row, d)
        _write_policy(conn, address, d, row["updated_at"] if same and row is not None else stamp)
        if same:
            counts["unchanged"] += 1
        elif was:
            counts["changed"] += 1
            _log(conn, address, stamp, "change", "rebuild", why=d.summary)
        else:
            counts["added"] += 1
            _log(conn, address, stamp, "suppress", "rebuild", why=d.summary)
    elif was:
        counts["removed"] += 1
        if row is not None and row["manual_at"]:
            conn.execute(
                Q.REBUILD_LIFT_TO_MANUAL,
                (stamp, address),
            )
        else:
            conn.execute(Q.REBUILD_DELETE, (address,))
        _log(conn, address, stamp, "lift", "rebuild", why="the policy no longer suppresses it")


def _same(row: dict, d: Decision) -> bool:
    """Whether the stored policy suppression says exactly what the decision says (what a rebuild would write)."""
    return (
        row["source"] == "policy"
        and (row["category"], row["reason"], row["status"], row["summary"])
        == (d.category, d.reason, d.status, d.summary)
        and (row["suppressed_at"], row["first_evidence_at"], row["last_evidence_at"])
        == (_t(d.suppressed_at), _t(d.first_evidence_at), _t(d.last_evidence_at))
        and row["evidence"] == _evidence_json(d.evidence)
        and row["soft_score"] == d.soft_score
    )


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (isolation_level=None)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


# ------------------------------------------------------------------------------------------------ queries


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return has_table(conn, name)


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return has_column(conn, table, column)


__all__ = ["NoDatabase", "connect"]


def suppressed(conn: sqlite3.Connection, since: str = "", recorded_since: str = "") -> list[dict[str, Any]]:
    """Suppressed addresses, oldest first: suppressed_at (the evidence's time) >= since, and, with
    `recorded_since`, put on the list (the suppression log's time: when we recorded it) at or after it."""
    if not _has_table(conn, "suppressions"):
        return []
    rows = conn.execute(
        Q.suppressed_list(bool(recorded_since)), (since, recorded_since) if recorded_since else (since,)
    ).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        item["evidence"] = json.loads(item["evidence"] or "[]")
        item["soft_days"] = json.loads(item["soft_days"] or "[]")
        out.append(item)
    return out


def pending(conn: sqlite3.Connection, since: str = "") -> list[dict[str, Any]]:
    """Suppressions held by a cap (created_at >= since), oldest first."""
    if not _has_table(conn, "pending_suppressions"):
        return []
    rows = conn.execute(
        Q.PENDING_LIST,
        (since,),
    ).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        item["evidence"] = json.loads(item["evidence"] or "[]")
        item["soft_days"] = json.loads(item["soft_days"] or "[]")
        out.append(item)
    return out


def pending_count(conn: sqlite3.Connection) -> int:
    if not _has_table(conn, "pending_suppressions"):
        return 0
    return int(conn.execute(Q.PENDING_COUNT).fetchone()[0])


def _select_pending(
    conn: sqlite3.Connection, addresses: Iterable[str], client: str | None, message_row: int | None, every: bool
) -> list[dict[str, Any]]:
    if every:
        cur = conn.execute(Q.PENDING_ALL)
    elif client is not None:
        cur = conn.execute(Q.PENDING_BY_CLIENT, (client,))
    elif message_row is not None:
        cur = conn.execute(Q.PENDING_BY_MESSAGE, (message_row,))
    else:
        wanted = [canonical(a).address or a.strip().lower() for a in addresses]
        cur = conn.execute(Q.pending_by_addresses(len(wanted)), wanted)
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def approve(
    conn: sqlite3.Connection,
    addresses: Iterable[str] = (),
    *,
    client: str | None = None,
    message_row: int | None = None,
    every: bool = False,
    by: str = "",
    reason: str = "",
    stamp: str | None = None,
) -> list[str]:
    """Held suppressions become suppressions (source policy: a rebuild keeps them while their evidence counts).
    Returns the addresses approved."""
    stamp = stamp or utc_now()
    done = []
    with _transaction(conn):
        for row in _select_pending(conn, addresses, client, message_row, every):
            conn.execute(
                Q.APPROVE,
                (
                    row["address"],
                    row["domain"],
                    source_of(row["category"]),
                    row["category"],
                    row["reason"],
                    row["status"],
                    row["summary"],
                    row["suppressed_at"],
                    row["first_evidence_at"],
                    row["last_evidence_at"],
                    row["evidence"],
                    row["soft_score"],
                    row["soft_days"],
                    stamp,
                    stamp,
                    row["flags"],
                ),
            )
            conn.execute(Q.DELETE_PENDING_ID, (row["id"],))
            why = "; ".join(x for x in (row["summary"], reason.strip()) if x)
            _log(conn, row["address"], stamp, "approve", "manual", by, why, client=row["client_addr"])
            done.append(row["address"])
    return done


def reject(
    conn: sqlite3.Connection,
    addresses: Iterable[str] = (),
    *,
    client: str | None = None,
    message_row: int | None = None,
    every: bool = False,
    by: str = "",
    reason: str = "",
    stamp: str | None = None,
) -> list[str]:
    """Held suppressions are dropped as forged: like a manual unsuppression, the evidence up to now no longer
    counts (also after rebuild-suppressions); later bounces can still suppress the address. Returns them."""
    stamp = stamp or utc_now()
    why = reason.strip() or "held suppression rejected"
    done = []
    with _transaction(conn):
        for row in _select_pending(conn, addresses, client, message_row, every):
            address = row["address"]
            current = get_row(conn, address)
            if current is None or current["state"] != "suppressed":
                conn.execute(
                    Q.REJECT,
                    (address, row["domain"], stamp, stamp, by, why, stamp, row["flags"]),
                )
            conn.execute(Q.DELETE_PENDING_ID, (row["id"],))
            _log(conn, address, stamp, "reject", "manual", by, why, client=row["client_addr"])
            done.append(address)
    return done


def history(conn: sqlite3.Connection, address: str, policy: Policy, now: datetime) -> dict[str, Any]:
    """Every recorded event for `address` (as subscriber or as the reported address), with the policy's verdict."""
    address = canonical(address).address or address.strip().lower()
    # a store not migrated yet (read-only commands do not migrate) has no signing columns
    signed = _has_column(conn, "recipients", "verified")
    rows = conn.execute(Q.history(signed), (address, address)).fetchall()
    row = get_row(conn, address) if _has_table(conn, "suppressions") else None
    manual_hold = row is not None and row["state"] == "suppressed" and row["source"] == "manual"
    after = parse_time(row["manual_at"]) if row and row["manual_at"] and not manual_hold else None
    own = [
        _event(
            tuple(r[c] for c in ("id", "received_at", "kind", "reason", "hard", "status", "feedback_type", "verified"))
        )
        for r in rows
        if r["address"] == address and r["bounce_addresses"] != "[]"
    ]
    decision = decide(own, policy, now, after)
    verdicts = {v.event_id: v for v in decision.verdicts}
    evidence = set(json.loads(row["evidence"] or "[]")) if row else set()
    events = []
    for r in rows:
        item = dict(r)
        item["hard"] = bool(item["hard"])
        item["verified"] = None if item["verified"] is None else bool(item["verified"])
        v = verdicts.get(r["id"])
        if r["bounce_addresses"] == "[]":
            item["counted"], item["verdict"] = False, "observed (not sent to a bounce address): never counts"
        elif v is None:
            item["counted"], item["verdict"] = False, f"recorded for {r['address'] or 'nobody'} (VERP)"
        else:
            item["counted"], item["verdict"] = v.counted, v.note
        item["evidence"] = r["id"] in evidence
        events.append(item)
    log = []
    if _has_table(conn, "suppression_log"):
        log = [dict(x) for x in conn.execute(Q.SUPPRESSION_LOG_OF, (address,))]
    if row:
        row["evidence"] = json.loads(row["evidence"] or "[]")
        row["soft_days"] = json.loads(row["soft_days"] or "[]")
    held = None
    if _has_table(conn, "pending_suppressions"):
        cur = conn.execute(Q.PENDING_ROW, (address,))
        found = cur.fetchone()
        held = dict(zip([c[0] for c in cur.description], found, strict=True)) if found else None
    return {
        "address": address,
        "suppression": row,
        "pending": held,
        "current_soft_score": decision.soft_score,
        "policy_would_suppress": decision.suppress,
        "events": events,
        "log": log,
    }


def open_store(db: str, timeout: float = 5.0, policy: Policy | None = None) -> Store:
    """A Store (SQLite path or PostgreSQL URL) whose record() keeps the suppression list: the policy hook is
    passed in here, so the store does not import the policy back."""
    return Store(db, timeout, policy_hook=SuppressionHook(policy))
