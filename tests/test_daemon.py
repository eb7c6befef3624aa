"""`bouncemilter run` as a process: its socket, its signals, its stderr."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = """\
[milter]
socket = "unix:{sock}"

[store]
db = "{db}"

[bounce]
addresses = {addresses}
"""


class Daemon:
    """One `bouncemilter run` child on a unix socket in `base`; stderr (JSON lines) to a file."""

    def __init__(self, base: Path, name: str = "m", addresses: str = '["bounces@test.example"]') -> None:
        self.base = base
        self.sock = base / "milter.sock"
        self.db = base / "bounces.db"
        self.config = base / f"{name}.toml"
        self.log = base / f"{name}.log"
        self.write_config(addresses)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, addresses: str, extra: str = "") -> None:
        self.config.write_text(CONFIG.format(sock=self.sock, db=self.db, addresses=addresses) + extra)

    def start(self, wait: bool = True, env: dict[str, str] | None = None) -> Daemon:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bouncemilter.cli", "run", "--config", str(self.config)],
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, **(env or {})},
            )
        if wait:
            deadline = time.monotonic() + 15
            while not self.events("start"):
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.05)
        return self

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.proc = None
        return rc

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if name is None or rec.get("event") == name:
                    out.append(rec)
        return out


def connectable(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        return True
    return False


@pytest.fixture
def base() -> Iterator[Path]:
    # a short path: a unix socket's path must fit in 108 bytes
    path = Path(tempfile.mkdtemp(prefix="bm-d-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_second_instance_refuses_the_socket_of_a_running_one(base: Path) -> None:
    first = Daemon(base, "first").start()
    try:
        ident = os.stat(first.sock).st_ino
        second = Daemon(base, "second")
        second.start(wait=False)
        assert second.proc is not None
        assert second.proc.wait(15) == 1
        (failed,) = second.events("start_failed")
        assert f"pid {first.proc.pid}" in failed["msg"] and str(first.sock) in failed["msg"]
        # the first one's socket is the same file and still answers
        assert os.stat(first.sock).st_ino == ident
        assert connectable(first.sock)
    finally:
        assert first.stop() == 0
    assert not first.sock.exists()  # the owner removes its own socket


def test_a_foreign_listener_is_never_taken_over(base: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(base / "milter.sock"))
    listener.listen(1)
    try:
        d = Daemon(base).start(wait=False)
        assert d.proc is not None and d.proc.wait(15) == 1
        assert "listening on" in d.events("start_failed")[0]["msg"]
        assert connectable(base / "milter.sock")
    finally:
        listener.close()


def test_a_stale_socket_of_a_dead_milter_is_replaced(base: Path) -> None:
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(base / "milter.sock"))
    dead.close()  # the file stays, nobody listens: what a killed milter leaves
    d = Daemon(base).start()
    try:
        assert connectable(d.sock)
    finally:
        assert d.stop() == 0


def test_a_config_error_is_a_json_line_and_exit_status_2(base: Path) -> None:
    # Every line on stderr is JSON, so `jq` in the README's alerting recipe never dies on the one that matters
    d = Daemon(base)
    d.config.write_text('[milter]\nsocket = "unix:/x.sock"\nsocket_mode = 660\n')
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(15) == 2
    lines = d.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["event"]) for r in records] == [("error", "config_error")]
    assert "milter.socket_mode" in records[0]["msg"] and str(d.config) in records[0]["msg"]


def wait_for(predicate, seconds: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_readiness_is_notified_after_the_socket_listens_and_frames_reload_and_stop(base: Path) -> None:
    # Type=notify: systemd starts Postfix (ordered after us) only when READY=1 arrives
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "notify"))
    notify.settimeout(15)
    d = Daemon(base).start(wait=False, env={"NOTIFY_SOCKET": str(base / "notify")})
    try:
        ready = notify.recv(4096).decode().split("\n")
        assert connectable(d.sock)  # listening before it said so
        assert "READY=1" in ready and f"MAINPID={d.proc.pid}" in ready
        d.proc.send_signal(signal.SIGHUP)
        assert notify.recv(4096).decode().split("\n")[0] == "RELOADING=1"
        assert notify.recv(4096).decode() == "READY=1"
    finally:
        d.stop()
        notify.close()


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(base: Path) -> None:
    d = Daemon(base).start()
    try:
        d.write_config('["bounces@test.example", "other@test.example"]', '\n[actions]\nauto_reply = "discard"\n')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.events("reload"))
        (ok,) = d.events("reload")
        assert sorted(ok["changed"]) == ["actions", "bounce_addresses"] and ok["restart_needed"] == []
        d.config.write_text(d.config.read_text() + "\n[nonsense]\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.events("reload_failed"))
        (failed,) = d.events("reload_failed")
        assert failed["level"] == "error" and "nonsense" in failed["msg"] and "previous settings" in failed["msg"]
        assert d.proc.poll() is None  # a bad file never stops a running milter
        # what names an open file or socket needs a restart: said, not half-applied
        d.write_config('["bounces@test.example", "other@test.example"]', '\n[actions]\nauto_reply = "discard"\n')
        d.config.write_text(d.config.read_text().replace(str(d.db), str(base / "other.db")))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(d.events("reload")) >= 3)
        assert d.events("reload")[1]["restart_needed"] == ["db"]
        assert "only a restart" in d.events("reload")[2]["msg"]
    finally:
        assert d.stop() == 0


def _outbound_return_path(sock: Path, queue_id: str) -> str:
    """One outbound message (sender@test.example to victim@reject.test) over the milter protocol; the envelope
    sender the milter set at end of message ("" if none)."""
    from tests.test_milter import _mt, _step

    C = _mt().constants
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        conn = _mt().MilterConnection(s)
        _, proto = conn.optneg_mta(actions=C.SMFI_V6_ACTS & ~C.SMFIF_SETSYMLIST)
        _step(conn, proto, C.SMFIC_CONNECT, hostname="app.test.example", family="4", port=40000, address="127.0.0.1")
        _step(conn, proto, C.SMFIC_HELO, helo="app.test.example")
        _step(conn, proto, C.SMFIC_MAIL, args=["<sender@test.example>"])
        _step(conn, proto, C.SMFIC_RCPT, args=["<victim@reject.test>"])
        conn.send_macro(C.SMFIC_DATA, i=queue_id)
        _step(conn, proto, C.SMFIC_DATA)
        _step(conn, proto, C.SMFIC_HEADER, name="Message-ID", value=f"<{queue_id}@test.example>")
        _step(conn, proto, C.SMFIC_EOH)
        conn._send(C.SMFIC_BODYEOB)
        # miltertest cannot decode a CHGFROM without ESMTP arguments (what libmilter sends): read the frames here
        frames, buf = [], conn.buf
        while not frames or frames[-1][0] not in (C.SMFIR_ACCEPT, C.SMFIR_CONTINUE, C.SMFIR_TEMPFAIL):
            while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
                chunk = s.recv(65536)
                assert chunk, frames
                buf += chunk
            size = int.from_bytes(buf[:4], "big")
            frames.append((buf[4:5].decode(), buf[5 : 4 + size]))
            buf = buf[4 + size :]
    assert frames[-1][0] == C.SMFIR_ACCEPT, frames
    return next((data.split(b"\0")[0].decode().strip("<>") for cmd, data in frames if cmd == C.SMFIR_CHGFROM), "")


def _rcpt_reply(sock: Path, address: str) -> str:
    """The milter's reply code to RCPT TO:<address> in a bounce's session ("" = continue)."""
    from tests.test_milter import _mt, _step

    C = _mt().constants
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        conn = _mt().MilterConnection(s)
        _, proto = conn.optneg_mta(actions=C.SMFI_V6_ACTS & ~C.SMFIF_SETSYMLIST)
        assert not proto & C.SMFIP_NR_RCPT  # verify = "reject": RCPT keeps its reply
        _step(conn, proto, C.SMFIC_CONNECT, hostname="mx.remote.example", family="4", port=40001, address="127.0.0.1")
        _step(conn, proto, C.SMFIC_HELO, helo="mx.remote.example")
        _step(conn, proto, C.SMFIC_MAIL, args=["<>"])
        reply = conn.send_ar(C.SMFIC_RCPT, args=[f"<{address}>"])
    return reply[1]["smtpcode"] if reply[0] == C.SMFIR_REPLYCODE else ""


def test_sighup_picks_up_a_rotated_signing_key(base: Path) -> None:
    pytest.importorskip("miltertest")
    from bouncemilter.signing import KeyRing, sign

    old, new = KeyRing(["the old signing key 0123456789"]), KeyRing(["the new signing key 9876543210"])
    assert old.keys[0].kid != new.keys[0].kid
    keys = base / "keys"
    keys.write_text("the old signing key 0123456789\n")
    keys.chmod(0o600)
    d = Daemon(base, addresses='["bounces@test.example", "bounces+*@test.example"]')
    signing = f'\n[signing]\nsecret_file = "{keys}"\nsenders = ["@test.example"]\nverify = "reject"\n'
    d.write_config('["bounces@test.example", "bounces+*@test.example"]', signing)
    by_new = sign(new, "bounces+*@test.example", "victim@reject.test")
    by_old = sign(old, "bounces+*@test.example", "victim@reject.test")
    d.start()
    try:
        assert _outbound_return_path(d.sock, "QROT1").rpartition("+")[2][0] == old.keys[0].kid
        assert _rcpt_reply(d.sock, by_new) == "550"  # a key the milter does not have yet
        assert _rcpt_reply(d.sock, by_old) == ""
        # rotation: the new key first, the old one kept below it; the config file itself is unchanged
        keys.write_text("the new signing key 9876543210\nthe old signing key 0123456789\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.events("signing_keys"))
        (line,) = d.events("signing_keys")
        assert line["keys"] == [new.keys[0].kid, old.keys[0].kid] and line["before"] == [old.keys[0].kid]
        assert "9876543210" not in d.log.read_text()  # key ids only, never a key
        signed = _outbound_return_path(d.sock, "QROT2")
        assert signed.startswith("bounces+victim=reject.test+") and signed.rpartition("+")[2][0] == new.keys[0].kid
        assert _rcpt_reply(d.sock, by_new) == "" and _rcpt_reply(d.sock, by_old) == ""
        # a key file the milter cannot use fails the reload, and the running keys stay
        keys.write_text("short\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.events("reload_failed"))
        assert _rcpt_reply(d.sock, by_new) == ""
        assert _outbound_return_path(d.sock, "QROT3").rpartition("+")[2][0] == new.keys[0].kid
    finally:
        assert d.stop() == 0
