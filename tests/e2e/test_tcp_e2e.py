"""The milter on a TCP socket behind the same Postfix: the lean session (no CONNECT event, client
macros with MAIL FROM, a reply to every event) on both of Postfix's paths, and no delayed-ACK stall."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from . import messages as M
from .conftest import BOUNCES, E2E, MilterProc
from .postfix_rig import free_port


class TcpMilter(MilterProc):
    """`bouncemilter run` on inet:PORT@127.0.0.1, its own store, the same settings otherwise."""

    def __init__(self, e2e: E2E) -> None:
        super().__init__(e2e.base / "tcp")
        self.base.mkdir(mode=0o755, exist_ok=True)
        (self.base / "db").mkdir(mode=0o755, exist_ok=True)
        self.port = free_port()

    def socket_setting(self) -> str:
        return f'socket = "inet:{self.port}@127.0.0.1"'

    def listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False


@pytest.fixture(scope="module")
def tcp(e2e: E2E) -> Iterator[E2E]:
    """The shared Postfix pointed at a TCP milter with its own store (an E2E view of that store)."""
    milter = TcpMilter(e2e)
    milter.start()
    unix = f"unix:{e2e.milter.sock}"
    spec = f"inet:127.0.0.1:{milter.port}"
    e2e.rig.postconf(f"smtpd_milters = {spec}", f"non_smtpd_milters = {spec}")
    e2e.rig.postfix("reload")
    time.sleep(1.0)  # let new smtpd and cleanup processes pick up the setting
    try:
        yield E2E(e2e.base, e2e.rig, milter)
    finally:
        e2e.rig.postconf(f"smtpd_milters = {unix}", f"non_smtpd_milters = {unix}")
        e2e.rig.postfix("reload")
        time.sleep(1.0)
        milter.stop()


def test_bounce_over_tcp_is_stored_with_the_client_and_tagged(e2e: E2E, tcp: E2E, token: str) -> None:
    code, reply, qid = e2e.send("", [BOUNCES], M.hard_bounce(token))
    assert code == 250, reply
    row = tcp.wait_message_row(token)
    assert (row["kind"], row["queue_id"], row["envelope_from"]) == ("bounce", qid, "")
    # no CONNECT event on a lean session: the client comes from the MAIL FROM macros, HELO from its event
    assert (row["client_addr"], row["helo"]) == ("127.0.0.1", "client.example")
    delivered = e2e.wait_file("bounces", token).read_bytes()
    assert b"X-Bounce-Kind: bounce" in delivered and b"X-Bounce-Recipient: alice@example.org" in delivered


def test_no_delayed_ack_stall_over_tcp(e2e: E2E, tcp: E2E, token: str) -> None:
    # A stall waits for the peer's delayed ACK, ~40 ms, once per message or more (the X-Bounce-*
    # headers make the milter's reply several packets). Without stalls a bounce session takes a
    # few ms here (5-11 ms even on the loaded benchmark machine).
    n = 10
    t0 = time.monotonic()
    for i in range(n):
        code, reply, _ = e2e.send("", [BOUNCES], M.hard_bounce(f"{token}-{i}"))
        assert code == 250, reply
    per_message = (time.monotonic() - t0) / n
    assert per_message < 0.035, f"{per_message * 1000:.1f} ms per bounce over TCP: delayed-ACK stalls?"
    assert len(tcp.query("SELECT id FROM messages WHERE message_id LIKE ?", (f"%{token}-%",))) == n


def test_postfix_own_bounce_over_tcp_is_internal(e2e: E2E, tcp: E2E, token: str) -> None:
    e2e.rig.sendmail(BOUNCES, ["nosuch@test.example"], M.ordinary(token))
    row = tcp.wait_message_row(token, column="original_message_id")
    assert (row["kind"], row["envelope_from"], row["action"]) == ("bounce", "", "accept")
    logged = tcp.milter.wait_events("message", lambda e: e.get("queue_id") == row["queue_id"])
    assert logged and logged[0]["internal"] is True  # {client_port} 0: never rejected or deferred there
