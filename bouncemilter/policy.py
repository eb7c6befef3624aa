"""The suppression policy: which recorded events make an address dead. Pure (no SQL, no clock of its own).

Rules, applied to one address's events in time order (`decide`):

- **hard bounce** (the classifier's ``hard`` flag: userunknown, hostunknown, hasmoved, notaccept with a 5xx):
  suppress at once.
- **complaint** (ARF / JMRP): suppress at once, unless the report's feedback type says it is not a complaint by
  the subscriber (``not-spam``, and ``auth-failure``, which is a DMARC failure report about the *sender*).
- **soft bounce** (any other bounce whose reason is not in `SENDER_REASONS`): Mailman-style score. At most one
  count per UTC day; the address is suppressed when it has bounced on ``soft_threshold`` distinct days (default
  3) within ``soft_window_days`` (default 30), with no quiet gap longer than ``soft_stale_days`` (default 7)
  between two of those days: after such a gap the score is stale and starts again at 1 (Mailman's
  bounce_info_stale_after).
- **opt-out** (kind ``opt_out``: an unsubscribe request by mail, or an ARF ``opt-out`` report): suppress at once
  with category ``opt-out`` (source ``opt-out``: the subscriber's own decision, which a rebuild keeps like a
  manual one). It never expires; only an explicit ``unsuppress`` (the subscriber came back) lifts it.
- **never counted**: delays, delivery reports, auto-replies, not_bounce, and bounces whose reason is the
  *sender's* problem (`SENDER_REASONS`: blocklists, reputation, spam/virus/content filters, SPF/DKIM/DMARC,
  rate limits, relaying, the message itself being too big or malformed). Those say nothing about whether the
  mailbox exists; suppressing on them would unsubscribe good addresses whenever *our* server is blocklisted.
  They are still recorded and shown by ``bouncemilter history`` ("sender's problem").

- **unverified**: with signed return paths on, a bounce or complaint that does not prove it answers mail we
  sent (`verdict.Verifier`: unsigned, altered or expired token, no signed original) never counts; it is kept
  for reports. Rows that were not checked (signing off, or recorded before) count as always.

A suppression is sticky: later quiet periods do not lift it; only a manual ``unsuppress`` does, after which
only evidence newer than the unsuppression counts (`decide(..., after=...)`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import NamedTuple

# Reasons (Sisimai names) that describe a problem of the sending side or of the message, never of the mailbox.
SENDER_REASONS: frozenset[str] = frozenset(
    {
        "blocked",  # the sending IP/host is blocklisted or refused
        "badreputation",  # low sender reputation (e.g. Gmail 421 4.7.0 / 550 5.7.1 reputation)
        "spamdetected",  # the message was judged spam
        "virusdetected",  # a virus in the message
        "contenterror",  # malformed or forbidden content
        "notcompliantrfc",  # the message breaks RFC 5322 syntax
        "policyviolation",  # the receiving site's content or sending policy
        "authfailure",  # SPF / DKIM / DMARC failure
        "securityerror",  # TLS or authentication required of the sending MTA
        "requireptr",  # the sending IP has no (matching) reverse DNS
        "rejected",  # the envelope sender (return path) was refused
        "norelaying",  # relaying denied: a routing problem of the sending side
        "toomanyconn",  # too many connections from the sender
        "speeding",  # rate limited
        "syntaxerror",  # SMTP syntax error of the sending MTA
        "mesgtoobig",  # this message is too big, not the mailbox
        "exceedlimit",  # message size over the receiving site's limit
    }
)
# Feedback types of an ARF report that are not a subscriber's complaint.
NOT_COMPLAINTS: frozenset[str] = frozenset({"not-spam", "auth-failure"})
COUNTING_KINDS: tuple[str, ...] = ("bounce", "complaint", "opt_out")
# Categories of events that count toward a suppression (classify_event); "opt-out" suppresses at once, like "hard".
COUNTED: tuple[str, ...] = ("hard", "complaint", "soft", "opt-out")


@dataclass(frozen=True)
class Policy:
    soft_threshold: int = 3  # distinct bounce days that suppress
    soft_window_days: int = 30  # those days must fall within this many days
    soft_stale_days: int = 7  # a quiet gap longer than this resets the score
    complaints: bool = True  # a complaint suppresses at once
    sender_reasons: frozenset[str] = SENDER_REASONS  # never counted
    # caps on NEW suppressions (issue #15; 0 = no cap): past them the suppression is held as pending for an admin
    max_new_per_message: int = 100  # from one report
    max_new_per_client_hour: int = 1000  # from one SMTP client address within an hour (not Postfix's own path)

    @classmethod
    def from_settings(cls, settings: object) -> Policy:
        """From `config.Settings` (fields policy_*); defaults for anything missing."""
        get = getattr
        base = cls()
        return cls(
            soft_threshold=get(settings, "policy_soft_threshold", base.soft_threshold),
            soft_window_days=get(settings, "policy_soft_window_days", base.soft_window_days),
            soft_stale_days=get(settings, "policy_soft_stale_days", base.soft_stale_days),
            complaints=get(settings, "policy_complaints", base.complaints),
            sender_reasons=frozenset(get(settings, "policy_sender_reasons", base.sender_reasons)),
            max_new_per_message=get(settings, "limit_suppressions_per_message", base.max_new_per_message),
            max_new_per_client_hour=get(settings, "limit_suppressions_per_client_hour", base.max_new_per_client_hour),
        )


class Event(NamedTuple):
    """One recorded recipients row for the address (plus its message's feedback type). A named tuple: the policy
    hook makes one or two for every bounce, and a frozen dataclass costs four times as much to make (issue #12)."""

    id: int
    at: datetime  # aware, UTC
    kind: str
    reason: str = ""
    hard: bool = False
    status: str = ""
    feedback_type: str = ""
    verified: bool | None = None  # signed return paths: False = not proven to answer our mail; None = not checked


@dataclass(frozen=True)
class Verdict:
    """What one event meant under the policy, for `history` and the evidence list."""

    event_id: int
    category: str  # hard | complaint | soft | sender | ignored | before-unsuppress | not-a-complaint | unverified
    counted: bool
    note: str


@dataclass
class Decision:
    suppress: bool = False
    category: str = ""  # what triggered it: hard | complaint | soft | opt-out
    reason: str = ""  # the triggering event's reason (userunknown, feedback type, mailboxfull ...)
    status: str = ""
    suppressed_at: datetime | None = None  # time of the event that triggered it
    evidence: list[int] = field(default_factory=list)  # ids of the counted events (trigger first)
    first_evidence_at: datetime | None = None
    last_evidence_at: datetime | None = None
    soft_score: int = 0  # current score at `now` (0 when stale)
    soft_days: list[str] = field(default_factory=list)  # the days of the current score, ISO dates
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for people and the Postfix reject text."""
        if not self.suppress:
            return ""
        if self.category == "soft":
            return f"soft bounces on {len(self.soft_days) or self.soft_score} days ({self.reason})"
        if self.category == "complaint":
            return f"complaint ({self.reason or 'abuse'})"
        if self.category == "opt-out":
            return "opt-out: the subscriber asked to be removed (unsubscribe request)"
        return f"hard bounce ({self.reason}{' ' + self.status if self.status else ''})"


# The last datetimes parse_time read from the store's text, with that text (what fmt_time gives them back): a
# decision's times are its events' times, written back without formatting them again (`time_text`; a fmt_time is
# ~6,000 instructions, issue #12). Found by identity, so a text is only ever given for the object read from it.
_RECENT: list[tuple[datetime, str] | None] = [None] * 4
_recent_next = 0
_fromisoformat = datetime.fromisoformat


def parse_time(value: str | datetime) -> datetime:
    """The store's ISO-8601 UTC text (``2026-05-09T07:35:25.123Z``) -> an aware datetime."""
    global _recent_next
    if type(value) is str and len(value) == 24 and value[23] == "Z" and value[19] == "." and value[10] == "T":
        # the store's own form (fmt_time's, to the millisecond): Python 3.11 reads its Z as UTC
        dt = _fromisoformat(value)
        _RECENT[_recent_next & 3] = (dt, value)
        _recent_next += 1
        return dt
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def classify_event(event: Event, policy: Policy) -> str:
    """hard | complaint | soft | opt-out | sender | ignored | not-a-complaint | unverified (before any scoring)."""
    if event.verified is False and event.kind in COUNTING_KINDS:
        return "unverified"
    if event.kind == "opt_out":
        return "opt-out"
    if event.kind == "complaint":
        if event.feedback_type.strip().lower() in NOT_COMPLAINTS:
            return "not-a-complaint"
        return "complaint" if policy.complaints else "ignored"
    if event.kind != "bounce":
        return "ignored"
    if event.reason in policy.sender_reasons:
        return "sender"
    return "hard" if event.hard else "soft"


def time_text(dt: datetime) -> str | None:
    """The store's text of a datetime parse_time just read from it (None when it did not: format it then)."""
    for recent in _RECENT:
        if recent is not None and recent[0] is dt:
            return recent[1]
    return None


_BY_TIME = itemgetter(1, 0)  # (at, id)
_AT_ONCE = {"hard": "hard bounce", "complaint": "complaint", "opt-out": "unsubscribe request"}


def decide(
    events: Iterable[Event], policy: Policy, now: datetime, after: datetime | None = None, explain: bool = True
) -> Decision:
    """Replay `events` (any order; sorted here) under `policy`; `after` = a manual unsuppression time.
    `explain=False`: the same decision without its verdicts (the policy hook reads none of them)."""
    if not explain and after is None and isinstance(events, list) and len(events) == 1:
        # the usual bounce of a new address: one event, which suppresses at once or not at all by itself
        ev = events[0]
        category = classify_event(ev, policy)
        if category in _AT_ONCE:
            d = Decision()
            _trigger(d, category, ev, [ev.id], ev.at)
            return d
    now = parse_time(now)
    ordered = sorted(events, key=_BY_TIME)
    d = Decision()
    verdicts = d.verdicts if explain else None
    # the current soft score: one entry per distinct UTC day, with the ids and first time of that day's bounces
    run: list[tuple[date, list[int], datetime]] = []
    for ev in ordered:
        category = classify_event(ev, policy)
        if after is not None and ev.at <= after and category in COUNTED:
            if verdicts is not None:
                note = "before the manual unsuppression: not counted"
                verdicts.append(Verdict(ev.id, "before-unsuppress", False, note))
            continue
        if category == "sender":
            if verdicts is not None:
                verdicts.append(Verdict(ev.id, category, False, f"sender's problem ({ev.reason}): never counts"))
            continue
        if category == "not-a-complaint":
            if verdicts is not None:
                note = f"feedback type {ev.feedback_type}: not a subscriber's complaint"
                verdicts.append(Verdict(ev.id, category, False, note))
            continue
        if category == "ignored":
            if verdicts is not None:
                verdicts.append(Verdict(ev.id, category, False, f"{ev.kind}: never counts"))
            continue
        if category == "unverified":
            if verdicts is not None:
                note = f"unverified {ev.kind} (not proven to answer our mail): kept, never counts"
                verdicts.append(Verdict(ev.id, category, False, note))
            continue
        if d.suppress:
            d.evidence.append(ev.id)
            d.last_evidence_at = ev.at
            if verdicts is not None:
                verdicts.append(Verdict(ev.id, category, True, f"{category}: already suppressed, added as evidence"))
            continue
        if category in _AT_ONCE:
            _trigger(d, category, ev, [ev.id], ev.at)
            if verdicts is not None:
                verdicts.append(Verdict(ev.id, category, True, f"{_AT_ONCE[category]}: suppresses at once"))
            continue
        day = ev.at.astimezone(UTC).date()
        if run and day == run[-1][0]:
            run[-1][1].append(ev.id)
            if verdicts is not None:
                verdicts.append(Verdict(ev.id, "soft", False, "soft bounce: same day, not counted again"))
            continue
        reset = ""
        if run and (day - run[-1][0]).days > policy.soft_stale_days:
            reset = f" (score reset after {(day - run[-1][0]).days} quiet days)"
            run = []
        run.append((day, [ev.id], ev.at))
        while (day - run[0][0]).days >= policy.soft_window_days:
            run.pop(0)  # older than the window: no longer part of the score
        if verdicts is not None:
            note = f"soft bounce ({ev.reason or 'undefined'}): day {len(run)} of {policy.soft_threshold}{reset}"
            verdicts.append(Verdict(ev.id, "soft", True, note))
        if len(run) >= policy.soft_threshold:
            _trigger(d, "soft", ev, [i for _, ids, _ in run for i in ids], run[0][2])
            d.soft_days = [x[0].isoformat() for x in run]
    if not d.suppress and run and (now.astimezone(UTC).date() - run[-1][0]).days <= policy.soft_stale_days:
        d.soft_days = [x[0].isoformat() for x in run]
    d.soft_score = len(d.soft_days)
    return d


def _trigger(d: Decision, category: str, ev: Event, ids: list[int], first_at: datetime) -> None:
    d.suppress = True
    d.category = category
    if category == "complaint":
        d.reason = ev.feedback_type or "abuse"
    elif category == "opt-out":
        d.reason = ev.reason or "opt-out"
    else:
        d.reason = ev.reason or "undefined"
    d.status = ev.status
    d.suppressed_at = ev.at
    d.evidence = list(ids)
    d.first_evidence_at = first_at
    d.last_evidence_at = ev.at
