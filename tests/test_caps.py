"""Caps on what one report can do (issue #15, 5.): new suppressions per message and per client hour are held
as pending past the caps, decided by approve/reject; recipients per message are capped and counted."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from bouncemilter.config import load_settings
from bouncemilter.ingest import Envelope, ingest
from bouncemilter.policy import Policy
from bouncemilter.suppressions import open_store
from tests.conftest import db_connect


def dsn(token: str, recipients: list[str]) -> bytes:
    groups = "".join(
        f"Final-Recipient: rfc822; {r}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown\n\n"
        for r in recipients
    )
    return f"""From: MAILER-DAEMON@mx.remote.example
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <{token}@mx.remote.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Delivery failed.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example

{groups}--b--
""".replace("\n", "\r\n").encode()


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}@example.org" for i in range(n)]


class Env:
    def __init__(self, path: Path | str, **limits: int) -> None:
        self.path = str(path)
        self.settings = replace(load_settings(None, {"db": self.path}), **limits)
        self.store = open_store(self.path)
        self.store.suppressions.policy = Policy.from_settings(self.settings)

    def send(self, token: str, recipients: list[str], client: str = "192.0.2.9", internal: bool = False) -> int:
        env = Envelope(client_addr=client, bounce_addresses=["bounces@example.com"], internal=internal)
        return ingest(dsn(token, recipients), env, self.settings, self.store).row_id

    def count(self, sql: str, *params: object) -> int:
        conn = db_connect(self.path)
        try:
            return conn.execute(sql, params).fetchone()[0]
        finally:
            conn.close()

    def suppressed(self) -> int:
        return self.count("SELECT COUNT(*) FROM suppressions WHERE state = 'suppressed'")

    def pending(self) -> int:
        return self.count("SELECT COUNT(*) FROM pending_suppressions")


def cli(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path / "caps.db"


@pytest.fixture
def env(db: Path | str) -> Env:
    e = Env(db)
    yield e
    e.store.close()


def test_one_report_suppresses_at_most_the_per_message_cap(env: Env) -> None:
    row = env.send("big", names("a", 250))
    assert env.suppressed() == 100 and env.pending() == 150  # default suppressions_per_message = 100
    held = json.loads(cli("suppressed", "--db", env.path, "--pending", "--format", "json"))
    assert len(held) == 150 and all(h["message_row"] == row and h["client_addr"] == "192.0.2.9" for h in held)
    assert all("per-message cap" in h["held_because"] and h["summary"].startswith("hard bounce") for h in held)
    table = cli("suppressed", "--db", env.path, "--pending")
    assert "150 pending suppression(s)" in table
    # held addresses are not on the list Postfix gets
    access_map = cli("suppressed", "--db", env.path, "--format", "postfix")
    assert held[0]["address"] not in access_map
    # check warns while any are pending
    out = cli("check", "--db", env.path, "--since", "1h", "--max-complaints", "10", code=1)
    assert "150 suppression(s) pending approval" in out and "pending=150" in out
    # approve one by address, reject the rest of the report
    out = cli("approve", "--db", env.path, held[0]["address"], "--by", "ann")
    assert "1 approved, 149 still pending" in out
    out = cli("reject", "--db", env.path, "--message", str(row), "--reason", "forged", "--by", "ann")
    assert "149 rejected, 0 still pending" in out
    assert env.suppressed() == 101 and env.pending() == 0
    assert cli("check", "--db", env.path, "--since", "1h", "--max-complaints", "10").startswith("BOUNCEMILTER OK")
    history = json.loads(cli("history", "--db", env.path, held[1]["address"], "--format", "json"))
    assert history["suppression"]["state"] == "unsuppressed" and history["pending"] is None
    assert [e["action"] for e in history["log"]] == ["hold", "reject"]
    # a rebuild keeps both decisions: rejected evidence does not count, approved stays suppressed
    cli("rebuild-suppressions", "--db", env.path)
    assert env.suppressed() == 101 and env.pending() == 0


def test_per_client_hourly_cap_and_who_it_spares(db: Path | str) -> None:
    env = Env(db, limit_suppressions_per_client_hour=5)
    for i in range(8):
        env.send(f"c{i}", [f"c{i}@example.org"], client="203.0.113.9")
    assert env.suppressed() == 5 and env.pending() == 3
    held = json.loads(cli("suppressed", "--db", env.path, "--pending", "--format", "json"))
    assert {h["address"] for h in held} == {"c5@example.org", "c6@example.org", "c7@example.org"}
    assert all("per-client cap" in h["held_because"] and "203.0.113.9" in h["held_because"] for h in held)
    # another client has its own budget; Postfix's own bounces and imports have no client cap at all
    env.send("other", ["o@example.org"], client="198.51.100.7")
    for i in range(7):
        env.send(f"own{i}", [f"own{i}@example.org"], client="127.0.0.1", internal=True)
        env.send(f"imp{i}", [f"imp{i}@example.org"], client="")
    assert env.suppressed() == 5 + 1 + 14 and env.pending() == 3
    # more evidence for a held address stays held (adds evidence) until decided
    env.send("again", ["c7@example.org"], client="198.51.100.7")
    assert env.pending() == 3
    (c7,) = [h for h in json.loads(cli("suppressed", "--db", env.path, "--pending", "--format", "json"))
             if h["address"] == "c7@example.org"]  # fmt: skip
    assert len(c7["evidence"]) == 2
    cli("approve", "--db", env.path, "--client", "203.0.113.9")
    assert env.pending() == 0 and env.suppressed() == 23
    env.store.close()


def test_per_client_cap_holds_inside_one_group_commit_batch(db: Path | str) -> None:
    """Six new suppressions from one client in one transaction (the milter's group commit; on PostgreSQL the
    batch's policy reads all go out before its first write): the cap still counts the ones before it."""
    env = Env(db, limit_suppressions_per_client_hour=3)
    items: list[tuple] = []

    class Collect:
        def record(self, meta, result, action):  # type: ignore[no-untyped-def]
            items.append((meta, result, action))
            return 0, True

    for i in range(6):
        envelope = Envelope(client_addr="203.0.113.7", bounce_addresses=["bounces@example.com"])
        ingest(dsn(f"b{i}", [f"b{i}@example.org"]), envelope, env.settings, Collect())
    out = env.store.record_many(items)
    assert [inserted for _, inserted in out] == [True] * 6
    assert env.suppressed() == 3 and env.pending() == 3
    held = json.loads(cli("suppressed", "--db", env.path, "--pending", "--format", "json"))
    assert {h["address"] for h in held} == {"b3@example.org", "b4@example.org", "b5@example.org"}
    env.store.close()


def test_caps_of_zero_mean_no_cap(db: Path | str) -> None:
    env = Env(db, limit_suppressions_per_message=0, limit_suppressions_per_client_hour=0)
    env.send("all", names("z", 150))
    assert env.suppressed() == 150 and env.pending() == 0
    env.store.close()


def test_recipients_per_message_are_capped_and_counted(db: Path | str) -> None:
    env = Env(db, limit_recipients_per_message=1000, limit_suppressions_per_message=0)
    row = env.send("huge", names("h", 1500))
    assert env.count("SELECT COUNT(*) FROM recipients WHERE message_id = ?", row) == 1000
    assert env.count("SELECT recipients_dropped FROM messages WHERE id = ?", row) == 500
    assert env.count("SELECT recipient_count FROM messages WHERE id = ?", row) == 1000
    env.store.close()


def test_approve_and_reject_need_exactly_one_selection(env: Env) -> None:
    assert "exactly one of" in cli("approve", "--db", env.path, code=2)
    assert "exactly one of" in cli("reject", "--db", env.path, "a@example.org", "--all", code=2)
    assert "0 approved" in cli("approve", "--db", env.path, "--all", code=1)
