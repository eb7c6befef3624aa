"""The asyncio engine (bouncemilter.aiomilter) driven over a real socket by the `miltertest` client.

The engine runs in-process on its own event loop thread, with a fake store, on a unix socket (no-reply
events negotiated) and on TCP (a reply to every event); the client honours the negotiated NO*/NR* bits
like Postfix does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bouncemilter import logjson
from bouncemilter.aiomilter import AioServer
from bouncemilter.config import load_settings
from bouncemilter.milter import Runtime, parse_socket
from bouncemilter.store import StoreError
from bouncemilter.verp import BounceMatcher
from tests.e2e import messages as M

mt = pytest.importorskip("miltertest")
C = mt.constants

STEP = {
    C.SMFIC_CONNECT: (C.SMFIP_NOCONNECT, C.SMFIP_NR_CONN),
    C.SMFIC_HELO: (C.SMFIP_NOHELO, C.SMFIP_NR_HELO),
    C.SMFIC_MAIL: (C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL),
    C.SMFIC_RCPT: (C.SMFIP_NORCPT, C.SMFIP_NR_RCPT),
    C.SMFIC_DATA: (C.SMFIP_NODATA, C.SMFIP_NR_DATA),
    C.SMFIC_HEADER: (C.SMFIP_NOHDRS, C.SMFIP_NR_HDR),
    C.SMFIC_EOH: (C.SMFIP_NOEOH, C.SMFIP_NR_EOH),
    C.SMFIC_BODY: (C.SMFIP_NOBODY, C.SMFIP_NR_BODY),
}


class FakeStore:
    def __init__(self, fail: Exception | None = None) -> None:
        self.records: list[tuple] = []
        self.fail = fail

    def record(self, meta, result, action):  # type: ignore[no-untyped-def]
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


class Engine:
    """An AioServer on its own loop thread."""

    def __init__(self, spec: str, store: FakeStore, **settings: Any) -> None:
        s = load_settings(None, {"bounce_addresses": ["bounces@test.example", "bounces+*@test.example"]})
        self.settings = replace(s, **settings) if settings else s
        logger = logging.getLogger("bouncemilter.test.aio")
        logger.handlers.clear()
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        self.cap = Capture()
        logger.addHandler(self.cap)
        self.store = store
        self.spec = parse_socket(spec)
        matcher = BounceMatcher(self.settings.bounce_addresses, "+", "=")
        self.rt = Runtime(settings=self.settings, matcher=matcher, store=store, logger=logger)
        self.loop = asyncio.new_event_loop()
        self.server = AioServer(self.rt, self.spec)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    def connect(self) -> socket.socket:
        if self.spec.kind == "unix":
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.spec.path)
        else:
            s = socket.create_connection((self.spec.host, self.spec.port))
        s.settimeout(10)
        return s

    def stop(self) -> tuple[int, bool]:
        out = asyncio.run_coroutine_threadsafe(self.server.drain(grace=1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        return out


@pytest.fixture(params=["unix", "inet"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made: list[Engine] = []

    def make(store: FakeStore | None = None, **settings: Any) -> Engine:
        if request.param == "unix":
            spec = f"unix:{tmp_path}/aio.sock"
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            spec = f"inet:{port}@127.0.0.1"
        e = Engine(spec, store or FakeStore(), **settings)
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()


def step(conn: Any, proto: int, cmd: str, **kw: Any) -> Any:
    """Send one event as Postfix would: skipped if NO*, no wait if NR*; returns the reply (or None)."""
    no, nr = STEP[cmd]
    if proto & no:
        return None
    if proto & nr:
        conn._send(cmd, **kw)
        return None
    return conn.send_get(cmd, **kw)  # not send_ar: it does not know SKIP


def _unfold(head: str) -> list[tuple[str, str]]:
    fields: list[list[str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += "\n" + line
        elif line:
            name, _, value = line.partition(":")
            fields.append([name, value.strip()])
    return [(n, v) for n, v in fields]


def send(
    e: Engine,
    raw: bytes,
    sender: str = "<>",
    rcpts: tuple[str, ...] = ("<bounces@test.example>",),
    internal: bool = False,
    qid: str = "QAIO1",
) -> tuple[str, list]:
    """One message over a fresh connection; returns (final reply code, every reply of the last step)."""
    with e.connect() as s:
        conn = mt.MilterConnection(s)
        _, proto = conn.optneg_mta()
        port = 0 if internal else 25
        for cmd, kw in (
            (C.SMFIC_CONNECT, {"hostname": "mx.remote.example", "family": "4", "port": port, "address": "192.0.2.1"}),
            (C.SMFIC_HELO, {"helo": "mx.remote.example"}),
        ):
            r = step(conn, proto, cmd, **kw)
            assert r is None or r[0] == C.SMFIR_CONTINUE, r
        conn.send_macro(C.SMFIC_MAIL, i=qid)
        r = step(conn, proto, C.SMFIC_MAIL, args=[sender])
        assert r is None or r[0] == C.SMFIR_CONTINUE, r
        for rcpt in rcpts:
            r = step(conn, proto, C.SMFIC_RCPT, args=[rcpt])
            assert r is None or r[0] == C.SMFIR_CONTINUE, r
        conn.send_macro(C.SMFIC_DATA, i=qid)
        r = step(conn, proto, C.SMFIC_DATA)
        if r is not None and r[0] != C.SMFIR_CONTINUE:
            return r[0], [r]
        text = raw.decode("utf-8", "replace")
        head, _, body = text.partition("\r\n\r\n")
        for name, value in _unfold(head):
            r = step(conn, proto, C.SMFIC_HEADER, name=name, value=value)
            if r is not None and r[0] != C.SMFIR_CONTINUE:
                return r[0], [r]
        r = step(conn, proto, C.SMFIC_EOH)
        assert r is None or r[0] == C.SMFIR_CONTINUE, r
        for start in range(0, len(body), 65535):
            r = step(conn, proto, C.SMFIC_BODY, buf=body[start : start + 65535])
            if r is not None and r[0] == C.SMFIR_SKIP:
                break
            assert r is None or r[0] == C.SMFIR_CONTINUE, r
        conn.send_macro(C.SMFIC_BODYEOB, i=qid)
        replies = conn.send_eom()
        conn._send(C.SMFIC_QUIT)
        return replies[-1][0], replies


def test_negotiation_asks_no_reply_only_on_unix(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    with e.connect() as s:
        actions, proto = mt.MilterConnection(s).optneg_mta()
    assert actions == C.SMFIF_ADDHDRS | C.SMFIF_DELRCPT
    assert proto & C.SMFIP_NOUNKNOWN and proto & C.SMFIP_SKIP
    assert bool(proto & C.SMFIP_NR_HDR) == (e.spec.kind == "unix")
    assert not proto & (C.SMFIP_NOHELO | C.SMFIP_NODATA | C.SMFIP_NOBODY)  # all of them are used


def test_ordinary_mail_is_accepted_at_data(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    code, _ = send(e, M.ordinary("a1"), sender="<alice@example.org>", rcpts=("<user@test.example>",))
    assert code == C.SMFIR_ACCEPT
    assert e.store.records == []
    assert e.cap.events("skipped")[0]["queue_id"] == "QAIO1"
    assert e.rt.inflight.count == 0


def test_bounce_is_stored_accepted_and_tagged(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(add_headers=True)
    code, replies = send(e, M.hard_bounce("a2"))
    assert code == C.SMFIR_ACCEPT
    headers = {p["name"]: p["value"] for c, p in replies if c == C.SMFIR_ADDHEADER}
    assert headers["X-Bounce-Kind"] == "bounce"
    assert headers["X-Bounce-Recipient"]
    (meta, result, action) = e.store.records[0]
    assert result.kind == "bounce" and action == "accept"
    assert meta.queue_id == "QAIO1" and meta.helo == "mx.remote.example" and meta.client_addr == "192.0.2.1"
    assert meta.bounce_addresses == ["bounces@test.example"]
    line = e.cap.events("message")[0]
    assert line["kind"] == "bounce" and line["stored"] is True and line["queue_id"] == "QAIO1"
    assert line["internal"] is False and e.rt.inflight.count == 0


def test_discard_whole_message_when_only_our_recipient(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(actions={"bounce": "discard"}, add_headers=True)
    code, replies = send(e, M.hard_bounce("a3"))
    assert code == C.SMFIR_DISCARD
    assert not [c for c, _ in replies if c == C.SMFIR_ADDHEADER]
    assert e.store.records[0][2] == "discard"


def test_discard_only_our_copy_with_other_recipients(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(actions={"bounce": "discard"})
    code, replies = send(e, M.hard_bounce("a4"), rcpts=("<bounces@test.example>", "<user@test.example>"))
    assert code == C.SMFIR_ACCEPT
    assert [p["rcpt"] for c, p in replies if c == C.SMFIR_DELRCPT] == ["<bounces@test.example>"]
    assert e.cap.events("message")[0]["action"] == "discard"


def test_store_error_tempfails_on_smtp_path(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(store=FakeStore(fail=StoreError("database file is gone")))
    code, replies = send(e, M.hard_bounce("a5"))
    assert code == C.SMFIR_REPLYCODE
    assert replies[-1][1]["smtpcode"].startswith("451") or "451" in str(replies[-1][1])
    line = e.cap.events("message")[0]
    assert line["action"] == "tempfail" and line["stored"] is False and line["level"] == "error"
    assert e.rt.inflight.count == 0


def test_store_error_accepts_on_internal_path(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(store=FakeStore(fail=StoreError("locked")), actions={"bounce": "discard"})
    code, _ = send(e, M.hard_bounce("a6"), internal=True)
    assert code == C.SMFIR_ACCEPT
    line = e.cap.events("message")[0]
    assert line["internal"] is True and line["stored"] is False and line["action"] == "accept"


def test_envelope_without_brackets_marks_internal_path(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(store=FakeStore(fail=StoreError("read-only")))
    code, _ = send(e, M.hard_bounce("a7"), sender="", rcpts=("bounces@test.example",))
    assert code == C.SMFIR_ACCEPT


def test_garbage_body_is_harmless(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine(body_cap=4096)
    garbage = b"\x00\xff" * 20 + b"\r\n\r\n" + bytes(range(256)) * 200
    code, _ = send(e, garbage.decode("latin-1").encode("utf-8"))
    assert code == C.SMFIR_ACCEPT
    meta = e.store.records[0][0]
    assert e.cap.events("message")[0]["truncated"] is True
    assert meta.size > 4096


def test_several_messages_on_one_connection_and_draining(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    for n in range(3):
        assert send(e, M.hard_bounce(f"a8-{n}"), qid=f"Q{n}")[0] == C.SMFIR_ACCEPT
    assert [m.queue_id for m, _, _ in e.store.records] == ["Q0", "Q1", "Q2"]
    assert e.stop() == (0, True)
    e.stop = lambda: (0, True)  # type: ignore[method-assign]  (already stopped)


def test_bad_packet_closes_the_connection(engine) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    with e.connect() as s:
        s.sendall(b"\xff\xff\xff\xffO")
        assert s.recv(10) == b""


def test_engine_setting_is_validated(tmp_path: Path) -> None:
    from bouncemilter.config import ConfigError

    assert load_settings(None).engine == "pymilter"
    assert load_settings(None, {"engine": "asyncio"}).engine == "asyncio"
    conf = tmp_path / "c.toml"
    conf.write_text('[milter]\nengine = "twisted"\n')
    with pytest.raises(ConfigError, match=r"milter\.engine"):
        load_settings(str(conf))


def test_run_engine_asyncio_drains_on_sigterm(tmp_path: Path) -> None:
    """`bouncemilter run --engine asyncio`: SIGTERM mid-message removes the socket, the message still
    gets its reply and its row, then the process exits 0."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    sock_path = tmp_path / "m.sock"
    db = tmp_path / "bounces.db"
    cmd = [sys.executable, "-m", "bouncemilter.cli", "run", "--engine", "asyncio", "--socket", f"unix:{sock_path}"]
    cmd += ["--db", str(db), "--bounce-address", "bounces@test.example"]
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not sock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock_path))
        s.settimeout(10)
        conn = mt.MilterConnection(s)
        _, proto = conn.optneg_mta()
        step(conn, proto, C.SMFIC_CONNECT, hostname="mx.remote.example", family="4", port=25, address="192.0.2.1")
        step(conn, proto, C.SMFIC_MAIL, args=["<>"])
        step(conn, proto, C.SMFIC_RCPT, args=["<bounces@test.example>"])
        conn.send_macro(C.SMFIC_DATA, i="QSIG2")
        assert step(conn, proto, C.SMFIC_DATA)[0] == C.SMFIR_CONTINUE

        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None, "exited with a message in flight"
        assert not sock_path.exists()

        head, _, body = M.hard_bounce("aio-sigterm").decode().partition("\r\n\r\n")
        for name, value in _unfold(head):
            step(conn, proto, C.SMFIC_HEADER, name=name, value=value)
        step(conn, proto, C.SMFIC_EOH)
        step(conn, proto, C.SMFIC_BODY, buf=body)
        assert conn.send_eom()[-1][0] == C.SMFIR_ACCEPT
        s.close()
        assert proc.wait(10) == 0
        lines = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
        assert next(x for x in lines if x["event"] == "start")["engine"] == "asyncio"
        assert next(x for x in lines if x["event"] == "stop")["in_flight_at_stop"] == 1
        assert sqlite3.connect(db).execute("SELECT queue_id, kind FROM messages").fetchall() == [("QSIG2", "bounce")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
