"""Reporting and alerting queries over the store: `stats` (counts grouped one way) and `check` (thresholds).

Pure functions of an open sqlite3 connection and an injected `now`, so the CLI, tests and other tools get the
same numbers. Timestamps in the store are ISO-8601 UTC text (``2026-05-09T07:35:25.123Z``) and compare as text.

Definitions (the README repeats them):
- *messages*: rows of ``messages`` (one per handled message), *recipients*: rows of ``recipients`` (one per
  affected address; a not_bounce message has none).
- *hard*: recipients the classifier marked hard (the address does not exist: userunknown, hostunknown, ...).
- *hard rate*: hard bounce recipients / all bounce recipients (kind ``bounce``; delays, complaints and
  auto-replies excluded) in the window. The milter only sees what comes back, not what was sent, so a rate
  per sent message is not available; this one answers "are we mailing dead addresses?" (a stale list import).
  It is only judged when the window holds at least ``min_bounces`` bounce recipients: one hard bounce out of
  one is not an incident.
- *complaints*: complaint messages (ARF/JMRP feedback reports) in the window.
- *opt-outs*: unsubscribe requests (kind ``opt_out``) in the window, counted apart from complaints: a
  subscriber leaving is no sign of spam.
- *blocked*: bounce recipients whose reason says the receiving site refused *us* (`BLOCK_REASONS`: blocklists,
  reputation, spam filters, SPF/DKIM/DMARC, missing PTR, policy): the sign of a blocklisting.
- *unverified* (`stats`): with signed return paths on, messages (or recipients) that did not prove they answer
  mail we sent: forgeries, backscatter, bounces of mail sent before signing. Counted in the other columns too;
  they never move the suppression list.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .policy import parse_time
from .store import dialect, fmt_time, has_column, has_table
from .store import sql as Q

BY_CHOICES: tuple[str, ...] = ("kind", "reason", "domain", "remote-mta", "hour", "day", "week", "month")
_PERIOD_KEYS = Q.PERIOD_KEYS
WHEN_FORMS = "24h, 7d, 30m, 2w (that long ago), an ISO date or time such as 2026-05-01 or 2026-05-01T12:00, or all"

BLOCK_REASONS: tuple[str, ...] = (
    "blocked",
    "badreputation",
    "spamdetected",
    "authfailure",
    "requireptr",
    "rejected",
    "policyviolation",
)

NONE_LABEL = "(none)"
_SINCE_RE = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_HOUR_FILL_MAX = 24 * 31  # hours filled with zero rows, so a chart shows the quiet hours too


def window_start(value: str | None, now: datetime) -> datetime | None:
    """'24h', '7d', '30m', '2w' or an ISO date/time -> the window's start (None = everything).

    Raises ValueError for anything else."""
    if not value:
        return None
    m = _SINCE_RE.match(value)
    if m:
        try:
            return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except OverflowError:  # 999999w: before year 1
            raise ValueError(f"{value!r}: too far back (the calendar starts at year 1)") from None
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError(f"{value!r}: use {WHEN_FORMS}") from None


# ------------------------------------------------------------------------------------------------------ stats


@dataclass
class StatsRow:
    key: str
    messages: int
    recipients: int
    hard: int
    share: float  # of the total of `Stats.unit`
    unverified: int = 0  # of `Stats.unit`: not proven to answer our mail (signed return paths)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "messages": self.messages,
            "recipients": self.recipients,
            "hard": self.hard,
            "unverified": self.unverified,
            "share": round(self.share, 4),
        }


@dataclass
class Stats:
    by: str
    since: str  # "" = everything
    until: str
    unit: str  # what `share` and the chart measure: "messages" (by kind, hour) or "recipients"
    rows: list[StatsRow] = field(default_factory=list)
    total_messages: int = 0
    total_recipients: int = 0
    total_hard: int = 0
    total_unverified: int = 0  # messages

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since or None,
            "until": self.until,
            "unit": self.unit,
            "total": {
                "messages": self.total_messages,
                "recipients": self.total_recipients,
                "hard": self.total_hard,
                "unverified": self.total_unverified,
            },
            "rows": [r.as_dict() for r in self.rows],
        }

    def value(self, row: StatsRow) -> int:
        return row.messages if self.unit == "messages" else row.recipients


def stats(conn: sqlite3.Connection, by: str, since: datetime | None, now: datetime) -> Stats:
    """Counts in [since, now] grouped `by` one of BY_CHOICES; rows ordered by their measure (hour: by time)."""
    if by not in BY_CHOICES:
        raise ValueError(f"{by!r}: group by one of {', '.join(BY_CHOICES)}")
    lo = fmt_time(since) if since else ""
    hi = fmt_time(now)
    window = (lo, hi)
    # a store not migrated to signed return paths yet (this connection is read-only) has no verified column
    signed = _has_verified(conn)
    totals = conn.execute(Q.stats_totals(signed), window).fetchone()
    total_hard = conn.execute(Q.STATS_TOTAL_HARD, window).fetchone()[0]
    unit = "messages" if by in ("kind", "hour", *_PERIOD_KEYS) else "recipients"
    result = Stats(by, lo, hi, unit, [], int(totals[0]), int(totals[1]), int(total_hard), int(totals[2]))

    if by in ("kind", "hour", *_PERIOD_KEYS):
        key = (Q.PG_MESSAGE_KEYS if dialect(conn) == "postgres" else Q.MESSAGE_KEYS)[by]
        rows = conn.execute(Q.stats_by_message(key, signed), window + window).fetchall()
    else:
        rows = conn.execute(Q.stats_by_recipient(Q.RECIPIENT_KEYS[by], signed), window).fetchall()
    items = [StatsRow(str(k) if k else NONE_LABEL, int(m), int(r), int(h), 0.0, int(u)) for k, m, r, h, u in rows]
    if by == "hour":
        items = _fill_hours(items, since, now)
        for item in items:
            item.key = item.key.replace("T", " ") + ":00"
    elif by in _PERIOD_KEYS:
        items.sort(key=lambda i: i.key)
    else:
        items.sort(key=lambda i: (-(i.messages if unit == "messages" else i.recipients), i.key))
    total = result.total_messages if unit == "messages" else result.total_recipients
    for item in items:
        item.share = (result.value(item) / total) if total else 0.0
    result.rows = items
    return result


def _has_verified(conn: sqlite3.Connection) -> bool:
    return has_column(conn, "messages", "verified")


def _fill_hours(items: list[StatsRow], since: datetime | None, now: datetime) -> list[StatsRow]:
    """Sorted by hour, with zero rows for the quiet hours of the window (bounded)."""
    found = {i.key: i for i in items}
    if not found:
        return []
    first = since if since is not None else parse_time(min(found) + ":00:00Z")
    start = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = int((end - start).total_seconds() // 3600) + 1
    if hours > _HOUR_FILL_MAX or hours < 1:
        return [found[k] for k in sorted(found)]
    out = []
    for n in range(hours):
        key = (start + timedelta(hours=n)).strftime("%Y-%m-%dT%H")
        out.append(found.get(key) or StatsRow(key, 0, 0, 0, 0.0))
    return out


# ------------------------------------------------------------------------------------------------------ check

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


@dataclass(frozen=True)
class Threshold:
    """A WARN,CRIT pair; either may be None (not checked). A value strictly above a limit breaches it."""

    warn: float | None = None
    crit: float | None = None

    def state(self, value: float) -> int:
        if self.crit is not None and value > self.crit:
            return CRITICAL
        if self.warn is not None and value > self.warn:
            return WARNING
        return OK

    @property
    def active(self) -> bool:
        return self.warn is not None or self.crit is not None


def parse_threshold(text: str, rate: bool = False) -> Threshold:
    """'CRIT', 'WARN,CRIT' or 'WARN,' (warning only). Rates may be written 0.05 or 5%.

    One value is the CRITICAL limit (the cron case: any breach is an error)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not any(parts):
        raise ValueError(f"{text!r}: give CRIT or WARN,CRIT")

    def num(p: str) -> float | None:
        if not p:
            return None
        pct = p.endswith("%")
        try:
            v = float(p[:-1] if pct else p)
        except ValueError:
            raise ValueError(f"{text!r}: {p!r} is not a number") from None
        if pct:
            v /= 100
        if not math.isfinite(v):  # nan would never breach, inf is no limit: both would silently disable the check
            raise ValueError(f"{text!r}: {p!r} is not a finite number")
        if v < 0 or (rate and v > 1):
            raise ValueError(f"{text!r}: {p!r} must be " + ("between 0 and 1 (or 0% and 100%)" if rate else ">= 0"))
        return v

    if len(parts) == 1:
        return Threshold(None, num(parts[0]))
    warn, crit = num(parts[0]), num(parts[1])
    if warn is not None and crit is not None and warn > crit:
        raise ValueError(f"{text!r}: the warning limit must not exceed the critical one")
    return Threshold(warn, crit)


@dataclass
class Window:
    since: str
    until: str
    messages: int
    bounces: int  # bounce recipients
    hard: int
    complaints: int  # complaint messages
    blocked: int  # bounce recipients with a BLOCK_REASONS reason
    blocked_by_reason: dict[str, int]
    opt_outs: int = 0  # unsubscribe request messages (never counted as complaints)

    @property
    def hard_rate(self) -> float:
        return self.hard / self.bounces if self.bounces else 0.0


def window_counts(conn: sqlite3.Connection, since: datetime, now: datetime) -> Window:
    lo, hi = fmt_time(since), fmt_time(now)
    messages, complaints, opt_outs = conn.execute(
        Q.WINDOW_MESSAGES,
        (lo, hi),
    ).fetchone()
    bounces, hard = conn.execute(
        Q.WINDOW_BOUNCES,
        (lo, hi),
    ).fetchone()
    blocked = dict(conn.execute(Q.window_blocked(len(BLOCK_REASONS)), (lo, hi, *BLOCK_REASONS)).fetchall())
    return Window(
        lo, hi, int(messages), int(bounces), int(hard), int(complaints), sum(blocked.values()), blocked, int(opt_outs)
    )


@dataclass
class CheckResult:
    state: int
    lines: list[str]  # first line: Nagios status with perfdata; then one line per breached threshold
    window: Window

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _limit(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _show(v: float | None, rate: bool) -> str:
    return "" if v is None else (f"{v * 100:.1f}%" if rate else f"{v:g}")


def _pending_count(conn: sqlite3.Connection) -> int:
    if not has_table(conn, "pending_suppressions"):  # a database from before migration 5
        return 0
    return int(conn.execute(Q.PENDING_COUNT).fetchone()[0])


def _notify_stuck(conn: sqlite3.Connection, now: datetime) -> int:
    try:
        return int(conn.execute(Q.NOTIFY_STUCK, (fmt_time(now - timedelta(hours=1)),)).fetchone()[0])
    except sqlite3.OperationalError:  # a database from before migration 9
        return 0


def check(
    conn: sqlite3.Connection,
    since: datetime,
    now: datetime,
    *,
    hard_rate: Threshold = Threshold(),
    complaints: Threshold = Threshold(),
    blocked: Threshold = Threshold(),
    min_bounces: int = 10,
    label: str = "",
) -> CheckResult:
    """Evaluate the thresholds over [since, now]; the state is the worst breach (Nagios plugin output)."""
    w = window_counts(conn, since, now)
    breaches: list[tuple[int, str]] = []
    notes: list[str] = []

    rate_judged = w.bounces >= min_bounces
    if hard_rate.active:
        st = hard_rate.state(w.hard_rate) if rate_judged else OK
        if st:
            lim = hard_rate.crit if st == CRITICAL else hard_rate.warn
            breaches.append(
                (
                    st,
                    f"hard bounce rate {w.hard_rate * 100:.1f}% ({w.hard} of {w.bounces} bounced recipients) "
                    f"> {_show(lim, True)}",
                )
            )
        if not rate_judged:
            notes.append(f"hard rate not judged: {w.bounces} bounced recipient(s) < --min-bounces {min_bounces}")
    if complaints.active and (st := complaints.state(w.complaints)):
        lim = complaints.crit if st == CRITICAL else complaints.warn
        breaches.append((st, f"{w.complaints} complaint(s) > {_show(lim, False)}"))
    if blocked.active and (st := blocked.state(w.blocked)):
        lim = blocked.crit if st == CRITICAL else blocked.warn
        detail = ", ".join(f"{r} {n}" for r, n in w.blocked_by_reason.items())
        breaches.append((st, f"{w.blocked} blocked recipient(s) ({detail}) > {_show(lim, False)}"))

    # suppressions held by a cap ([limits]) wait for a person: a warning until approved or rejected
    held = _pending_count(conn)
    if held:
        breaches.append(
            (
                WARNING,
                f"{held} suppression(s) pending approval, held by a cap on new suppressions "
                "(bouncemilter suppressed --pending; approve or reject them)",
            )
        )

    # the webhook ([notify] url) failing for an hour: the application is not told of new suppressions
    stuck = _notify_stuck(conn, now)
    if stuck:
        breaches.append(
            (
                WARNING,
                f"{stuck} new suppression(s) not delivered to [notify] url for over an hour "
                "(bouncemilter notify --status)",
            )
        )

    state = max((b[0] for b in breaches), default=OK)
    perf = " ".join(
        [
            f"hard_rate={w.hard_rate:.4f};{_limit(hard_rate.warn)};{_limit(hard_rate.crit)};0;1",
            f"hard={w.hard};;;0",
            f"bounces={w.bounces};;;0",
            f"complaints={w.complaints};{_limit(complaints.warn)};{_limit(complaints.crit)};0",
            f"opt_outs={w.opt_outs};;;0",
            f"blocked={w.blocked};{_limit(blocked.warn)};{_limit(blocked.crit)};0",
            f"messages={w.messages};;;0",
            f"pending={held};;;0",
        ]
    )
    span = f" in the last {label}" if label else f" since {w.since}"
    if breaches:
        summary = f"{len(breaches)} threshold(s) breached{span}"
    else:
        summary = (
            f"{w.messages} message(s){span}: hard rate {w.hard_rate * 100:.1f}% ({w.hard}/{w.bounces}), "
            f"{w.complaints} complaint(s), {w.opt_outs} opt-out(s), {w.blocked} blocked"
        )
    lines = [f"BOUNCEMILTER {STATE_NAMES[state]} - {summary} | {perf}"]
    lines += [f"{STATE_NAMES[st]}: {text}" for st, text in sorted(breaches, key=lambda b: -b[0])]
    lines += notes
    return CheckResult(state, lines, w)
