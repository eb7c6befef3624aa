"""Inbound verification (bouncemilter.verdict) through ingest() into a real store: which rows are verified, and
that only verified evidence moves the suppression list. The milter's RCPT-time refusal is tested in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import Milter
import pytest

from bouncemilter import suppressions
from bouncemilter.config import load_settings
from bouncemilter.ingest import Envelope, ingest
from bouncemilter.milter import BounceMilter
from bouncemilter.policy import Policy
from bouncemilter.reports import stats
from bouncemilter.signing import KeyRing, make_token, sign
from bouncemilter.store import Store
from bouncemilter.suppressions import open_store
from bouncemilter.verdict import Verifier
from bouncemilter.verp import BounceMatcher, parse_bounce_address

from . import test_milter
from .conftest import query_rows
from .e2e import messages as M
from .e2e import signed_messages as S
from .test_milter import feed

setup = test_milter.setup  # the milter fixture (unix, TCP and classic protocol sequences)

KEYS = KeyRing(["verdict test key 0123456789"])
PATTERN = "bounces+*@test.example"
MATCHER = BounceMatcher([parse_bounce_address(PATTERN)])
SETTINGS = load_settings(None, {"bounce_addresses": [PATTERN]})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(str(tmp_path / "v.db"))
    yield s
    s.close()


def record(store: Store, raw: bytes, to: str, mode: str = "record", received_at: str = "") -> dict:
    m = MATCHER.match(to)
    env = Envelope(
        bounce_addresses=[m.address] if m else [],
        verp_recipients=[m.verp_recipient] if m and m.verp_recipient else [],
        received_at=received_at,
    )
    out = ingest(raw, env, SETTINGS, store, verifier=Verifier(KEYS, MATCHER, mode))
    (row,) = query_rows(store.path, "SELECT * FROM messages WHERE id = ?", (out.row_id,))
    return {"out": out, "row": dict(row), "rcpts": [dict(r) for r in query_rows(
        store.path, "SELECT * FROM recipients WHERE message_id = ? ORDER BY id", (out.row_id,))]}  # fmt: skip


def suppressed(store: Store) -> set[str]:
    return {r["address"] for r in query_rows(store.path, "SELECT address FROM suppressions WHERE state='suppressed'")}


def signed(recipient: str | None, **kw) -> str:  # type: ignore[no-untyped-def]
    return sign(KEYS, PATTERN, recipient, **kw)


def test_signed_verp_bounce_is_verified_and_suppresses(store: Store) -> None:
    got = record(store, M.hard_bounce("v1", "alice@example.org"), signed("alice@example.org"))
    assert got["row"]["verified"] == 1 and "signed return path for alice@example.org" in got["row"]["verification"]
    assert [(r["address"], r["verified"], r["hard"]) for r in got["rcpts"]] == [("alice@example.org", 1, 1)]
    assert got["out"].verified is True
    assert suppressed(store) == {"alice@example.org"}


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("bounces+victim=example.org@test.example", "unsigned VERP"),
        ("bounces@test.example", "bare bounce address"),
        ("TAMPER", "token does not verify"),
        ("EXPIRED", "token expired"),
        ("bounces+victim=example.org+" + "b" * 16 + "@test.example", "token"),
    ],
)
def test_forgeries_are_kept_unverified_and_never_suppress(store: Store, to: str, why: str) -> None:
    if to == "TAMPER":
        good = signed("victim@example.org")
        local, _, domain = good.partition("@")
        to = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    elif to == "EXPIRED":
        to = signed("victim@example.org", now=datetime.now(UTC) - timedelta(days=31))
    got = record(store, M.hard_bounce("v2", "victim@example.org"), to)
    assert got["row"]["verified"] == 0 and why in got["row"]["verification"], got["row"]["verification"]
    assert [(r["address"], r["verified"]) for r in got["rcpts"]] == [("victim@example.org", 0)]
    assert suppressed(store) == set()
    # history shows the row and why it did not count; a rebuild agrees
    conn = suppressions.connect(store.path, write=True)
    try:
        h = suppressions.history(conn, "victim@example.org", Policy(), datetime.now(UTC))
        assert h["events"][0]["verified"] is False and not h["events"][0]["counted"]
        assert "unverified" in h["events"][0]["verdict"]
        assert suppressions.rebuild(conn, Policy())["suppressed"] == 0
    finally:
        conn.close()


def test_a_signed_bounce_speaks_only_about_its_own_recipient(store: Store) -> None:
    # the attacker received our mail (signed for him) and reports a victim in the DSN body
    got = record(store, M.hard_bounce("v3", "victim@example.org"), signed("attacker@evil.example"))
    assert [(r["address"], r["reported_address"], r["verified"]) for r in got["rcpts"]] == [
        ("attacker@evil.example", "victim@example.org", 1)
    ]
    assert suppressed(store) == {"attacker@evil.example"}


def test_message_token_without_sent_log_verifies_the_message(store: Store) -> None:
    got = record(store, M.hard_bounce("v4", "bob@example.org"), signed(None))
    assert got["row"]["verified"] == 1 and "message token" in got["row"]["verification"]
    assert suppressed(store) == {"bob@example.org"}


def test_arf_quoting_a_signed_original_is_verified(store: Store) -> None:
    rp = signed("frank@example.com")
    got = record(store, S.arf("v5", "frank@example.com", return_path=rp), "bounces@test.example")
    assert got["row"]["verified"] == 1 and "returned original's signed return path" in got["row"]["verification"]
    assert suppressed(store) == {"frank@example.com"}


def test_arf_with_redacted_recipient_is_named_by_the_signed_original(store: Store) -> None:
    rp = signed("grace@example.com")
    got = record(store, S.arf("v6", "grace@example.com", return_path=rp, rcpt_to=""), "bounces@test.example")
    assert [(r["address"], r["verified"]) for r in got["rcpts"]] == [("grace@example.com", 1)]
    assert suppressed(store) == {"grace@example.com"}


def test_forged_arf_is_unverified(store: Store) -> None:
    for i, raw in enumerate(
        [
            S.arf("v7", "victim@example.com"),  # no return path at all
            S.arf("v8", "victim@example.com", return_path="bounces+victim=example.com@test.example"),  # unsigned
            # a real signed original of the forger's, naming a victim in the report
            S.arf("v9", "forger@evil.example", return_path=signed("forger@evil.example"), rcpt_to="victim@example.com"),
        ]
    ):
        got = record(store, raw, "bounces@test.example")
        if i < 2:
            assert got["row"]["verified"] == 0
    assert "victim@example.com" not in suppressed(store)


def test_auto_reply_never_suppresses_even_verified(store: Store) -> None:
    got = record(store, M.auto_reply("v10", "gina@example.com"), signed("gina@example.com"))
    assert got["row"]["kind"] == "auto_reply" and got["row"]["verified"] == 1
    assert suppressed(store) == set()


def test_verify_off_checks_nothing_and_counts_as_before(store: Store) -> None:
    got = record(store, M.hard_bounce("v11", "ivy@example.org"), "bounces@test.example", mode="off")
    assert got["row"]["verified"] is None and got["rcpts"][0]["verified"] is None
    assert suppressed(store) == {"ivy@example.org"}


def test_token_age_is_judged_when_the_message_arrived(store: Store) -> None:
    then = datetime(2026, 1, 10, tzinfo=UTC)
    to = signed("jack@example.org", now=then - timedelta(days=2))
    got = record(store, M.hard_bounce("v12", "jack@example.org"), to, received_at="2026-01-10T12:00:00.000Z")
    assert got["row"]["verified"] == 1  # 2 days old when it arrived, whatever today is


def test_stats_show_the_unverified_split(store: Store) -> None:
    record(store, M.hard_bounce("v13", "kim@example.org"), signed("kim@example.org"))
    record(store, M.hard_bounce("v14", "lee@example.org"), "bounces@test.example")
    conn = suppressions.connect(store.path)
    try:
        st = stats(conn, "kind", None, datetime.now(UTC) + timedelta(seconds=1))
        assert st.total_messages == 2 and st.total_unverified == 1
        assert st.rows[0].unverified == 1
        by_domain = stats(conn, "domain", None, datetime.now(UTC) + timedelta(seconds=1))
        assert by_domain.rows[0].recipients == 2 and by_domain.rows[0].unverified == 1
        views = {r["domain"]: r for r in conn.execute("SELECT * FROM domain_rates")}
        assert views["example.org"]["unverified"] == 1
    finally:
        conn.close()


# -- the milter at RCPT (verify = "reject")


def reject_setup(setup, mode: str = "reject"):  # type: ignore[no-untyped-def]
    store, cap = setup()
    rt = BounceMilter.runtime
    rt.verifier = Verifier(KEYS, rt.matcher, mode)
    return store, cap


@pytest.mark.parametrize(
    "to",
    ["<bounces+victim=example.org@test.example>", "TAMPER", f"<bounces+{make_token(KEYS, None, day=1)}@test.example>"],
    ids=["unsigned-verp", "tampered", "expired"],
)
def test_reject_mode_refuses_bad_return_paths_at_rcpt(setup, to: str) -> None:  # type: ignore[no-untyped-def]
    store, cap = reject_setup(setup)
    if to == "TAMPER":
        good = sign(KEYS, "bounces+*@test.example", "victim@example.org")
        to = "<" + good.replace("+", "+x", 1) + ">"  # bounces+xvictim...: the token no longer matches
    rc, ctx = feed(M.hard_bounce("r1", "victim@example.org"), rcpts=(to,))
    assert rc == Milter.REJECT
    assert ctx._reply[:2] == ("550", "5.7.1")
    assert store.records == []
    (line,) = cap.events("rejected")
    assert line["verified"] is False and line["recipient"] == to.strip("<>").lower()


def test_reject_mode_accepts_valid_bare_and_internal(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = reject_setup(setup)
    good = sign(KEYS, "bounces+*@test.example", "alice@example.org")
    assert feed(M.hard_bounce("r2"), rcpts=(f"<{good}>",))[0] == Milter.ACCEPT
    assert feed(M.hard_bounce("r3"), rcpts=("<bounces@test.example>",))[0] == Milter.ACCEPT
    # Postfix's own bounce (non_smtpd path) is never refused, only recorded unverified
    assert feed(M.hard_bounce("r4"), rcpts=("<bounces+x=example.org@test.example>",), internal=True)[0] == (
        Milter.ACCEPT
    )
    assert len(store.records) == 3 and cap.events("rejected") == []
    assert [line["verified"] for line in cap.events("message")] == [True, False, False]


def test_reject_mode_keeps_the_rcpt_reply_on_a_unix_socket(setup) -> None:  # type: ignore[no-untyped-def]
    reject_setup(setup)
    BounceMilter.runtime.no_reply = True
    assert BounceMilter.protocol_mask() & Milter.P_NR_RCPT  # not negotiated away: RCPT gets an answer
    assert not BounceMilter.protocol_mask() & Milter.P_NR_HDR
    BounceMilter.runtime.verifier.mode = "record"
    assert not BounceMilter.protocol_mask() & Milter.P_NR_RCPT


def test_record_mode_logs_the_verdict(setup) -> None:  # type: ignore[no-untyped-def]
    _, cap = reject_setup(setup, "record")
    rc, _ = feed(M.hard_bounce("r5"), rcpts=("<bounces+victim=example.org@test.example>",))
    assert rc == Milter.ACCEPT
    (line,) = cap.events("message")
    assert line["verified"] is False and "unsigned VERP" in line["verification"]


@pytest.mark.parametrize(
    "verps",
    [
        ["Alice@Example.ORG"],
        ["alice@bücher.example"],  # an IDN domain: rows hold its A-label (classify/address.py)
        ["a@example.org", "B@example.org"],
        ["vic\u200btim@example.org"],  # an invisible character: the address check drops it
        [""],
    ],
)
def test_row_addresses_are_the_addresses_the_store_writes(verps: list[str]) -> None:
    # the verdict is kept per recipients.address: both must pick the same address for each row
    from bouncemilter.classify import classify
    from bouncemilter.store import _recipient_rows
    from bouncemilter.verdict import row_addresses

    from .conftest import make_meta

    for raw in (M.dsn("r1", "Carol@Example.NET"), M.auto_reply("r2"), M.ordinary("r3")):
        result = classify(raw)
        meta = make_meta(verp_recipients=verps)
        assert row_addresses(meta, result) == list(dict.fromkeys(r[0] for r in _recipient_rows(meta, result) if r[0]))


def test_fetched_bounces_are_verified_like_the_milters(store: Store) -> None:
    # a hosted mailbox (bouncemilter.fetch) keeps the envelope recipient in X-Original-To: a forged bounce
    # fetched from it must not suppress either
    from bouncemilter.fetch import Recorder, Stats

    def delivered(raw: bytes, to: str) -> bytes:
        return f"Return-Path: <>\r\nX-Original-To: {to}\r\n".encode() + raw

    forged = delivered(M.hard_bounce("f1", "victim@example.org"), "bounces+victim=example.org@test.example")
    # signed shortly before the bounce's Date (its arrival time, which the token's age is judged at)
    sent_at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    genuine = delivered(M.hard_bounce("f2", "alice@example.org"), signed("alice@example.org", now=sent_at))
    recorder = Recorder(store, SETTINGS, MATCHER, lambda: Verifier(KEYS, MATCHER, "record"))  # the milter's way
    try:
        assert recorder.commit([("a", forged, len(forged)), ("b", genuine, len(genuine))], Stats()) == {
            "a": "hard",
            "b": "hard",
        }
    finally:
        recorder.close()
    got = {r["address"]: r["verified"] for r in query_rows(store.path, "SELECT address, verified FROM recipients")}
    assert got == {"victim@example.org": 0, "alice@example.org": 1}
    assert suppressed(store) == {"alice@example.org"}
