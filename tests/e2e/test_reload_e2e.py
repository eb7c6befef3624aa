"""SIGHUP under traffic, through the shared Postfix: the new config applies, no session is refused, and an
invalid file keeps the old settings."""

from __future__ import annotations

import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import messages as M
from .conftest import E2E, MilterProc

RELOAD_CONFIG = """\
[milter]
socket = "unix:{sock}"
socket_mode = "0666"

[store]
db = "{db}"

[bounce]
addresses = {addresses}
"""
ALWAYS = "bounces@test.example"
LATER = "sender@test.example"  # a bounce address only after the reload


class ReloadMilter(MilterProc):
    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.base.mkdir(mode=0o755, exist_ok=True)
        for sub in ("milter", "db"):
            (self.base / sub).mkdir(mode=0o755, exist_ok=True)
        self.config = base / "reload.toml"
        self.set_addresses([ALWAYS])

    def set_addresses(self, addresses: list[str], extra: str = "") -> None:
        text = RELOAD_CONFIG.format(sock=self.sock, db=self.db, addresses=str(addresses).replace("'", '"'))
        self.config.write_text(text + extra)

    def write_config(self, auto_reply: str) -> Path:
        return self.config


@pytest.fixture(scope="module")
def reloading(e2e: E2E) -> Iterator[E2E]:
    milter = ReloadMilter(e2e.base / "reload")
    milter.start()
    spec, unix = f"unix:{milter.sock}", f"unix:{e2e.milter.sock}"
    e2e.rig.postconf(f"smtpd_milters = {spec}", f"non_smtpd_milters = {spec}")
    e2e.rig.postfix("reload")
    time.sleep(1.0)  # new smtpd processes pick up the setting
    try:
        yield E2E(e2e.base, e2e.rig, milter)
    finally:
        e2e.rig.postconf(f"smtpd_milters = {unix}", f"non_smtpd_milters = {unix}")
        e2e.rig.postfix("reload")
        time.sleep(1.0)
        milter.stop()


@dataclass
class Sent:
    rcpt: str
    token: str
    started: float
    code: int
    finished: float = 0.0


def sender_loop(e2e: E2E, name: str, stop: threading.Event, out: list[Sent]) -> None:
    """One long SMTP session, message after message, alternating the two recipients."""
    n = 0
    with smtplib.SMTP("127.0.0.1", e2e.rig.smtp_port, local_hostname="client.example", timeout=60) as smtp:
        smtp.ehlo()
        while not stop.is_set():
            rcpt = (ALWAYS, LATER)[n % 2]
            token = f"reload-{name}-{n}-{int(time.time() * 1000) % 10**8}"
            started = time.monotonic()
            code = smtp.mail("")[0]
            if code == 250:
                code = smtp.rcpt(rcpt)[0]
            if code == 250:
                code = smtp.data(M.hard_bounce(token))[0]
            else:
                smtp.rset()
            out.append(Sent(rcpt, token, started, code, time.monotonic()))
            n += 1


def test_sighup_under_traffic(reloading: E2E) -> None:
    milter = reloading.milter
    assert isinstance(milter, ReloadMilter) and milter.proc is not None
    stop = threading.Event()
    sent: list[Sent] = []
    threads = [threading.Thread(target=sender_loop, args=(reloading, f"s{i}", stop, sent)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        t_hup = time.monotonic()
        milter.set_addresses([ALWAYS, LATER])
        milter.proc.send_signal(signal.SIGHUP)
        _wait(lambda: milter.events("reload"))
        t_applied = time.monotonic()
        time.sleep(1.0)
        milter.config.write_text(milter.config.read_text() + "\n[milter]\n")  # a duplicate table: invalid TOML
        milter.proc.send_signal(signal.SIGHUP)
        _wait(lambda: milter.events("reload_failed"))
        t_failed = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert milter.proc.poll() is None
    # no session refused, no message deferred, across both reloads
    assert sent and [s for s in sent if s.code != 250] == []
    reloading.wait_queue()
    stored = {r["message_id"] for r in reloading.query("SELECT message_id FROM messages")}

    def recorded(s: Sent) -> bool:
        return f"<{s.token}@mx.remote.example>" in stored

    always = [s for s in sent if s.rcpt == ALWAYS]
    # a message whose reply came before the SIGHUP was matched with the old settings (one in flight then may
    # have had its RCPT matched by the milter after the reload: Postfix streams no-reply events)
    before = [s for s in sent if s.rcpt == LATER and s.finished < t_hup]
    after = [s for s in sent if s.rcpt == LATER and t_applied < s.started < t_failed]
    kept = [s for s in sent if s.rcpt == LATER and s.started > t_failed]
    assert all(map(recorded, always)), "a message to the configured bounce address was lost"
    assert before and not any(map(recorded, before)), "the new address applied before the reload"
    assert after and all(map(recorded, after)), "the reloaded address did not apply"
    assert kept and all(map(recorded, kept)), "the invalid file replaced the good settings"
    print(f"\nSIGHUP under traffic: {len(sent)} messages in 3 sessions, 2 reloads, 0 refused or deferred")


def _wait(predicate, seconds: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
