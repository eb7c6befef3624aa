"""Opt-outs through a real Postfix (issue #11): an unsubscribe request to unsubscribe+alice=example.org@test.example
suppresses alice@example.org as opt-out; the feed and the webhook (a receiver on loopback) deliver it once, with
the receiver down at first and the milter restarted in between and afterwards.

A rig of its own (one Postfix for this module): the milter here has [unsubscribe] and [notify] settings, and the
shared rig's milter must keep its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bouncemilter.notify import verify
from tests.webhook_receiver import Receiver

from ..conftest import query_rows
from .conftest import E2E, MilterProc
from .postfix_rig import Rig, postfix_available

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "optout"
SECRET = b"e2e-webhook-secret-0123456789"
ALICE = "unsubscribe+alice=example.org@test.example"

CONFIG = """\
[milter]
{socket}

[store]
db = "{db}"
timeout = 2.0

[bounce]
addresses = ["bounces+*@test.example"]

[unsubscribe]
addresses = ["unsubscribe+*@test.example"]

[headers]
add = true

[notify]
url = "http://127.0.0.1:{port}/hooks/suppressions"
secret_file = "{secret}"
interval = 0.2
retry_min = 0.2
retry_max = 1.0
timeout = 5.0
"""


class OptOutMilter(MilterProc):
    port = 0

    def write_config(self, auto_reply: str) -> Path:
        (self.base / "secret").write_bytes(SECRET)
        (self.base / "secret").chmod(0o640)
        path = self.base / "bouncemilter-optout.toml"
        path.write_text(
            CONFIG.format(socket=self.socket_setting(), db=self.db, port=self.port, secret=self.base / "secret")
        )
        return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rig() -> Iterator[E2E]:
    reason = postfix_available()
    if reason:
        pytest.skip(f"end-to-end tests need a local Postfix: {reason}")
    base = Path(tempfile.mkdtemp(prefix="bm-optout-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "milter").mkdir(mode=0o755)
    (base / "db").mkdir(mode=0o755)
    milter = OptOutMilter(base)
    milter.port = free_port()  # the webhook receiver's, not listening yet
    milter.start()
    pf = Rig(base / "pf", milter=f"unix:{milter.sock}", extra_aliases="unsubscribe bounces\n")
    try:
        pf.start()
        yield E2E(base, pf, milter)
    finally:
        pf.stop()
        milter.stop()
        if not os.environ.get("BOUNCEMILTER_E2E_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def request(to: str, message_id: str) -> bytes:
    """Gmail's request, as a client sends it (no envelope headers: Postfix adds its own on delivery)."""
    raw = (FIXTURES / "gmail-en.eml").read_bytes()
    body = raw[raw.index(b"MIME-Version:") :]
    body = body.replace(b"unsubscribe+alice=example.org@lists.example.com", to.encode())
    return body.replace(b"<CAHxen7q1Zp0=unsub+Yk3@mail.gmail.com>", message_id.encode())


def wait_for(what: str, probe: Callable[[], object], timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def feed(e2e: E2E, cursor: int) -> tuple[list[dict], int]:
    out = subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", "suppressed", "--db", str(e2e.milter.db), "--changes-since",
         str(cursor), "--format", "jsonl"],
        capture_output=True, text=True, check=True, env={**os.environ, "BOUNCEMILTER_CONFIG": ""},
    )  # fmt: skip
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    return lines[:-1], lines[-1]["next_cursor"]


def suppression(e2e: E2E, address: str) -> dict | None:
    rows = query_rows(e2e.milter.db, "SELECT * FROM suppressions WHERE address = ?", (address,))
    return dict(rows[0]) if rows else None


def test_an_unsubscribe_request_through_postfix_reaches_the_feed_and_the_webhook_once(rig: E2E) -> None:
    e2e = rig
    # 1. the request, while the application's webhook receiver is down
    code, reply, _ = e2e.send("alice.private@mail.example", [ALICE], request(ALICE, "<req-1@mail.example>"))
    assert code == 250, reply
    row = e2e.wait_message_row("req-1@mail.example")
    assert row["kind"] == "opt_out" and json.loads(row["bounce_addresses"]) == [ALICE]
    (rcpt,) = e2e.recipient_rows(row["id"])
    assert (rcpt["address"], rcpt["reason"], rcpt["verp_address"]) == ("alice@example.org", "opt-out", rcpt["address"])
    s = suppression(e2e, "alice@example.org")
    assert s is not None and (s["state"], s["source"], s["category"]) == ("suppressed", "opt-out", "opt-out")
    delivered = e2e.wait_file("bounces", "req-1@mail.example").read_bytes()
    assert b"X-Bounce-Kind: opt_out" in delivered and b"X-Bounce-Recipient: alice@example.org" in delivered

    changes, cursor = feed(e2e, 0)
    assert [(c["op"], c["address"], c["category"]) for c in changes] == [("add", "alice@example.org", "opt-out")]

    # the webhook cannot be reached: a clear message, and the delivery is kept
    failed = wait_for("a notify_failed line", lambda: e2e.milter.events("notify_failed"))
    assert "POST http://127.0.0.1:" in failed[0]["msg"] and "kept in the outbox" in failed[0]["msg"]  # type: ignore[index]
    assert failed[0]["address"] == "alice@example.org"  # type: ignore[index]

    # 2. the milter restarts while the receiver is still down: nothing is lost
    e2e.milter.stop()
    e2e.milter.start()
    waiting = query_rows(e2e.milter.db, "SELECT * FROM notify_outbox WHERE delivered_at IS NULL")
    assert [r["address"] for r in waiting] == ["alice@example.org"] and waiting[0]["attempts"] >= 1

    # 3. the receiver comes up: the addition arrives, signed, once
    receiver = Receiver(e2e.milter.port)
    try:
        wait_for("the webhook delivery", lambda: receiver.posts)
        headers, body = receiver.posts[0]
        assert verify(SECRET, body, headers["X-Bouncemilter-Signature"])
        sent = json.loads(body)
        assert (sent["address"], sent["category"], sent["source"]) == ("alice@example.org", "opt-out", "opt-out")
        assert sent["id"] == changes[0]["cursor"] and headers["X-Bouncemilter-Delivery"] == str(sent["id"])

        # 4. restart again, then the same request again (a retry) and a second request: no new suppression, no
        # new change in the feed, no second delivery
        e2e.milter.stop()
        e2e.milter.start()
        for mid in ("<req-1@mail.example>", "<req-2@mail.example>"):
            code, reply, _ = e2e.send("alice.private@mail.example", [ALICE], request(ALICE, mid))
            assert code == 250, reply
        e2e.wait_message_row("req-2@mail.example")
        # and a vacation reply to the unsubscribe address: an auto-reply, which suppresses nobody
        wiebke = "unsubscribe+wiebke=example.de@test.example"
        vacation = (FIXTURES / "vacation-de.eml").read_bytes()
        vacation = vacation[vacation.index(b"From:") :].replace(
            b"unsubscribe+wiebke=example.de@lists.example.com", wiebke.encode()
        )
        assert e2e.send("wiebke@example.de", [wiebke], vacation)[0] == 250
        assert e2e.wait_message_row("vacation-4711@example.de")["kind"] == "auto_reply"
        time.sleep(1.5)  # several notify passes (interval 0.2 s)
        assert [b["address"] for b in receiver.bodies()] == ["alice@example.org"]
        assert feed(e2e, cursor) == ([], cursor)
        assert suppression(e2e, "wiebke@example.de") is None
        assert len(json.loads(suppression(e2e, "alice@example.org")["evidence"])) == 2  # type: ignore[index]
        assert [r["kind"] for r in query_rows(e2e.milter.db, "SELECT kind FROM messages ORDER BY id")] == [
            "opt_out",
            "opt_out",
            "auto_reply",
        ]  # the retry of req-1 was stored once
    finally:
        receiver.stop()
