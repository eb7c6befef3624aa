"""The suppression webhook's outbox (bouncemilter.notify) against a real HTTP receiver on loopback: signed bodies,
delivered once, kept and retried with backoff while the receiver is down or failing, and across restarts."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import notify as nt
from bouncemilter import suppressions as sup
from bouncemilter.cli import main
from bouncemilter.config import load_settings
from bouncemilter.suppressions import open_store
from tests.conftest import db_connect
from tests.webhook_receiver import Receiver

SECRET = b"0123456789abcdef-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def config(tmp_path: Path, port: int, db: str = "", **more: object) -> Path:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    (tmp_path / "secret").chmod(0o600)
    extra = "".join(f"{k} = {v}\n" for k, v in more.items())
    path = tmp_path / "b.toml"
    path.write_text(
        f'[store]\ndb = "{db or tmp_path / "b.db"}"\n[notify]\nurl = "http://127.0.0.1:{port}/hooks/suppressions"\n'
        f'secret_file = "{tmp_path / "secret"}"\nretry_min = 1.0\nretry_max = 8.0\ntimeout = 5.0\n{extra}'
    )
    return path


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver):
    db = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    path = config(tmp_path, receiver.port, db)
    settings = load_settings(str(path))
    open_store(settings.db).close()  # the schema
    return settings


def suppress(db: str, *addresses: str, source: str = "opt-out") -> None:
    conn = db_connect(db)
    try:
        sup.suppress_many(conn, addresses, "one-click", "web", source=source)
    finally:
        conn.close()


def notifier(settings, clock: Clock | None = None, logger: logging.Logger | None = None) -> nt.Notifier:
    return nt.Notifier(settings.db, settings, logger or logging.getLogger("test-notify"), clock=clock or Clock())


def outbox(db: str) -> list[dict]:
    conn = db_connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM notify_outbox ORDER BY id")]
    finally:
        conn.close()


def test_each_new_suppression_is_posted_once_signed(setup, receiver: Receiver) -> None:
    suppress(setup.db, "before@example.org")  # before the webhook existed: the feed has it, the webhook not
    n = notifier(setup)
    n.start()
    suppress(setup.db, "alice@example.org", "bob@example.org")
    result = n.run_once()
    assert (result.queued, result.delivered, result.failed, result.waiting) == (2, 2, 0, 0)
    assert [b["address"] for b in receiver.bodies()] == ["alice@example.org", "bob@example.org"]
    headers, body = receiver.posts[0]
    assert nt.verify(SECRET, body, headers["X-Bouncemilter-Signature"])
    assert not nt.verify(b"another-secret-of-16+", body, headers["X-Bouncemilter-Signature"])
    first = json.loads(body)
    assert headers["X-Bouncemilter-Delivery"] == str(first["id"]) and headers["Content-Type"] == "application/json"
    assert first["event"] == "suppression.added"
    assert (first["category"], first["source"], first["reason"]) == ("opt-out", "opt-out", "one-click")
    # nothing more to say, however often it runs; a removal is not a new suppression
    conn = db_connect(setup.db)
    sup.unsuppress(conn, "alice@example.org", "back", "ann")
    conn.close()
    assert n.run_once().delivered == 0 and len(receiver.posts) == 2


def test_an_unreachable_receiver_loses_nothing_and_gets_a_clear_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nobody listens there yet
    settings = load_settings(str(config(tmp_path, port)))
    open_store(settings.db).close()
    clock = Clock()
    n = notifier(settings, clock)
    n.start()
    suppress(settings.db, "alice@example.org", "bob@example.org")
    with caplog.at_level(logging.WARNING, logger="test-notify"):
        result = n.run_once()
    assert (result.delivered, result.failed, result.waiting) == (0, 1, 2)
    assert result.error.startswith("no answer:") and "refused" in result.error.lower()
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "notify_failed"]
    message = record.getMessage()
    assert f"POST http://127.0.0.1:{port}/hooks/suppressions" in message and "kept in the outbox" in message
    assert record.fields["waiting"] == 2 and record.fields["retry_in"] == 1.0  # type: ignore[attr-defined]
    # backoff: not tried again before its time, and the wait doubles per failure
    assert n.pause() == 1.0
    assert n.run_once().failed == 0  # not due yet: nothing posted, nothing lost
    clock.advance(1.5)
    assert n.run_once().failed == 1 and n.pause() == 2.0
    rows = outbox(settings.db)
    assert [r["attempts"] for r in rows] == [2, 0] and all(r["delivered_at"] is None for r in rows)
    assert "refused" in rows[0]["last_error"].lower()
    # the receiver comes up, and a new notifier (a restarted milter) delivers both, once
    r = Receiver(port)
    try:
        clock.advance(60)
        again = notifier(settings, clock)
        assert again.run_once().delivered == 2
        assert again.run_once().delivered == 0
        assert sorted(b["address"] for b in r.bodies()) == ["alice@example.org", "bob@example.org"]
        assert [x["attempts"] for x in outbox(settings.db)] == [3, 1]
    finally:
        r.stop()


@pytest.mark.parametrize(("status", "text"), [(500, "HTTP 500"), (302, "a redirect"), (403, "HTTP 403")])
def test_an_error_answer_is_retried_until_a_2xx(setup, receiver: Receiver, status: int, text: str) -> None:
    clock = Clock()
    n = notifier(setup, clock)
    n.start()
    suppress(setup.db, "alice@example.org")
    receiver.status = status
    result = n.run_once()
    assert result.failed == 1 and text in result.error
    receiver.status = 200
    clock.advance(2)
    assert n.run_once().delivered == 1
    assert len(receiver.posts) == 2 and receiver.posts[0][1] == receiver.posts[1][1]  # the same signed bytes


def test_a_request_the_receiver_refuses_does_not_hold_up_the_others(setup, receiver: Receiver) -> None:
    clock = Clock()
    n = notifier(setup, clock)
    n.start()
    suppress(setup.db, "bad@example.org", "good@example.org")
    receiver.refuse.add("bad@example.org")
    result = n.run_once()
    assert (result.delivered, result.failed, result.error) == (1, 1, "HTTP 422")
    assert [b["address"] for b in receiver.bodies()] == ["bad@example.org", "good@example.org"]
    receiver.refuse.clear()
    clock.advance(2)
    assert n.run_once().delivered == 1 and n.run_once().waiting == 0


def test_a_claimed_row_is_not_posted_by_a_second_sender(setup, receiver: Receiver) -> None:
    clock = Clock()
    one, two = notifier(setup, clock), notifier(setup, clock)
    one.start()
    suppress(setup.db, "alice@example.org")
    conn = db_connect(setup.db)
    conn.row_factory = sqlite3.Row
    try:
        one.enqueue(conn)
        assert [r["address"] for r in one.claim(conn)] == ["alice@example.org"]
        assert two.claim(conn) == []  # the milter and a cron run never post the same row at once
        clock.advance(setup.notify_timeout + nt.CLAIM_SLACK + 1)  # the first died mid-request: the claim expires
        assert [r["address"] for r in two.claim(conn)] == ["alice@example.org"]
    finally:
        conn.close()


def test_a_stop_releases_what_was_not_posted(setup, receiver: Receiver) -> None:
    n = notifier(setup)
    n.start()
    suppress(setup.db, "alice@example.org", "bob@example.org")
    stop = threading.Event()
    stop.set()
    assert n.run_once(stop=stop).delivered == 0
    assert all(r["claimed_until"] is None for r in outbox(setup.db))
    assert n.run_once().delivered == 2


def test_without_a_readable_secret_nothing_is_sent_and_nothing_lost(setup, receiver: Receiver, tmp_path: Path) -> None:
    n = notifier(setup)
    n.start()
    suppress(setup.db, "alice@example.org")
    (tmp_path / "secret").chmod(0o644)
    with pytest.raises(nt.NotifyError, match="readable by every local user"):
        n.run_once()
    (tmp_path / "secret").chmod(0o600)
    (tmp_path / "secret").write_bytes(b"short")
    with pytest.raises(nt.NotifyError, match="at least 16 bytes"):
        n.run_once()
    (tmp_path / "secret").unlink()
    with pytest.raises(nt.NotifyError, match="cannot read"):
        n.run_once()
    assert receiver.posts == [] and len(outbox(setup.db)) == 1
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "secret").chmod(0o600)
    assert n.run_once().delivered == 1


def test_the_loop_keeps_going_and_stops_on_request(setup, receiver: Receiver) -> None:
    n = notifier(setup)
    n.start()
    suppress(setup.db, "alice@example.org")
    stop = threading.Event()
    worker = threading.Thread(target=n.loop, args=(stop,))
    worker.start()
    try:
        for _ in range(200):
            if receiver.posts:
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive() and len(receiver.posts) == 1


def test_cli_notify_status_and_exit_codes(tmp_path: Path, receiver: Receiver) -> None:
    path = config(tmp_path, receiver.port)
    settings = load_settings(str(path))
    open_store(settings.db).close()

    def run(*args: str) -> tuple[int, str]:
        res = CliRunner().invoke(main, ["notify", "--config", str(path), *args], catch_exceptions=False)
        return res.exit_code, res.stdout  # stderr has the JSON log lines

    assert run() == (0, "0 delivered, 0 failed, 0 waiting\n")  # the first run starts at the end of the feed
    suppress(settings.db, "alice@example.org")
    receiver.status = 503
    code, out = run()
    assert code == 1 and "1 failed, 1 waiting" in out and "HTTP 503" in out
    code, out = run("--status")
    assert code == 0 and "1 waiting, 0 delivered" in out and "last failure: alice@example.org" in out
    receiver.status = 204
    code, out = run("--retry-now")
    assert (code, out) == (0, "1 delivered, 0 failed, 0 waiting\n")
    status = json.loads(run("--status", "--format", "json")[1])
    assert (status["waiting"], status["delivered"]) == (0, 1)
    (tmp_path / "none.toml").write_text(f'[store]\ndb = "{settings.db}"\n')
    res = CliRunner().invoke(main, ["notify", "--config", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "no [notify] url" in res.output


def test_config_requires_a_secret_with_the_url(tmp_path: Path) -> None:
    from bouncemilter.config import ConfigError

    path = tmp_path / "b.toml"
    path.write_text('[notify]\nurl = "http://127.0.0.1:9/x"\n')
    with pytest.raises(ConfigError, match=r"notify\.secret_file: required"):
        load_settings(str(path))
    path.write_text('[notify]\nurl = "ftp://127.0.0.1/x"\nsecret_file = "/x"\n')
    with pytest.raises(ConfigError, match=r"notify\.url"):
        load_settings(str(path))
    assert nt.backoff(1, 30, 3600) == 30 and nt.backoff(4, 30, 3600) == 240 and nt.backoff(99, 30, 3600) == 3600
