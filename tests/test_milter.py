"""Milter unit tests without an MTA: Milter.testctx drives the callbacks in-process; a miltertest
client talks the real milter protocol to a `bouncemilter run` child for the SIGTERM test."""

from __future__ import annotations

import email.message
import io
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import Milter
import pytest
from Milter import testctx

from bouncemilter import logjson
from bouncemilter.classify import Classification, classify
from bouncemilter.config import load_settings
from bouncemilter.milter import BounceMilter, Runtime, parse_socket, set_listener_nodelay
from bouncemilter.store import StoreError
from bouncemilter.suppressions import open_store
from bouncemilter.verp import BounceMatcher

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import messages as M  # noqa: E402


class FakeStore:
    def __init__(self, fail: Exception | None = None) -> None:
        self.records: list[tuple] = []
        self.fail = fail

    def record(self, meta, result, action, deadline=None):  # type: ignore[no-untyped-def]
        if self.fail is not None:
            raise self.fail
        self.records.append((meta, result, action))
        return len(self.records), True


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict] = []
        self.setFormatter(logjson.JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def events(self, name: str) -> list[dict]:
        return [line for line in self.lines if line["event"] == name]


@pytest.fixture(params=[(True, True), (False, True), (True, False)], ids=["unix", "tcp", "classic"])
def setup(request):  # type: ignore[no-untyped-def]
    """Install a runtime with the given settings; returns (store, log capture). Runs each test with
    the unix-socket protocol (no-reply events, lean: no CONNECT/MAIL events, their facts as DATA
    macros), the TCP one (a reply to every event, lean) and the classic sequence of an MTA that
    cannot skip events (every event, no replies)."""
    no_reply, lean = request.param

    def make(store: FakeStore | None = None, classifier=None, **settings):  # type: ignore[no-untyped-def]
        overrides = {"bounce_addresses": ["bounces@test.example", "bounces+*@test.example"]}
        s = load_settings(None, overrides)
        if settings:
            from dataclasses import replace

            s = replace(s, **settings)
        logger = logging.getLogger("bouncemilter.test")
        logger.handlers.clear()
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        cap = Capture()
        logger.addHandler(cap)
        store = store or FakeStore()
        rt = Runtime(
            settings=s,
            matcher=BounceMatcher(s.bounce_addresses),
            store=store,
            logger=logger,
            no_reply=no_reply,
            lean=lean,
        )
        if classifier is not None:
            rt.classifier = classifier
        BounceMilter.runtime = rt
        Milter.factory = BounceMilter
        # TestCtx's negotiation writes into this shared list: give every test what an MTA offers
        testctx.TestCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
        return store, cap

    yield make
    BounceMilter.runtime = None


OK = (Milter.CONTINUE, Milter.NOREPLY)


def feed(
    raw: bytes,
    sender: str = "<>",
    rcpts: tuple[str, ...] = ("<bounces@test.example>",),
    internal: bool = False,
    daemon_port: str | None = None,
) -> tuple[int, testctx.TestCtx]:
    """Drive one message through the callbacks as libmilter would (stops at the first final answer).

    `internal`: the macros of Postfix's non_smtpd path (client and daemon port 0, as measured); else a
    TCP client on port 25. `daemon_port` overrides the daemon's port ("" = the MTA does not send it)."""
    ctx = testctx.TestCtx()
    port = 0 if internal else 25
    if daemon_port is None:
        daemon_port = "0" if internal else "25"
    # the macros Postfix sends (a lean session reads the client and the sender from them at DATA)
    for name, value in (
        ("i", "QID123"),
        ("{mail_addr}", sender.strip("<>")),
        ("{client_addr}", "192.0.2.1"),
        ("{client_name}", "mx.remote.example"),
        ("{client_port}", str(port)),
        ("{daemon_port}", daemon_port or None),
    ):
        ctx._setsymval(name, value)
    ctx._negotiate()
    if not ctx._protocol & Milter.P_NOCONNECT:
        rc = Milter.connect_callback(ctx, "mx.remote.example", socket.AF_INET, ("192.0.2.1", port))
        assert rc in OK
    assert ctx._priv.hello("mx.remote.example") in OK
    ctx._msg = email.message.Message()  # TestCtx.addheader writes here
    for step in (lambda: ctx._envfrom(sender), *[lambda r=r: ctx._envrcpt(r) for r in rcpts], ctx._data):
        rc = step()
        if rc not in OK:
            return rc, ctx
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in _unfold(head):
        name, _, value = line.partition(b":")
        rc = ctx._priv.header_bytes(name.decode("ascii", "replace"), value.strip())
        if rc not in OK:
            return rc, ctx
    rc = ctx._priv.eoh()
    if rc not in OK:
        return rc, ctx
    bfp = io.BytesIO(body)
    while chunk := bfp.read(65535):
        rc = ctx._priv.body(chunk)
        if rc == Milter.SKIP:
            break
        if rc not in OK:
            return rc, ctx
    return ctx._eom(), ctx


_unfold = M.header_fields


def test_ordinary_mail_is_accepted_at_data(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup()
    rc, _ = feed(M.ordinary("t1"), sender="<sender@example.net>", rcpts=("<user@test.example>",))
    assert rc == Milter.ACCEPT
    assert store.records == []
    assert cap.events("message") == []
    assert cap.events("skipped")[0]["queue_id"] == "QID123"


def test_null_sender_to_ordinary_address_is_examined_when_configured(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup(match_null_sender=True)
    rc, _ = feed(M.hard_bounce("t2"), rcpts=("<user@test.example>",))
    assert rc == Milter.ACCEPT
    ((meta, _, _),) = store.records
    assert meta.bounce_addresses == []  # observed: the suppression hook leaves it alone
    store, _ = setup()  # the default
    rc, _ = feed(M.hard_bounce("t2"), rcpts=("<user@test.example>",))
    assert rc == Milter.ACCEPT and store.records == []


def test_bounce_is_stored_logged_and_tagged(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup(add_headers=True)
    rc, ctx = feed(M.hard_bounce("t3"))
    assert rc == Milter.ACCEPT
    ((meta, result, action),) = store.records
    assert action == "accept" and result.kind == "bounce"
    assert meta.queue_id == "QID123"
    assert meta.bounce_addresses == ["bounces@test.example"]
    assert meta.envelope_from == "" and meta.client_addr == "192.0.2.1" and meta.helo == "mx.remote.example"
    assert meta.message_id == "<t3@mx.remote.example>"
    assert ctx._msg["X-Bounce-Kind"] == "bounce"
    assert ctx._msg["X-Bounce-Reason"] == "userunknown"
    assert ctx._msg["X-Bounce-Recipient"] == "alice@example.org"
    assert ctx._msg["X-Bounce-Status"] == "5.1.1"
    (line,) = cap.events("message")
    assert line["queue_id"] == "QID123" and line["kind"] == "bounce" and line["reason"] == "userunknown"
    assert line["hard"] is True and line["action"] == "accept" and line["ms"] >= 0
    assert line["recipients"] == [
        {"recipient": "alice@example.org", "reason": "userunknown", "hard": True, "status": "5.1.1"}
    ]
    assert {"time", "level"} <= set(line)


def test_header_prefix_and_no_headers_by_default(setup) -> None:  # type: ignore[no-untyped-def]
    setup()
    _, ctx = feed(M.hard_bounce("t4"))
    assert not [k for k in ctx._msg if k.startswith("X-Bounce-")]
    setup(add_headers=True, header_prefix="X-BM-")
    _, ctx = feed(M.hard_bounce("t4"))
    assert ctx._msg["X-BM-Kind"] == "bounce"


def test_incoming_headers_with_our_prefix_are_removed_before_ours(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple] = []
    monkeypatch.setattr(BounceMilter, "chgheader", lambda self, name, nth, value: calls.append((name, nth, value)))
    forged = b"X-Bounce-Kind: complaint\r\nx-bounce-kind: bounce\r\nX-Bounce-Reason: forged\r\nX-Other: kept\r\n"
    setup(add_headers=True)
    _, ctx = feed(forged + M.hard_bounce("t4f"))
    # every one of them, the last of a name first (removing one renumbers the later ones of its name)
    assert calls == [("X-Bounce-Reason", 1, None), ("x-bounce-kind", 2, None), ("X-Bounce-Kind", 1, None)]
    assert ctx._msg["X-Bounce-Kind"] == "bounce"
    calls.clear()
    setup(add_headers=True, header_prefix="X-BM-")
    feed(forged + b"X-BM-Kind: x\r\n" + M.hard_bounce("t4g"))
    assert calls == [("X-BM-Kind", 1, None)]


def test_verp_recipient_reaches_the_store(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup()
    feed(M.hard_bounce("t5"), rcpts=("<bounces+erin=example.org@test.example>",))
    ((meta, _, _),) = store.records
    assert meta.verp_recipients == ["erin@example.org"]


def test_discard_whole_message_when_only_our_recipient(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup(actions={"auto_reply": "discard"})
    rc, ctx = feed(M.auto_reply("t6"), sender="<gina@example.com>")
    assert rc == Milter.DISCARD
    assert store.records[0][2] == "discard"
    assert ctx._delrcpt == []


def test_discard_only_our_copy_with_other_recipients(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup(actions={"auto_reply": "discard"})
    rc, ctx = feed(
        M.auto_reply("t7"), sender="<gina@example.com>", rcpts=("<bounces@test.example>", "<user@test.example>")
    )
    assert rc == Milter.ACCEPT
    assert ctx._delrcpt == ["<bounces@test.example>"]
    assert store.records[0][2] == "discard"


def test_store_error_tempfails_on_smtp_path(setup) -> None:  # type: ignore[no-untyped-def]
    _, cap = setup(store=FakeStore(fail=StoreError("database file is gone")))
    rc, ctx = feed(M.hard_bounce("t8"))
    assert rc == Milter.TEMPFAIL
    assert ctx._reply[0] == "451" and ctx._reply[1] == "4.3.0"
    (line,) = cap.events("message")
    assert line["level"] == "error" and line["stored"] is False and line["action"] == "tempfail"
    assert "gone" in line["store_error"]


def test_store_error_accepts_on_internal_path(setup) -> None:  # type: ignore[no-untyped-def]
    _, cap = setup(store=FakeStore(fail=StoreError("locked")), actions={"bounce": "discard"})
    rc, ctx = feed(M.hard_bounce("t9"), internal=True)
    assert rc == Milter.ACCEPT  # never reject/tempfail Postfix's own bounces, and keep what we could not record
    assert ctx._reply is None
    (line,) = cap.events("message")
    assert line["level"] == "error" and line["stored"] is False and line["internal"] is True


def test_a_bare_mail_from_over_smtp_is_not_the_internal_path(setup) -> None:  # type: ignore[no-untyped-def]
    # smtpd accepts MAIL FROM:x@evil.example and passes it on without brackets, like the non_smtpd path does
    _, cap = setup(store=FakeStore(fail=StoreError("read-only")))
    rc, ctx = feed(M.hard_bounce("t10"), sender="x@evil.example", rcpts=("bounces@test.example",))
    assert rc == Milter.TEMPFAIL and ctx._reply[:2] == ("451", "4.3.0")
    (line,) = cap.events("message")
    assert line["internal"] is False and line["stored"] is False and line["action"] == "tempfail"
    rc, _ = feed(M.hard_bounce("t10"), sender="", rcpts=("bounces@test.example",))
    assert rc == Milter.TEMPFAIL


@pytest.mark.parametrize(
    ("client_port", "daemon_port", "internal"),
    [
        ("0", "0", True),  # Postfix's cleanup (pickup, bounce daemon): measured with Postfix 3.7
        ("0", None, True),  # classic sequence: Postfix's default connect macros leave {daemon_port} out
        ("41234", "25", False),  # smtpd, a TCP client
        ("0", "25", False),  # a port 0 claimed on a TCP listener (XCLIENT PORT=0 by an authorised host)
        ("41234", "0", False),
        (None, None, False),  # an MTA that sends neither
        ("", "", False),
    ],
)
def test_internal_path_needs_both_ports_zero(client_port, daemon_port, internal: bool) -> None:  # type: ignore[no-untyped-def]
    from bouncemilter.milter import internal_path

    assert internal_path(client_port, daemon_port) is internal


def test_a_tcp_listener_is_never_the_internal_path_even_with_client_port_0(setup) -> None:  # type: ignore[no-untyped-def]
    setup(store=FakeStore(fail=StoreError("locked")))
    rc, _ = feed(M.hard_bounce("t10b"), internal=True, daemon_port="25")
    assert rc == Milter.TEMPFAIL


def test_draining_tempfails_smtp_even_with_a_bare_sender_but_not_postfix_itself(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup()
    BounceMilter.runtime.draining = True
    rc, _ = feed(M.hard_bounce("t10c"), sender="x@evil.example", rcpts=("bounces@test.example",))
    assert rc == Milter.TEMPFAIL and store.records == []
    rc, _ = feed(M.hard_bounce("t10c"), sender="", rcpts=("bounces@test.example",), internal=True)
    assert rc == Milter.ACCEPT and len(store.records) == 1


def test_after_the_store_closed_a_bare_sender_gets_4xx(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    store = open_store(str(tmp_path / "closed.db"), timeout=0.2)
    store.close()
    _, cap = setup(store=store)
    rc, _ = feed(M.hard_bounce("t10d"), sender="x@evil.example", rcpts=("bounces@test.example",))
    assert rc == Milter.TEMPFAIL
    rc, _ = feed(M.hard_bounce("t10d"), sender="", rcpts=("bounces@test.example",), internal=True)
    assert rc == Milter.ACCEPT  # Postfix's own bounce: delivered, and the failure logged as an error
    lines = cap.events("message")
    assert [(x["internal"], x["action"], x["stored"]) for x in lines] == [
        (False, "tempfail", False),
        (True, "accept", False),
    ]
    assert all("closed" in x["store_error"] for x in lines)


def test_classifier_failure_is_stored_unclassified_and_accepted(setup) -> None:  # type: ignore[no-untyped-def]
    def broken(raw: bytes) -> Classification:
        raise ValueError("boom")

    store, cap = setup(classifier=broken, actions={"not_bounce": "discard"})
    rc, _ = feed(M.hard_bounce("t11"))
    assert rc == Milter.ACCEPT
    ((_, result, action),) = store.records
    assert "boom" in result.error and action == "accept"
    assert cap.events("message")[0]["kind"] == "unclassified"


@pytest.mark.parametrize("internal", [False, True])
def test_unexpected_exception_never_escapes(setup, internal: bool) -> None:  # type: ignore[no-untyped-def]
    _, cap = setup(store=FakeStore(fail=RuntimeError("bug")))
    rc, _ = feed(M.hard_bounce("t12"), internal=internal)
    assert rc == (Milter.ACCEPT if internal else Milter.TEMPFAIL)
    (err,) = cap.events("callback_error")
    assert "RuntimeError: bug" in err["traceback"]
    assert BounceMilter.runtime.inflight.count == 0


def test_body_cap_skips_the_rest(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup(body_cap=64 * 1024)
    raw = M.big_bounce("t13", size=2 * 1024 * 1024)
    rc, _ = feed(raw)
    assert rc == Milter.ACCEPT
    ((meta, result, _),) = store.records
    assert result.kind == "bounce"
    assert meta.size < 200 * 1024  # the MTA stopped sending after SKIP
    assert cap.events("message")[0]["truncated"] is True


def test_garbage_does_not_break_anything(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup()
    rc, _ = feed(b"\x00\xff\xfe:\r\n\r\n" + os.urandom(5000))
    assert rc == Milter.ACCEPT
    assert store.records[0][1].kind == "not_bounce"
    assert store.records[0][0].digest  # no Message-ID: the content hash keeps retries idempotent


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("unix:/run/bm/milter.sock", "unix:/run/bm/milter.sock"),
        ("local:/tmp/x.sock", "unix:/tmp/x.sock"),
        ("inet:9025@127.0.0.1", "inet:9025@127.0.0.1"),
        ("inet:9025", "inet:9025@127.0.0.1"),
        ("inet6:9025@::1", "inet6:9025@::1"),
    ],
)
def test_parse_socket(spec: str, expected: str) -> None:
    assert parse_socket(spec).libmilter == expected


@pytest.mark.parametrize("spec", ["unix:relative.sock", "inet:0@127.0.0.1", "inet:x@h", "tcp:25@h", "nothing"])
def test_parse_socket_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_socket(spec)


def test_listener_nodelay_is_inherited_by_accepted_sockets() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert set_listener_nodelay(port) == 1
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with socket.create_connection(("127.0.0.1", port)):
            conn, _ = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_run_rejects_a_bad_config(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[milter]\nsockett = "inet:1@127.0.0.1"\n')
    out = subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", "run", "--config", str(conf)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "sockett" in out.stderr and str(conf) in out.stderr


# -- the real daemon, over the milter protocol ---------------------------------------------------------


def _mt():  # type: ignore[no-untyped-def]
    return pytest.importorskip("miltertest")


def _session_to_data(sock_path: Path, queue_id: str):  # type: ignore[no-untyped-def]
    """Wait for a running milter's unix socket; play a bounce's session up to DATA (MAIL FROM:<>).
    Returns the milter connection, the negotiated protocol bits and the socket to close."""
    mt = _mt()
    C = mt.constants
    deadline = time.monotonic() + 10
    while not sock_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock_path))
    conn = mt.MilterConnection(s)
    # miltertest cannot decode a negotiation reply that carries macro lists: play an MTA without
    # SETSYMLIST, which gets the classic event sequence (lean sessions are covered by TestCtx and e2e)
    _, proto = conn.optneg_mta(actions=C.SMFI_V6_ACTS & ~C.SMFIF_SETSYMLIST)
    _step(conn, proto, C.SMFIC_CONNECT, hostname="mx.remote.example", family="4", port=25, address="192.0.2.1")
    _step(conn, proto, C.SMFIC_HELO, helo="mx.remote.example")
    _step(conn, proto, C.SMFIC_MAIL, args=["<>"])
    _step(conn, proto, C.SMFIC_RCPT, args=["<bounces@test.example>"])
    conn.send_macro(C.SMFIC_DATA, i=queue_id)
    _step(conn, proto, C.SMFIC_DATA)
    return conn, proto, s


def _step(conn, proto: int, cmd: bytes, **kw) -> None:  # type: ignore[no-untyped-def]
    """Send one MTA step, honouring what the milter negotiated (skipped steps, steps without reply)."""
    C = _mt().constants
    table = {
        C.SMFIC_CONNECT: (C.SMFIP_NOCONNECT, C.SMFIP_NR_CONN),
        C.SMFIC_HELO: (C.SMFIP_NOHELO, C.SMFIP_NR_HELO),
        C.SMFIC_MAIL: (C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL),
        C.SMFIC_RCPT: (C.SMFIP_NORCPT, C.SMFIP_NR_RCPT),
        C.SMFIC_DATA: (C.SMFIP_NODATA, C.SMFIP_NR_DATA),
        C.SMFIC_HEADER: (C.SMFIP_NOHDRS, C.SMFIP_NR_HDR),
        C.SMFIC_EOH: (C.SMFIP_NOEOH, C.SMFIP_NR_EOH),
        C.SMFIC_BODY: (C.SMFIP_NOBODY, C.SMFIP_NR_BODY),
    }
    no, nr = table[cmd]
    if proto & no:
        return
    if proto & nr:
        conn._send(cmd, **kw)
        return
    reply = conn.send_ar(cmd, **kw)
    assert reply[0] == C.SMFIR_CONTINUE, reply


def test_sigterm_finishes_the_message_in_flight_then_exits() -> None:
    mt = _mt()
    C = mt.constants
    base = Path(tempfile.mkdtemp(prefix="bm-unit-", dir="/tmp"))
    sock_path = base / "milter.sock"
    db = base / "bounces.db"
    log = open(base / "log", "wb")  # noqa: SIM115 - the child writes it until the end of the test
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bouncemilter.cli",
            "run",
            "--socket",
            f"unix:{sock_path}",
            "--db",
            str(db),
            "--bounce-address",
            "bounces@test.example",
        ],
        cwd=base,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        conn, proto, s = _session_to_data(sock_path, "QSIG1")

        proc.send_signal(signal.SIGTERM)  # mid-message
        time.sleep(0.3)
        assert proc.poll() is None, "exited with a message in flight"
        assert not sock_path.exists()  # no new MTA sessions while draining

        raw = M.hard_bounce("sigterm").decode()
        head, _, body = raw.partition("\r\n\r\n")
        for line in _unfold(head.encode()):
            name, _, value = line.decode().partition(":")
            _step(conn, proto, C.SMFIC_HEADER, name=name, value=value.strip())
        _step(conn, proto, C.SMFIC_EOH)
        _step(conn, proto, C.SMFIC_BODY, buf=body)
        replies = conn.send_eom()
        assert replies[-1][0] == C.SMFIR_ACCEPT
        s.close()
        t0 = time.monotonic()
        proc.wait(10)
        assert time.monotonic() - t0 < 3
        assert proc.returncode == 0
        lines = [json.loads(x) for x in (base / "log").read_text().splitlines()]
        assert [x["queue_id"] for x in lines if x["event"] == "message"] == ["QSIG1"]
        assert next(x for x in lines if x["event"] == "stop")["in_flight_at_stop"] == 1
        assert sqlite3.connect(db).execute("SELECT queue_id, kind FROM messages").fetchall() == [("QSIG1", "bounce")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def test_failure_in_a_no_reply_event_is_answered_at_the_next_reply(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup()

    def boom(self, data):  # type: ignore[no-untyped-def]
        raise OSError("disk on fire")

    monkeypatch.setattr(BounceMilter, "_append", boom)
    rc, _ = feed(M.hard_bounce("t14"))
    assert rc == Milter.TEMPFAIL
    assert store.records == []
    assert cap.events("callback_error")
    assert BounceMilter.runtime.inflight.count == 0


def test_no_reply_events_are_negotiated_only_when_enabled(setup) -> None:  # type: ignore[no-untyped-def]
    setup()
    ctx = testctx.TestCtx()
    ctx._negotiate()
    nr = Milter.P_NR_HDR | Milter.P_NR_RCPT | Milter.P_NR_MAIL
    assert bool(ctx._protocol & nr == nr) is BounceMilter.runtime.no_reply
    assert not ctx._protocol & (Milter.P_NR_BODY | Milter.P_NR_DATA)  # DATA and body answer (ACCEPT, SKIP)


def test_lean_session_skips_connect_and_asks_for_the_client_macros_with_mail(setup) -> None:  # type: ignore[no-untyped-def]
    setup()
    ctx = testctx.TestCtx()
    ctx._negotiate()
    lean = BounceMilter.runtime.lean
    assert bool(ctx._protocol & Milter.P_NOCONNECT) is lean
    asked = ctx._symlist[Milter.M_ENVFROM]
    assert asked == ({b"{client_addr}", b"{client_name}", b"{client_port}", b"{daemon_port}"} if lean else None)


def test_a_refused_macro_list_falls_back_to_the_classic_sequence(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, cap = setup()

    def refuse(self, stage, macros):  # type: ignore[no-untyped-def]
        raise RuntimeError("no macro lists here")

    monkeypatch.setattr(testctx.TestCtx, "setsymlist", refuse)
    ctx = testctx.TestCtx()
    assert ctx._negotiate() == Milter.CONTINUE
    assert not ctx._protocol & Milter.P_NOCONNECT
    assert bool(cap.events("negotiate")) is BounceMilter.runtime.lean


def test_an_mta_without_macro_lists_gets_the_classic_sequence(setup) -> None:  # type: ignore[no-untyped-def]
    setup()
    testctx.TestCtx.default_opts = [Milter.CURR_ACTS & ~Milter.SETSYMLIST, 0x1FFFFF, 0, 0]
    ctx = testctx.TestCtx()
    ctx._negotiate()
    assert not ctx._protocol & Milter.P_NOCONNECT
    assert ctx._symlist[Milter.M_ENVFROM] is None


class SlowStore:
    """record/record_many that take a while (like a commit with fsync) and can refuse one item."""

    def __init__(self, bad: str = "") -> None:
        self.bad = bad
        self.calls: list[int] = []  # batch sizes
        self.rows: list[str] = []
        self.lock = __import__("threading").Lock()

    def _one(self, meta) -> tuple[int, bool]:  # type: ignore[no-untyped-def]
        if meta == self.bad:
            raise StoreError(f"cannot store {meta}")
        self.rows.append(meta)
        return len(self.rows), True

    def record(self, meta, result, action, deadline=None):  # type: ignore[no-untyped-def]
        with self.lock:
            time.sleep(0.02)
            self.calls.append(1)
            return self._one(meta)

    def record_many(self, items, batch_size=500, deadline=None):  # type: ignore[no-untyped-def]
        with self.lock:
            time.sleep(0.02)
            self.calls.append(len(items))
            if any(meta == self.bad for meta, _, _ in items):
                raise StoreError("batch rolled back")
            return [self._one(meta) for meta, _, _ in items]


def _concurrently(writer, names: list[str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    import threading

    out: dict[str, object] = {}

    def go(name: str) -> None:
        try:
            out[name] = writer.record(name, None, "accept")
        except StoreError as exc:
            out[name] = exc

    threads = [threading.Thread(target=go, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_group_commit_shares_transactions_and_returns_each_result() -> None:
    from bouncemilter.milter import GroupCommit

    store = SlowStore()
    names = [f"m{i}" for i in range(20)]
    out = _concurrently(GroupCommit(store, timeout=5), names)
    assert sorted(store.rows) == sorted(names)
    assert all(isinstance(out[n], tuple) and out[n][1] is True for n in names)
    assert len({out[n][0] for n in names}) == 20  # everyone got their own row id
    assert len(store.calls) < 20 and max(store.calls) > 1  # commits were shared


def test_group_commit_isolates_a_message_that_cannot_be_stored() -> None:
    from bouncemilter.milter import GroupCommit

    store = SlowStore(bad="m3")
    names = [f"m{i}" for i in range(12)]
    out = _concurrently(GroupCommit(store, timeout=5), names)
    assert isinstance(out["m3"], StoreError)
    assert sorted(store.rows) == sorted(n for n in names if n != "m3")


class LockedStore:
    """A store whose database is locked by someone else: every write waits until its deadline, then fails
    (what SQLite's busy timeout does with the remaining time). Records when each write started."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, int]] = []  # (started, deadline, items)

    def _wait(self, deadline, n) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        self.calls.append((now, deadline, n))
        time.sleep(max(min(deadline, now + 5) - now, 0))
        raise StoreError("database is locked")

    def record(self, meta, result, action, deadline=None):  # type: ignore[no-untyped-def]
        self._wait(deadline, 1)

    def record_many(self, items, batch_size=500, deadline=None):  # type: ignore[no-untyped-def]
        self._wait(deadline, len(items))


def test_group_commit_every_caller_answers_by_its_deadline_with_the_store_locked() -> None:
    import threading

    from bouncemilter.milter import GroupCommit

    store = LockedStore()
    writer = GroupCommit(store, timeout=0.3)
    took: dict[int, float] = {}
    errors: dict[int, Exception] = {}

    def go(i: int) -> None:
        t0 = time.monotonic()
        try:
            writer.record(f"m{i}", None, "accept")
        except StoreError as exc:
            errors[i] = exc
        took[i] = time.monotonic() - t0

    threads = [threading.Thread(target=go, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
        time.sleep(0.01)  # arrivals spread over 0.2 s: later callers queue behind a leader that is waiting
    for t in threads:
        t.join(30)
    assert len(errors) == 20
    # No write starts past its deadline, and no leader writes beyond its own (the old leader drained the
    # queue and retried one by one with a fresh timeout each: 20 x 0.3 s).
    assert all(started < deadline for started, deadline, _ in store.calls)
    assert sum(n for _, _, n in store.calls) <= 20
    # Each caller's wait is bounded by its own deadline (0.3 s), plus scheduling slack on a shared machine.
    assert max(took.values()) < 0.3 + 1.0, sorted(took.values())


def test_group_commit_hands_the_queue_on_and_a_late_follower_is_not_written() -> None:
    import threading

    from bouncemilter.milter import GroupCommit

    class Slow(SlowStore):
        def record(self, meta, result, action, deadline=None):  # type: ignore[no-untyped-def]
            if meta == "first":
                time.sleep(0.4)  # the first leader's commit outlasts a follower's deadline
            return super().record(meta, result, action, deadline)

    store = Slow()
    writer = GroupCommit(store, timeout=5)
    out: dict[str, object] = {}

    def go(name: str, timeout: float) -> None:
        try:
            out[name] = writer.record(name, None, "accept", deadline=time.monotonic() + timeout)
        except StoreError as exc:
            out[name] = exc

    first = threading.Thread(target=go, args=("first", 5))
    first.start()
    time.sleep(0.1)
    late = threading.Thread(target=go, args=("late", 0.1))
    others = [threading.Thread(target=go, args=(f"m{i}", 5)) for i in range(5)]
    for t in [late, *others]:
        t.start()
    for t in [first, late, *others]:
        t.join(10)
    assert isinstance(out["late"], StoreError)
    assert "late" not in store.rows  # it left the queue before anyone wrote it
    assert sorted(store.rows) == sorted(["first"] + [f"m{i}" for i in range(5)])
    assert all(isinstance(out[n], tuple) for n in ["first"] + [f"m{i}" for i in range(5)])
    assert writer._leaders == 0 and not writer._queue


def test_group_commit_with_several_writers_leads_side_by_side_and_loses_no_place() -> None:
    """A store with `writers` > 1 (PostgreSQL's pool): that many callers write at once, the rest share
    batches; every caller gets its own result, and when all is done no leader's place is left taken."""
    import threading

    from bouncemilter.milter import GroupCommit

    class Parallel:
        writers = 3

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.rows: list[str] = []
            self.now = 0
            self.most = 0  # transactions at the same time, at most

        def _enter(self) -> None:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)

        def _leave(self, metas: list[str]) -> list[tuple[int, bool]]:
            with self.lock:
                self.now -= 1
                out = []
                for m in metas:
                    self.rows.append(m)
                    out.append((len(self.rows), True))
                return out

        def record(self, meta, result, action, deadline=None):  # type: ignore[no-untyped-def]
            self._enter()
            time.sleep(0.02)
            return self._leave([meta])[0]

        def record_many(self, items, batch_size=500, deadline=None):  # type: ignore[no-untyped-def]
            self._enter()
            time.sleep(0.02)
            return self._leave([m for m, _, _ in items])

    store = Parallel()
    writer = GroupCommit(store, timeout=10)
    out: dict[str, object] = {}

    def go(name: str) -> None:
        for i in range(10):
            out[f"{name}-{i}"] = writer.record(f"{name}-{i}", None, "accept")

    threads = [threading.Thread(target=go, args=(f"w{n}",)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(store.rows) == sorted(out) and len(out) == 120  # each written once, each caller answered
    assert all(store.rows[row - 1] == name for name, (row, _) in out.items())  # its own row
    assert 1 < store.most <= 3  # side by side, never more than the store's writers
    assert writer._leaders == 0 and not writer._queue


def test_a_retry_is_logged_as_duplicate_not_as_stored(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    store = open_store(str(tmp_path / "dup.db"))
    try:
        _, cap = setup(store=store)
        assert feed(M.hard_bounce("t15"))[0] == Milter.ACCEPT
        assert feed(M.hard_bounce("t15"))[0] == Milter.ACCEPT
        first, second = cap.events("message")
        assert first["stored"] is True and "duplicate" not in first
        assert second["stored"] is False and second["duplicate"] is True and second["level"] == "info"
        assert second["duplicate_of"] > 0
    finally:
        store.close()


# -- the memory budget (issue #15, 7.) ---------------------------------------------------------------------------


def test_past_the_memory_budget_matched_mail_gets_4xx_and_ordinary_mail_is_unaffected(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup()
    budget = BounceMilter.runtime.budget
    held = budget.limit - budget.used
    assert budget.take(held)  # other sessions hold everything that is left
    try:
        rc, ctx = feed(M.hard_bounce("t16"))
        assert rc == Milter.TEMPFAIL and ctx._reply[:2] == ("451", "4.3.1")
        assert store.records == []
        (line,) = cap.events("memory_budget")
        assert line["level"] == "warning" and line["used"] >= line["limit"]
        rc, _ = feed(M.ordinary("t16"), sender="<sender@example.net>", rcpts=("<user@test.example>",))
        assert rc == Milter.ACCEPT  # ordinary mail needs no buffer
        rc, _ = feed(M.hard_bounce("t16-own"), sender="", rcpts=("bounces@test.example",), internal=True)
        assert rc == Milter.ACCEPT and len(store.records) == 1  # Postfix's own bounce: always taken
    finally:
        budget.give(held)
    rc, _ = feed(M.hard_bounce("t16"))
    assert rc == Milter.ACCEPT and len(store.records) == 2
    assert budget.refused == 1


def test_a_message_that_outgrows_the_budget_while_buffering_is_deferred_and_released(setup) -> None:  # type: ignore[no-untyped-def]
    from bouncemilter.milter import MemoryBudget

    store, cap = setup()
    rt = BounceMilter.runtime
    rt.budget = MemoryBudget(limit=300 * 1024, connection_cost=10 * 1024)
    rc, ctx = feed(M.big_bounce("t17", size=600 * 1024))  # fits body_cap (1 MiB), not what is left of the budget
    assert rc == Milter.TEMPFAIL and ctx._reply[1] == "4.3.1"
    assert store.records == [] and cap.events("memory_budget")
    assert rt.budget.used == rt.budget.connections * 10 * 1024  # the buffer went back; only the connection is left
    rc, _ = feed(M.hard_bounce("t17-small"))
    assert rc == Milter.ACCEPT and len(store.records) == 1
    assert rt.budget.used == rt.budget.connections * 10 * 1024


def test_connections_are_counted_until_closed(setup) -> None:  # type: ignore[no-untyped-def]
    setup()
    budget = BounceMilter.runtime.budget
    before = (budget.connections, budget.used)
    ctxs = []
    for _ in range(3):
        ctx = testctx.TestCtx()
        ctx._negotiate()
        ctxs.append(ctx)
    assert budget.connections == before[0] + 3 and budget.used == before[1] + 3 * budget.connection_cost
    for ctx in ctxs:
        Milter.close_callback(ctx)
        Milter.close_callback(ctx)  # a second close changes nothing
    assert (budget.connections, budget.used) == before


def test_memory_budget_in_metrics() -> None:
    from prometheus_client import generate_latest

    from bouncemilter.metrics import Metrics
    from bouncemilter.milter import MemoryBudget

    m = Metrics(process=False)
    budget = MemoryBudget(limit=1 << 20, connection_cost=1000)
    m.track_budget(budget)
    budget.connect()
    assert budget.take(5000)
    m.memory_refused()
    text = generate_latest(m.registry).decode()
    assert "bouncemilter_memory_budget_bytes 1.048576e+06" in text
    assert "bouncemilter_memory_used_bytes 6000.0" in text
    assert "bouncemilter_connections 1.0" in text
    assert "bouncemilter_memory_refused_total 1.0" in text


def test_header_block_is_buffered_the_same_with_or_without_a_prefix_to_watch(setup) -> None:  # type: ignore[no-untyped-def]
    # Without [headers] add the fields are read as one block (BounceMilter._read_block), with it one by one;
    # both must buffer the same bytes: CRLF folds from Postfix's bare-LF ones, a lone CR kept, the first
    # Message-ID whatever its case.
    raw = M.hard_bounce("fold1").replace(
        b"Subject: Undelivered Mail Returned to Sender\r\n",
        b"Subject: Undelivered Mail\r\n\tReturned\r\n  to Sender\r\nX-Odd: a\rb\r\nMessage-Id: <first@x>\r\n"
        b"Message-ID: <second@x>\r\nX-Empty:\r\n",
    )
    buffered = []

    def keep(data: bytes):  # type: ignore[no-untyped-def]
        buffered.append(data)
        return classify(data)

    for add in (False, True):
        store, _ = setup(classifier=keep, add_headers=add)
        rc, _ = feed(raw)
        assert rc == Milter.ACCEPT
        assert store.records[0][0].message_id == "<first@x>"
    fast, slow = buffered
    assert fast == slow
    assert b"Subject: Undelivered Mail\r\n\tReturned\r\n  to Sender\r\nX-Odd: a\rb\r\n" in fast
