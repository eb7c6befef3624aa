"""The sent log ([signing] log_sent): written off the SMTP path, pruned, and used as evidence by the verdict."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import Milter
import pytest

from bouncemilter import sentlog
from bouncemilter.config import load_settings
from bouncemilter.ingest import Envelope, ingest
from bouncemilter.milter import BounceMilter
from bouncemilter.sentlog import SentLog, SentReader
from bouncemilter.signing import KeyRing, Signer, sign
from bouncemilter.store import Store
from bouncemilter.suppressions import open_store
from bouncemilter.verdict import Verifier
from bouncemilter.verp import BounceMatcher, parse_bounce_address

from . import test_milter
from .conftest import query_rows
from .e2e import messages as M
from .test_milter import Capture, feed

setup = test_milter.setup

KEYS = KeyRing(["sent log test key 0123456789"])
PATTERN = "bounces+*@test.example"
MATCHER = BounceMatcher([parse_bounce_address(PATTERN)])
SETTINGS = load_settings(None, {"bounce_addresses": [PATTERN]})


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    db = request.getfixturevalue("pg_url") if request.param == "postgres" else str(tmp_path / "sent.db")
    s = open_store(db)
    yield s
    s.close()


def test_rows_are_written_in_batches_and_found_again(store: Store) -> None:
    log = SentLog(store, 30).start()
    log.add("Q1", "<m1@test.example>", "news@test.example", "bounces+aaaaaaaaaaaaaaaa@test.example",
            "aaaaaaaaaaaaaaaa", ["Alice@example.org", "bob@example.org"])  # fmt: skip
    log.add("Q2", " <m2@test.example> ", "news@test.example", "rp", "bbbbbbbbbbbbbbbb", ["carol@example.org"])
    log.close()
    rows = query_rows(store.path, "SELECT * FROM sent ORDER BY id")
    assert [(r["queue_id"], r["message_id"], r["token"]) for r in rows] == [
        ("Q1", "<m1@test.example>", "aaaaaaaaaaaaaaaa"),
        ("Q2", "<m2@test.example>", "bbbbbbbbbbbbbbbb"),
    ]
    assert json.loads(rows[0]["recipients"]) == ["alice@example.org", "bob@example.org"]
    reader = SentReader(store.path)
    try:
        assert reader.by_token("AAAAAAAAAAAAAAAA") == [{"alice@example.org", "bob@example.org"}]
        assert reader.by_message_id("<m2@test.example>") == [{"carol@example.org"}]
        assert reader.by_message_id("<nope@test.example>") is None
    finally:
        reader.close()


def test_old_rows_are_pruned(store: Store) -> None:
    store.record_sent([("2020-01-01T00:00:00.000Z", "Q0", "<old@x>", "", "", "t", "[]")])
    log = SentLog(store, 30)
    log._prune(force=True)
    log.add("Q1", "<new@x>", "", "", "t", [])
    log.start().close()
    assert [r["message_id"] for r in query_rows(store.path, "SELECT message_id FROM sent")] == ["<new@x>"]


def test_a_full_queue_drops_and_says_so(store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sentlog, "QUEUE_MAX", 2)
    cap = Capture()
    logger = logging.getLogger("bouncemilter.test.sentlog")
    logger.addHandler(cap)
    log = SentLog(store, 30, logger)  # not started: nothing drains the queue
    for i in range(5):
        log.add(f"Q{i}", f"<{i}@x>", "", "", "t", [])
    assert log.dropped == 3
    assert cap.events("sent_log_dropped")[0]["dropped"] == 1


def verifier(store: Store) -> Verifier:
    return Verifier(KEYS, MATCHER, "record", sent=SentReader(store.path))


def record(store: Store, raw: bytes, to: str) -> list[tuple[str, ...]]:
    m = MATCHER.match(to)
    env = Envelope(bounce_addresses=[m.address], verp_recipients=[m.verp_recipient] if m.verp_recipient else [])
    out = ingest(raw, env, SETTINGS, store, verifier=verifier(store))
    sql = "SELECT address, reported_address, verified FROM recipients WHERE message_id = ?"
    return [tuple(r) for r in query_rows(store.path, sql, (out.row_id,))]


def test_bounce_quoting_a_logged_message_id_is_verified_for_its_recipients(store: Store) -> None:
    # M.hard_bounce quotes the original <orig-TOKEN@test.example>
    store.record_sent(
        [("2026-11-26T10:00:00.000Z", "Q", "<orig-sl1@test.example>", "", "", "", '["alice@example.org"]')]
    )
    assert record(store, M.hard_bounce("sl1", "alice@example.org"), "bounces@test.example") == [
        ("alice@example.org", "alice@example.org", 1)
    ]
    # a bounce of a message we sent to alice only is about alice, whoever it names (forwarding, or a forger
    # who saw alice's copy): the victim it names is never the row's address
    store.record_sent(
        [("2026-11-26T10:00:00.000Z", "Q", "<orig-sl2@test.example>", "", "", "", '["alice@example.org"]')]
    )
    assert record(store, M.hard_bounce("sl2", "victim@example.org"), "bounces@test.example") == [
        ("alice@example.org", "victim@example.org", 1)
    ]
    # unknown Message-ID: unverified
    assert record(store, M.hard_bounce("sl3", "dan@example.org"), "bounces@test.example") == [
        ("dan@example.org", "dan@example.org", 0)
    ]


def test_message_token_is_bound_to_the_logged_recipients(store: Store) -> None:
    rp = sign(KEYS, PATTERN, None)
    token = rp.partition("@")[0].rpartition("+")[2]
    store.record_sent([("2026-11-26T10:00:00.000Z", "Q", "<x@y>", "", rp, token, '["a@example.org", "b@example.org"]')])
    # several recipients: each row is verified only when it names one of them
    assert record(store, M.hard_bounce("sl4", "b@example.org"), rp) == [("b@example.org", "b@example.org", 1)]
    assert record(store, M.hard_bounce("sl5", "victim@example.org"), rp) == [
        ("victim@example.org", "victim@example.org", 0)
    ]


def test_the_milter_logs_what_it_signs(setup, store: Store) -> None:  # type: ignore[no-untyped-def]
    setup()
    rt = BounceMilter.runtime
    rt.signer = Signer(KEYS, ["@test.example"], [PATTERN])
    rt.sent_log = SentLog(store, 30).start()
    rc, ctx = feed(M.ordinary("sl6"), sender="<news@test.example>", rcpts=("<a@sink.test>", "<B@sink.test>"))
    assert rc == Milter.ACCEPT
    rt.sent_log.close()
    (row,) = query_rows(store.path, "SELECT * FROM sent")
    assert row["message_id"] == "<sl6@example.net>" and row["queue_id"] == "QID123"
    assert row["return_path"] == ctx._sender.strip("<>") and row["return_path"].split("+")[1].startswith(row["token"])
    assert json.loads(row["recipients"]) == ["a@sink.test", "b@sink.test"]


def test_rows_not_written_yet_are_found_too(store: Store) -> None:
    log = SentLog(store, 30)  # not started: the row stays queued
    log.add("Q", "<quick@x>", "", "", "cccccccccccccccc", ["Fast@example.org"])
    assert log.by_token("cccccccccccccccc") == [{"fast@example.org"}]
    assert log.by_message_id("<quick@x>") == [{"fast@example.org"}]
    log.start().close()
    assert log.by_token("cccccccccccccccc") == [{"fast@example.org"}]  # now from the table, once


def test_the_milter_runtime_keeps_the_sent_log_also_with_verify_off(tmp_path: Path) -> None:
    from bouncemilter.milter import open_runtime

    keys = tmp_path / "keys"
    keys.write_text("runtime test key 0123456789\n")
    keys.chmod(0o600)
    cfg = tmp_path / "bm.toml"
    cfg.write_text(
        f'[milter]\nsocket = "unix:{tmp_path}/m.sock"\n[store]\ndb = "{tmp_path}/rt.db"\n'
        f'[bounce]\naddresses = ["{PATTERN}"]\n[log]\ntarget = "none"\n[dns]\ncheck = false\n'
        f'[signing]\nsecret_file = "{keys}"\nsenders = ["@test.example"]\nverify = "off"\nlog_sent = true\n'
    )
    rt, _ = open_runtime(load_settings(str(cfg)))
    try:
        assert rt.signer is not None and rt.sent_log is not None
        assert rt.verifier is not None and not rt.verifier.active and rt.verifier.sent is rt.sent_log
    finally:
        rt.sent_log.close()
        rt.store.close()
