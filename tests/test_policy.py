"""The suppression policy with an injected clock, and its Store hook (same transaction, rebuild, manual changes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bouncemilter import suppressions
from bouncemilter.classify.model import Classification, Feedback, RecipientResult
from bouncemilter.policy import Event, Policy, decide
from bouncemilter.store import MessageMeta, Store, StoreError
from bouncemilter.suppressions import open_store

from .conftest import db_connect, is_pg, make_meta, query_rows

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = Policy()


def ev(n: int, days: float, kind: str = "bounce", reason: str = "mailboxfull", hard: bool = False, **kw) -> Event:
    return Event(n, T0 + timedelta(days=days), kind, reason, hard, **kw)


def hard(n: int, days: float = 0) -> Event:
    return ev(n, days, reason="userunknown", hard=True, status="5.1.1")


# ------------------------------------------------------------------------------------------------ pure rules


def test_hard_bounce_suppresses_at_once() -> None:
    d = decide([hard(1)], POLICY, now=T0)
    assert d.suppress and d.category == "hard" and d.reason == "userunknown"
    assert d.evidence == [1] and d.suppressed_at == T0
    assert d.summary == "hard bounce (userunknown 5.1.1)"


def test_soft_threshold_reached_on_three_distinct_days() -> None:
    d = decide([ev(1, 0), ev(2, 2), ev(3, 4)], POLICY, now=T0 + timedelta(days=4))
    assert d.suppress and d.category == "soft"
    assert d.evidence == [1, 2, 3]
    assert d.soft_days == ["2026-03-02", "2026-03-04", "2026-03-06"]
    assert d.first_evidence_at == T0 and d.suppressed_at == T0 + timedelta(days=4)


def test_soft_threshold_not_reached() -> None:
    d = decide([ev(1, 0), ev(2, 3)], POLICY, now=T0 + timedelta(days=3))
    assert not d.suppress
    assert d.soft_score == 2


def test_same_day_bounces_count_once() -> None:
    events = [ev(1, 0), ev(2, 0.1), ev(3, 0.2), ev(4, 1), ev(5, 1.05)]
    d = decide(events, POLICY, now=T0 + timedelta(days=1))
    assert not d.suppress and d.soft_score == 2
    notes = {v.event_id: v for v in d.verdicts}
    assert not notes[2].counted and "same day" in notes[2].note
    assert notes[4].counted and "day 2 of 3" in notes[4].note


def test_stale_score_resets_after_a_quiet_period() -> None:
    # two days, then 8 quiet days (> 7): the third bounce starts a new score instead of suppressing
    d = decide([ev(1, 0), ev(2, 1), ev(3, 9)], POLICY, now=T0 + timedelta(days=9))
    assert not d.suppress and d.soft_score == 1
    assert "reset after 8 quiet days" in d.verdicts[-1].note
    # exactly 7 quiet days is not stale
    assert decide([ev(1, 0), ev(2, 1), ev(3, 8)], POLICY, now=T0 + timedelta(days=8)).suppress


def test_score_seen_from_now_goes_stale() -> None:
    d = decide([ev(1, 0), ev(2, 1)], POLICY, now=T0 + timedelta(days=20))
    assert not d.suppress and d.soft_score == 0


def test_window_limits_how_far_apart_the_days_may_be() -> None:
    # 0, 7, 14: gaps of 7 are not stale and the span fits the 30-day window -> suppressed
    assert decide([ev(1, 0), ev(2, 7), ev(3, 14)], POLICY, now=T0 + timedelta(days=14)).suppress
    # a 10-day window drops day 0 before day 14 counts
    narrow = Policy(soft_window_days=10)
    assert not decide([ev(1, 0), ev(2, 7), ev(3, 14)], narrow, now=T0 + timedelta(days=14)).suppress


def test_threshold_is_configurable() -> None:
    assert decide([ev(1, 0)], Policy(soft_threshold=1), now=T0).suppress
    assert not decide([ev(1, 0), ev(2, 1), ev(3, 2)], Policy(soft_threshold=4), now=T0 + timedelta(days=2)).suppress


def test_complaint_suppresses_at_once() -> None:
    d = decide([ev(1, 0, kind="complaint", reason="feedback", feedback_type="abuse")], POLICY, now=T0)
    assert d.suppress and d.category == "complaint" and d.reason == "abuse"
    assert not decide([ev(1, 0, kind="complaint", feedback_type="abuse")], Policy(complaints=False), now=T0).suppress


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_feedback_that_is_not_a_complaint(feedback_type: str) -> None:
    d = decide([ev(1, 0, kind="complaint", feedback_type=feedback_type)], POLICY, now=T0)
    assert not d.suppress and not d.verdicts[0].counted


@pytest.mark.parametrize(
    "reason", ["blocked", "spamdetected", "policyviolation", "badreputation", "authfailure", "requireptr", "rejected"]
)
def test_sender_problems_never_suppress(reason: str) -> None:
    # even every day for a month, even with a 5xx
    events = [ev(i, i, reason=reason, status="5.7.1") for i in range(30)]
    d = decide(events, POLICY, now=T0 + timedelta(days=30))
    assert not d.suppress and d.soft_score == 0
    assert all(not v.counted and "sender's problem" in v.note for v in d.verdicts)


@pytest.mark.parametrize("kind", ["delay", "auto_reply", "delivered", "not_bounce"])
def test_delays_and_auto_replies_never_count(kind: str) -> None:
    events = [ev(i, i, kind=kind, reason="expired" if kind == "delay" else "vacation") for i in range(10)]
    d = decide(events, POLICY, now=T0 + timedelta(days=10))
    assert not d.suppress
    assert all(not v.counted for v in d.verdicts)


def test_unsuppress_hides_older_evidence_and_newer_evidence_counts() -> None:
    after = T0 + timedelta(days=1)
    assert not decide([hard(1)], POLICY, now=after, after=after).suppress
    d = decide([hard(1), hard(2, days=2)], POLICY, now=T0 + timedelta(days=2), after=after)
    assert d.suppress and d.evidence == [2]


def test_later_events_become_evidence() -> None:
    d = decide([hard(1), ev(2, 1), ev(3, 2, reason="blocked")], POLICY, now=T0 + timedelta(days=2))
    assert d.evidence == [1, 2] and d.last_evidence_at == T0 + timedelta(days=1)


# ------------------------------------------------------------------------------------------------ the Store hook


def meta(n: int, at: datetime, **kw) -> MessageMeta:
    return make_meta(n, received_at=suppressions.fmt_time(at), **kw)


def bounce(addr: str, reason: str = "userunknown", is_hard: bool = True, status: str = "5.1.1") -> Classification:
    r = RecipientResult(
        addr, "failed", status, status[0] + "50", f"{status} {reason}", "mx.example.org", reason, is_hard
    )
    return Classification(kind="bounce", recipients=[r], detector="test")


def complaint(addr: str) -> Classification:
    r = RecipientResult(addr, "", "", "", "", "", "feedback", False)
    return Classification(kind="complaint", recipients=[r], detector="arf", feedback=Feedback("abuse", "FBL", ""))


q = query_rows


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "bounces.db"


@pytest.fixture
def store(db: Path):
    s = open_store(str(db), timeout=1.0)
    s.suppressions.clock = lambda: "2026-03-31T00:00:00.000Z"
    yield s
    s.close()


def test_hook_suppresses_in_the_same_commit(store: Store, db: Path) -> None:
    store.record(meta(1, T0), bounce("dead@example.org"), "accept")
    row = q(db, "SELECT * FROM suppressions")[0]
    rid = q(db, "SELECT id FROM recipients")[0][0]
    assert (row["address"], row["state"], row["source"], row["category"]) == (
        "dead@example.org",
        "suppressed",
        "policy",
        "hard",
    )
    assert json.loads(row["evidence"]) == [rid]
    assert row["suppressed_at"] == row["first_evidence_at"] == "2026-03-02T09:00:00.000Z"
    assert q(db, "SELECT action, source FROM suppression_log")[0][:] == ("suppress", "policy")


def test_hook_failure_rolls_back_the_bounce(store: Store, db: Path) -> None:
    conn = db_connect(db)
    conn.execute("DROP TABLE suppressions" + (" CASCADE" if is_pg(db) else ""))  # the policy's own write now fails
    conn.commit()
    conn.close()
    with pytest.raises(StoreError):
        store.record(meta(1, T0), bounce("dead@example.org"), "accept")
    assert q(db, "SELECT COUNT(*) FROM messages")[0][0] == 0
    assert q(db, "SELECT COUNT(*) FROM recipients")[0][0] == 0


def test_hook_soft_bounces_over_days(store: Store, db: Path) -> None:
    full = bounce("full@example.org", "mailboxfull", False, "4.2.2")
    for n, day in enumerate((0, 0.2, 3)):
        store.record(meta(n, T0 + timedelta(days=day)), full, "accept")
    assert q(db, "SELECT COUNT(*) FROM suppressions")[0][0] == 0
    store.record(meta(9, T0 + timedelta(days=5)), full, "accept")
    row = q(db, "SELECT * FROM suppressions")[0]
    assert row["category"] == "soft" and row["soft_score"] == 3
    assert len(json.loads(row["evidence"])) == 4  # the same-day bounce is evidence, not a count
    # more bounces add evidence to the sticky suppression
    store.record(meta(10, T0 + timedelta(days=6)), full, "accept")
    assert len(json.loads(q(db, "SELECT evidence FROM suppressions")[0][0])) == 5


def test_sticky_evidence_keeps_the_trigger_half_and_the_most_recent_half(store: Store, db: Path) -> None:
    from bouncemilter.suppressions import EVIDENCE_CAP

    for n in range(EVIDENCE_CAP + 7):
        store.record(meta(n, T0 + timedelta(minutes=n)), bounce("dead@example.org"), "accept")
    ids = [r[0] for r in q(db, "SELECT id FROM recipients ORDER BY id")]
    row = q(db, "SELECT evidence, last_evidence_at FROM suppressions")[0]
    half = EVIDENCE_CAP // 2
    assert json.loads(row["evidence"]) == ids[:half] + ids[-half:]
    assert row["last_evidence_at"] == q(db, "SELECT MAX(received_at) FROM recipients")[0][0]


def test_sticky_evidence_that_is_not_a_json_list_starts_over(store: Store, db: Path) -> None:
    store.record(meta(1, T0), bounce("dead@example.org"), "accept")
    conn = db_connect(db)
    conn.execute("UPDATE suppressions SET evidence = 'not json'")
    conn.commit()
    conn.close()
    store.record(meta(2, T0 + timedelta(hours=1)), bounce("dead@example.org"), "accept")
    last = q(db, "SELECT MAX(id) FROM recipients")[0][0]
    assert json.loads(q(db, "SELECT evidence FROM suppressions")[0][0]) == [last]


def test_hook_ignores_policy_rejections_and_auto_replies(store: Store, db: Path) -> None:
    for n in range(5):
        store.record(meta(n, T0 + timedelta(days=n)), bounce("ok@example.org", "blocked", False, "5.7.1"), "accept")
    store.record(meta(7, T0), Classification(kind="auto_reply", recipients=[RecipientResult("ok@example.org")]), "a")
    store.record(meta(8, T0), complaint("angry@example.org"), "accept")
    assert [r[0] for r in q(db, "SELECT address FROM suppressions")] == ["angry@example.org"]


def test_manual_unsuppress_survives_rebuild(store: Store, db: Path) -> None:
    store.record(meta(1, T0), bounce("dead@example.org"), "accept")
    store.record(meta(2, T0), bounce("gone@example.org"), "accept")
    conn = suppressions.connect(str(db), write=True)
    assert suppressions.unsuppress(
        conn, "Dead@Example.org", "user fixed the mailbox", "ann", "2026-03-05T00:00:00.000Z"
    )
    assert suppressions.suppress(conn, "manual@example.org", "asked to stop", "bob", "2026-03-05T00:00:00.000Z")
    counts = suppressions.rebuild(conn, Policy(), now=T0 + timedelta(days=10))
    assert counts == {"suppressed": 2, "added": 0, "removed": 0, "changed": 0, "unchanged": 1, "manual": 1}
    states = {r["address"]: (r["state"], r["source"]) for r in q(db, "SELECT * FROM suppressions")}
    assert states == {
        "dead@example.org": ("unsuppressed", "manual"),
        "gone@example.org": ("suppressed", "policy"),
        "manual@example.org": ("suppressed", "manual"),
    }
    # new evidence after the unsuppression counts again, in the hook and in a rebuild
    store.record(meta(3, T0 + timedelta(days=6)), bounce("dead@example.org"), "accept")
    assert q(db, "SELECT state FROM suppressions WHERE address='dead@example.org'")[0][0] == "suppressed"
    assert suppressions.rebuild(conn, Policy(), now=T0 + timedelta(days=10))["suppressed"] == 3
    conn.close()


def test_rebuild_applies_a_policy_change(store: Store, db: Path) -> None:
    full = bounce("full@example.org", "mailboxfull", False, "4.2.2")
    for n, day in enumerate((0, 2)):
        store.record(meta(n, T0 + timedelta(days=day)), full, "accept")
    conn = suppressions.connect(str(db), write=True)
    assert suppressions.rebuild(conn, Policy(soft_threshold=2))["added"] == 1
    assert q(db, "SELECT category FROM suppressions")[0][0] == "soft"
    assert suppressions.rebuild(conn, Policy())["removed"] == 1
    assert q(db, "SELECT COUNT(*) FROM suppressions")[0][0] == 0
    conn.close()


def test_rebuild_reports_suppressions_whose_reason_or_dates_changed(store: Store, db: Path) -> None:
    # A hard bounce, then a complaint: the hook suppressed at the bounce. Edit the stored reason and date as an
    # older policy (or a hand edit) might have left them: a rebuild rewrites them and must say so.
    store.record(meta(1, T0), bounce("dead@example.org"), "accept")
    store.record(meta(2, T0), bounce("gone@example.org"), "accept")
    conn = suppressions.connect(str(db), write=True)
    first = suppressions.rebuild(conn, Policy(), now=T0 + timedelta(days=1))
    assert (first["changed"], first["unchanged"]) == (0, 2)
    conn.execute(
        "UPDATE suppressions SET reason = 'mailboxfull', suppressed_at = '2020-01-01T00:00:00.000Z' "
        "WHERE address = 'dead@example.org'"
    )
    counts = suppressions.rebuild(conn, Policy(), now=T0 + timedelta(days=1))
    assert counts == {"suppressed": 2, "added": 0, "removed": 0, "changed": 1, "unchanged": 1, "manual": 0}
    row = q(db, "SELECT reason, suppressed_at FROM suppressions WHERE address = 'dead@example.org'")[0]
    assert row["reason"] == "userunknown" and row["suppressed_at"] != "2020-01-01T00:00:00.000Z"
    log = q(db, "SELECT action, source FROM suppression_log WHERE address = 'dead@example.org' ORDER BY id")
    assert [tuple(r) for r in log][-1] == ("change", "rebuild")
    conn.close()
