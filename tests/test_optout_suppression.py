"""Opt-outs on the suppression list (issue #11): suppressed at once as opt-out, never expiring, kept by rebuilds,
counted apart from complaints; and the list as a feed (suppressed --changes-since)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import feed, ingest, reports
from bouncemilter import suppressions as sup
from bouncemilter.classify import classify
from bouncemilter.cli import main
from bouncemilter.config import load_settings
from bouncemilter.maintenance import prune
from bouncemilter.metrics import Metrics
from bouncemilter.policy import Event, Policy, decide
from bouncemilter.store import MIGRATIONS, Store, fmt_time, migrate
from bouncemilter.suppressions import open_store
from bouncemilter.unsubscribe import build_matcher
from tests import report_db
from tests.conftest import db_connect, is_pg

FIXTURES = Path(__file__).parent / "fixtures" / "optout"
NOW = datetime.now(UTC).replace(microsecond=0)
SETTINGS = load_settings(
    None,
    {"bounce_addresses": ["bounces+*@lists.example.com"], "unsubscribe_addresses": ["unsubscribe+*@lists.example.com"]},
)


def request(who: str, n: int = 1) -> bytes:
    """A Gmail request for `who` (the fixture with its subscriber and Message-ID changed)."""
    enc = who.replace("@", "=").encode()
    data = (FIXTURES / "gmail-en.eml").read_bytes().replace(b"alice=example.org", enc)
    return data.replace(b"alice@example.org", who.encode()).replace(b"<CAHxen", f"<CAHx{n}-".encode())


def deliver(store: Store, data: bytes, days_ago: float = 0) -> ingest.Outcome:
    env = ingest.mailbox_envelope(data, build_matcher(SETTINGS))
    env = ingest.Envelope(**{**env.__dict__, "received_at": fmt_time(NOW - timedelta(days=days_ago))})
    return ingest.ingest(data, env, SETTINGS, store)


def bounce(store: Store, rcpt: str, n: int, days_ago: float = 0) -> None:
    data = report_db.dsn(n, rcpt, "5.1.1", f"550 5.1.1 <{rcpt}>: User unknown", "mx.example.org")
    data = b"X-Original-To: bounces+" + rcpt.replace("@", "=").encode() + b"@lists.example.com\n" + data
    deliver(store, data, days_ago)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "b.db"


@pytest.fixture
def store(db: Path):
    s = open_store(str(db), timeout=2.0)
    yield s
    s.close()


def conn_of(db: Path) -> sqlite3.Connection:
    conn = db_connect(db)
    conn.row_factory = sqlite3.Row
    return conn


def row(db: Path, address: str) -> dict | None:
    with conn_of(db) as conn:
        return sup.get_row(conn, address)


def changes(db: Path, cursor: int = 0) -> tuple[list[dict], int]:
    with conn_of(db) as conn:
        return feed.changes(conn, cursor)


def cli(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


# ---------------------------------------------------------------------------------------------------- the policy


def test_policy_an_opt_out_suppresses_at_once_and_counts_after_an_unsuppress_only_if_newer() -> None:
    ev = Event(1, NOW - timedelta(days=2), "opt_out", reason="opt-out")
    d = decide([ev], Policy(), NOW)
    assert (d.suppress, d.category, d.reason) == (True, "opt-out", "opt-out")
    assert d.summary.startswith("opt-out") and d.verdicts[0].note == "unsubscribe request: suppresses at once"
    assert not decide([ev], Policy(), NOW, after=NOW - timedelta(days=1)).suppress
    # complaints switched off do not switch off opt-outs
    assert decide([ev], Policy(complaints=False), NOW).suppress


# -------------------------------------------------------------------------------------------- the store's hook


def test_a_request_suppresses_at_once_as_opt_out_and_feeds_one_addition(store: Store, db: Path) -> None:
    out = deliver(store, request("alice@example.org"))
    assert out.classification is not None and out.classification.kind == "opt_out"
    r = row(db, "alice@example.org")
    assert r is not None and (r["state"], r["source"], r["category"], r["reason"]) == (
        "suppressed",
        "opt-out",
        "opt-out",
        "opt-out",
    )
    assert json.loads(r["evidence"]) and r["summary"].startswith("opt-out")
    rows, cursor = changes(db)
    assert [(c["op"], c["address"], c["category"]) for c in rows] == [("add", "alice@example.org", "opt-out")]
    # the same request again (a retry) and a second one: evidence, no new change
    deliver(store, request("alice@example.org"))
    deliver(store, request("alice@example.org", n=2), days_ago=-0.001)
    assert len(json.loads(row(db, "alice@example.org")["evidence"])) == 2  # type: ignore[index]
    assert changes(db, cursor) == ([], cursor)


def test_an_opt_out_never_expires_rebuilds_keep_it_and_only_unsuppress_lifts_it(store: Store, db: Path) -> None:
    deliver(store, request("alice@example.org"), days_ago=400)
    with conn_of(db) as conn:
        counts = sup.rebuild(conn, Policy(), NOW)
        assert counts["opt_out"] == 1 and counts["removed"] == 0
        # even with its evidence gone (the request's message deleted by hand)
        conn.execute("DELETE FROM recipients")
        conn.execute("DELETE FROM messages")
        assert sup.rebuild(conn, Policy(), NOW)["opt_out"] == 1
    # prune --with-suppressions forgets old suppressions, but not an opt-out
    prune(str(db), 30, with_suppressions=True, now=NOW + timedelta(days=800))
    assert row(db, "alice@example.org")["state"] == "suppressed"  # type: ignore[index]
    with conn_of(db) as conn:
        assert sup.unsuppress(conn, "alice@example.org", "resubscribed", "ann")
    assert row(db, "alice@example.org")["state"] == "unsuppressed"  # type: ignore[index]
    assert [c["op"] for c in changes(db)[0]] == ["add", "remove"]
    # once lifted it may be forgotten, and the feed's changes about it with it (the cursor never goes back)
    deliver(store, request("bob@example.org", n=2))
    _, cursor = changes(db)
    prune(str(db), 30, with_suppressions=True, now=NOW + timedelta(days=800))
    assert row(db, "alice@example.org") is None
    assert [(c["op"], c["address"]) for c in changes(db)[0]] == [("add", "bob@example.org")]
    assert changes(db, cursor) == ([], cursor)


def test_an_opt_out_turns_another_suppression_into_an_opt_out(store: Store, db: Path) -> None:
    bounce(store, "bob@example.org", 1, days_ago=3)
    assert row(db, "bob@example.org")["category"] == "hard"  # type: ignore[index]
    deliver(store, request("bob@example.org"))
    r = row(db, "bob@example.org")
    assert r is not None and (r["source"], r["category"]) == ("opt-out", "opt-out")
    assert len(json.loads(r["evidence"])) == 2  # the bounce stays evidence
    assert [(c["op"], c["category"]) for c in changes(db)[0]] == [("add", "hard"), ("update", "opt-out")]
    with conn_of(db) as conn:
        assert sup.rebuild(conn, Policy(), NOW)["opt_out"] == 1
    assert row(db, "bob@example.org")["category"] == "opt-out"  # type: ignore[index]


def test_vacation_replies_and_newsletters_suppress_nobody(store: Store, db: Path) -> None:
    for name in ("vacation-en.eml", "vacation-de.eml", "newsletter-to-bounce-address.eml"):
        deliver(store, (FIXTURES / name).read_bytes())
    with conn_of(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0] == 0
        assert sorted(r[0] for r in conn.execute("SELECT kind FROM messages")) == [
            "auto_reply",
            "auto_reply",
            "not_bounce",
        ]


def test_suppress_source_opt_out_and_the_category_filter(store: Store, db: Path) -> None:
    bounce(store, "dead@example.org", 1)
    report = report_db.complaint(2, "angry@example.org")
    deliver(store, b"X-Original-To: bounces@lists.example.com\n" + report)
    out = cli("suppress", "--db", str(db), "carol@example.org", "--source", "opt-out", "--reason", "one-click")
    assert out.strip() == "carol@example.org: suppressed"
    cli("suppress", "--db", str(db), "dave@example.org", "--reason", "asked by phone")
    # a manual suppression adds nothing to an opt-out
    cli("suppress", "--db", str(db), "carol@example.org")
    r = row(db, "carol@example.org")
    assert r is not None and (r["source"], r["category"], r["reason"]) == ("opt-out", "opt-out", "one-click")

    def listed(*extra: str) -> dict[str, str]:
        rows = json.loads(cli("suppressed", "--db", str(db), "--format", "json", *extra))
        return {x["address"]: x["category"] for x in rows}

    assert listed() == {
        "dead@example.org": "hard",
        "angry@example.org": "complaint",
        "carol@example.org": "opt-out",
        "dave@example.org": "manual",
    }
    assert listed("--category", "opt-out") == {"carol@example.org": "opt-out"}
    assert listed("--category", "complaint") == {"angry@example.org": "complaint"}
    lines = cli("suppressed", "--db", str(db), "--format", "jsonl", "--category", "opt-out").splitlines()
    assert [json.loads(x)["address"] for x in lines] == ["carol@example.org"]
    assert "--category" in cli("suppressed", "--db", str(db), "--category", "spam", code=2)


# ------------------------------------------------------------------------------------------------------ reports


def test_reports_count_opt_outs_apart_from_complaints(store: Store, db: Path) -> None:
    deliver(store, request("alice@example.org"), days_ago=0.1)
    deliver(store, request("erin@example.org", n=2), days_ago=0.1)
    deliver(store, b"X-Original-To: bounces@lists.example.com\n" + report_db.complaint(3, "angry@example.org"), 0.1)
    with conn_of(db) as conn:
        by_kind = {r.key: r.messages for r in reports.stats(conn, "kind", NOW - timedelta(days=1), NOW).rows}
        w = reports.window_counts(conn, NOW - timedelta(days=1), NOW)
        result = reports.check(conn, NOW - timedelta(days=1), NOW)
        cats = {r["category"]: r["addresses"] for r in conn.execute("SELECT * FROM suppression_categories")}
        rates = {r["domain"]: dict(r) for r in conn.execute("SELECT * FROM domain_rates")}
        recent = [r["address"] for r in conn.execute("SELECT * FROM recent_opt_outs")]
    assert by_kind == {"opt_out": 2, "complaint": 1}
    assert (w.complaints, w.opt_outs) == (1, 2)
    assert " opt_outs=2;;;0 " in result.lines[0] and " complaints=1;" in result.lines[0]
    assert cats == {"opt-out": 2, "complaint": 1}
    assert (rates["example.org"]["opt_outs"], rates["example.org"]["complaints"]) == (2, 1)
    assert sorted(recent) == ["alice@example.org", "erin@example.org"]
    text = cli("history", "--db", str(db), "alice@example.org")
    assert "SUPPRESSED" in text and "(opt-out)" in text and "unsubscribe request: suppresses at once" in text


def test_metrics_count_opt_outs_under_their_own_kind() -> None:
    from prometheus_client import generate_latest

    m = Metrics(process=False)
    m.observe(classify((FIXTURES / "apple-en.eml").read_bytes()), "accept", 0.001)
    m.observe(classify((FIXTURES / "arf-opt-out.eml").read_bytes()), "accept", 0.001)
    text = generate_latest(m.registry).decode()
    assert 'bouncemilter_messages_total{action="accept",kind="opt_out"} 2.0' in text
    assert 'kind="complaint"' not in text


def test_opt_out_action_discard_applies(store: Store) -> None:
    s = load_settings(None, {"unsubscribe_addresses": ["unsubscribe+*@lists.example.com"]})
    from dataclasses import replace
    from types import MappingProxyType

    s = replace(s, actions=MappingProxyType({**s.actions, "opt_out": "discard"}))
    data = request("alice@example.org")
    out = ingest.ingest(data, ingest.mailbox_envelope(data, build_matcher(s)), s, store)
    assert out.action == "discard" and out.classification is not None and out.classification.kind == "opt_out"


# ---------------------------------------------------------------------------------------------------- the feed


def test_feed_cursor_paging_and_the_next_cursor(store: Store, db: Path) -> None:
    for n, who in enumerate(["a@example.org", "b@example.org", "c@example.org"], 1):
        deliver(store, request(who, n))
    with conn_of(db) as conn:
        sup.unsuppress(conn, "b@example.org", "came back", "ann")
    first = cli("suppressed", "--db", str(db), "--changes-since", "0", "--limit", "2", "--format", "jsonl")
    lines = [json.loads(x) for x in first.splitlines()]
    assert [(x["op"], x["address"]) for x in lines[:-1]] == [("add", "a@example.org"), ("add", "b@example.org")]
    assert lines[-1] == {"next_cursor": lines[1]["cursor"], "changes": 2}
    rest = [json.loads(x) for x in cli("suppressed", "--db", str(db), "--changes-since", str(lines[-1]["next_cursor"]),
                                            "--format", "jsonl").splitlines()]  # fmt: skip
    assert [(x["op"], x["address"]) for x in rest[:-1]] == [("add", "c@example.org"), ("remove", "b@example.org")]
    end = rest[-1]["next_cursor"]
    again = json.loads(cli("suppressed", "--db", str(db), "--changes-since", str(end), "--format", "json"))
    assert again == {"changes": [], "next_cursor": end}
    # a category filter still moves the cursor past what it left out
    only = json.loads(cli("suppressed", "--db", str(db), "--changes-since", "0", "--category", "hard", "--format",
                          "json"))  # fmt: skip
    assert only == {"changes": [], "next_cursor": end}
    table = cli("suppressed", "--db", str(db), "--changes-since", "0")
    assert f"4 change(s); next cursor: {end}" in table and "remove" in table


def test_feed_refuses_cursors_it_never_gave(store: Store, db: Path) -> None:
    deliver(store, request("a@example.org"))
    assert "ahead of this database" in cli("suppressed", "--db", str(db), "--changes-since", "99", code=1)
    assert "a cursor is the number" in cli("suppressed", "--db", str(db), "--changes-since", "x1", code=2)
    assert "--format" in cli("suppressed", "--db", str(db), "--changes-since", "0", "--format", "postfix", code=2)
    assert "--changes-since" in cli("suppressed", "--db", str(db), "--changes-since", "0", "--pending", code=2)


def test_feed_sees_every_path_that_changes_the_list(store: Store, db: Path) -> None:
    bounce(store, "dead@example.org", 1)
    with conn_of(db) as conn:
        sup.suppress(conn, "m@example.org", "by hand", "ann")
        sup.suppress(conn, "dead@example.org", "keep it", "ann")  # policy -> manual: an update
        sup.unsuppress(conn, "m@example.org", "", "ann")
        conn.execute("DELETE FROM recipients")  # the evidence gone: a rebuild lifts nothing manual
        sup.rebuild(conn, Policy(), NOW)
    ops = [(c["op"], c["address"], c["source"]) for c in changes(db)[0]]
    assert ops == [
        ("add", "dead@example.org", "policy"),
        ("add", "m@example.org", "manual"),
        ("update", "dead@example.org", "manual"),
        ("remove", "m@example.org", "manual"),
    ]


def test_migration_seeds_the_feed_with_the_list_and_widens_the_source(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, [m for m in MIGRATIONS if m[0] < 9])
    conn.execute(
        """INSERT INTO suppressions (address, state, source, category, summary, suppressed_at, created_at,
               updated_at) VALUES ('old@example.org', 'suppressed', 'policy', 'hard', 'hard bounce', '2025-01-01',
               '2025-01-01', '2025-01-01')"""
    )
    conn.close()
    with open_store(str(path)) as s:  # opening migrates
        deliver(s, request("alice@example.org"))
    rows, _ = changes(path)
    assert [(c["op"], c["address"], c["source"]) for c in rows] == [
        ("add", "old@example.org", "policy"),
        ("add", "alice@example.org", "opt-out"),
    ]
    with conn_of(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'view'")} >= {
            "suppression_list",
            "domain_rates",
            "recent_bounces",
            "daily_counts",
            "recent_opt_outs",
        }
        with pytest.raises(sqlite3.IntegrityError):
            c.execute("UPDATE suppressions SET source = 'someone' WHERE address = 'old@example.org'")


# ------------------------------------------------------------------------ signed unsubscribe addresses (#9's rules)


def test_signed_unsubscribe_addresses_follow_the_rules_of_signed_return_paths(store: Store, tmp_path: Path) -> None:
    from bouncemilter import signing
    from bouncemilter.verdict import make_verifier

    keys = tmp_path / "keys"
    keys.write_text("an-unsubscribe-signing-key-0123456789\n")
    keys.chmod(0o600)
    (tmp_path / "b.toml").write_text(
        '[bounce]\naddresses = ["bounces+*@lists.example.com"]\n'
        '[unsubscribe]\naddresses = ["unsubscribe+*@lists.example.com"]\n'
        f'[signing]\nsecret_file = "{keys}"\nverify = "record"\n'
    )
    settings = load_settings(str(tmp_path / "b.toml"))
    matcher = build_matcher(settings)
    verifier = make_verifier(settings, matcher)
    assert verifier is not None
    # what `bouncemilter sign --unsubscribe alice@example.org` prints for List-Unsubscribe
    # (signed before the fixture's request arrived, 2026-11-24: tokens are checked against the arrival day)
    signed = signing.sign(signing.KeyRing.from_text(keys.read_text()), "unsubscribe+*@lists.example.com",
                          "alice@example.org", now=datetime(2026, 11, 20, tzinfo=UTC))  # fmt: skip
    assert signed.startswith("unsubscribe+alice=example.org+")
    assert verifier.check_address(signed, now=datetime(2026, 11, 24, tzinfo=UTC)).ok

    def send(to: str, n: int) -> ingest.Outcome:
        data = request("alice@example.org", n).replace(b"unsubscribe+alice=example.org@lists.example.com", to.encode())
        return ingest.ingest(data, ingest.mailbox_envelope(data, matcher), settings, store, verifier=verifier)

    # an unsigned (forgeable) request is recorded, unverified, and suppresses nobody
    unsigned = send("unsubscribe+alice=example.org@lists.example.com", 1)
    assert unsigned.classification is not None and unsigned.classification.kind == "opt_out"
    db = store.path if is_pg(store.path) else Path(store.path)
    assert row(db, "alice@example.org") is None
    (m,) = query(db, "SELECT verified, verification FROM messages WHERE id = ?", unsigned.row_id)
    assert m[0] == 0 and "unsigned" in m[1]
    # the signed one suppresses
    signed_out = send(signed, 2)
    (m,) = query(db, "SELECT verified, verification FROM messages WHERE id = ?", signed_out.row_id)
    assert m[0] == 1, m
    r = row(db, "alice@example.org")
    assert r is not None and (r["state"], r["category"]) == ("suppressed", "opt-out")
    today = signing.sign(signing.KeyRing.from_text(keys.read_text()), "unsubscribe+*@lists.example.com",
                         "alice@example.org")  # fmt: skip
    res = CliRunner().invoke(main, ["verify", "--config", str(tmp_path / "b.toml"), today])
    assert res.exit_code == 0 and res.output.startswith("valid for alice@example.org")
    res = CliRunner().invoke(main, ["sign", "--config", str(tmp_path / "b.toml"), "--unsubscribe", "bob@example.org"])
    assert res.exit_code == 0 and res.output.startswith("unsubscribe+bob=example.org+")


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    with db_connect(db) as conn:
        return conn.execute(sql, params).fetchall()
