"""Fault tests: a broken store defers (never loses) mail; odd and huge messages go through unharmed.

Every test repairs what it broke, so the shared rig stays usable for the other tests.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import messages as M
from .conftest import BOUNCES, E2E
from .postfix_rig import Rig


@contextlib.contextmanager
def store_dir_gone(e2e: E2E) -> Iterator[None]:
    db_dir = e2e.milter.db.parent
    moved = db_dir.with_name("db.gone")
    db_dir.rename(moved)
    try:
        yield
    finally:
        moved.rename(db_dir)


def _assert_tempfailed(code: int, reply: str) -> None:
    assert 400 <= code < 500, f"expected a 4xx, got {code} {reply}"
    assert "4.3.0" in reply and "bouncemilter" in reply


def _store_errors(e2e: E2E, token: str) -> list[dict]:
    return [e for e in e2e.milter.events("message") if token in e.get("message_id", "") and e.get("stored") is False]


def test_store_directory_removed_then_repaired(e2e: E2E, token: str) -> None:
    raw = M.hard_bounce(token)
    with store_dir_gone(e2e):
        code, reply, _ = e2e.send("", [BOUNCES], raw)
        _assert_tempfailed(code, reply)
    assert e2e.message_rows(token) == []
    assert _store_errors(e2e, token)[0]["action"] == "tempfail"
    # The sender retries after the repair: stored once, delivered once; a second retry is not stored again.
    for _ in range(2):
        code, reply, _ = e2e.send("", [BOUNCES], raw)
        assert code == 250, reply
    assert len(e2e.message_rows(token)) == 1
    e2e.wait_file("bounces", token)


def test_store_read_only_then_repaired(e2e: E2E, token: str) -> None:
    if not e2e.milter.drop_dac:
        pytest.skip("needs setpriv to run the milter without CAP_DAC_OVERRIDE (root ignores file modes)")
    db = e2e.milter.db
    mode = db.stat().st_mode & 0o777
    os.chmod(db, 0o444)
    try:
        code, reply, _ = e2e.send("", [BOUNCES], M.soft_bounce(token))
        _assert_tempfailed(code, reply)
    finally:
        os.chmod(db, mode)
    assert e2e.message_rows(token) == []
    code, reply, _ = e2e.send("", [BOUNCES], M.soft_bounce(token))
    assert code == 250, reply
    assert len(e2e.message_rows(token)) == 1


def test_store_locked_beyond_timeout_then_released(e2e: E2E, token: str) -> None:
    locker = sqlite3.connect(e2e.milter.db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        code, reply, _ = e2e.send("", [BOUNCES], M.delay_warning(token))
        _assert_tempfailed(code, reply)
        assert time.monotonic() - t0 < 8  # store.timeout = 1 s in the test config
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    code, reply, _ = e2e.send("", [BOUNCES], M.delay_warning(token))
    assert code == 250, reply
    assert len(e2e.message_rows(token)) == 1


def test_postfix_own_bounce_is_never_deferred_by_a_broken_store(e2e: E2E, token: str) -> None:
    with store_dir_gone(e2e):
        e2e.rig.sendmail(BOUNCES, ["nosuch@test.example"], M.ordinary(token))
        delivered = e2e.wait_file("bounces", token)  # the DSN quoting our message
        e2e.wait_queue()
    assert b"Undelivered Mail" in delivered.read_bytes()
    errors = [
        e
        for e in e2e.milter.events("message")
        if e.get("stored") is False and e.get("internal") is True and e.get("level") == "error"
    ]
    assert errors and errors[-1]["action"] == "accept" and errors[-1]["store_error"]


@pytest.fixture(scope="module")
def remote(e2e: E2E) -> Iterator[Rig]:
    """A second Postfix playing a remote MTA: it bounces mail for remote.test and relays the DSN to our rig."""
    rig = Rig(
        e2e.base / "remote",
        extra_main_cf={
            "myhostname": "mx.remote.test",
            "mydomain": "remote.test",
            "mydestination": "$myhostname, localhost, remote.test",
            "local_recipient_maps": "",  # accept any local part, then fail it at delivery -> a real DSN
            "smtp_connect_timeout": "5s",
        },
        extra_transport=f"test.example smtp:[127.0.0.1]:{e2e.rig.smtp_port}\n",
    )
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()


def test_relayed_dsn_stays_queued_while_store_is_broken(e2e: E2E, remote: Rig, token: str) -> None:
    with store_dir_gone(e2e):
        # The remote accepts, fails local delivery, and relays its DSN to us over SMTP: we answer 451.
        with smtplib.SMTP("127.0.0.1", remote.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.example")
            smtp.sendmail(BOUNCES, ["nosuch@remote.test"], M.ordinary(token))
        deadline = time.monotonic() + 30
        log = Path(remote.log)
        while time.monotonic() < deadline and "4.3.0 bouncemilter" not in log.read_text():
            time.sleep(0.2)
        assert "4.3.0 bouncemilter" in log.read_text(), log.read_text()[-3000:]
        assert not remote.queue_empty()  # deferred, not lost
    remote.flush()
    assert remote.wait_queue(30), remote.queue_json()
    row = e2e.wait_message_row(token, column="original_message_id")
    assert row["kind"] == "bounce" and row["envelope_from"] == ""
    assert len(e2e.query("SELECT id FROM messages WHERE original_message_id LIKE ?", (f"%{token}%",))) == 1
    e2e.wait_file("bounces", token)


def test_garbage_message_goes_through(e2e: E2E, token: str) -> None:
    code, reply, qid = e2e.send("", [BOUNCES], M.garbage(token))
    assert code == 250, reply
    rows = e2e.query("SELECT * FROM messages WHERE queue_id = ?", (qid,))
    assert len(rows) == 1 and rows[0]["kind"] == "not_bounce"
    e2e.wait_file("bounces", token)
    # and the milter is still there for the next one
    code, reply, _ = e2e.send("", [BOUNCES], M.hard_bounce(token + "-after"))
    assert code == 250, reply


def test_50mb_message_goes_through(e2e: E2E, token: str) -> None:
    raw = M.big_bounce(token)
    t0 = time.monotonic()
    code, reply, qid = e2e.send("", [BOUNCES], raw)
    assert code == 250, reply
    assert time.monotonic() - t0 < 60
    row = e2e.wait_message_row(token)
    assert row["kind"] == "bounce"
    assert row["size"] >= len(raw)  # from the client's SIZE=, as the milter only saw the first MiB
    (rcpt,) = e2e.recipient_rows(row["id"])
    assert rcpt["address"] == "henry@example.org" and rcpt["reason"] == "userunknown"
    logged = [e for e in e2e.milter.events("message") if e.get("queue_id") == qid]
    assert logged and logged[0]["truncated"] is True
    path = e2e.wait_file("bounces", token, timeout=60)
    assert path.stat().st_size >= len(raw) - raw.count(b"\r\n")  # the maildir copy has LF line ends
