"""End to end through a real Postfix with the asyncio engine (`[milter] engine = "asyncio"`): a DSN over
SMTP is stored, tagged and delivered; ordinary mail passes untouched. Its own Postfix and milter (the
session rig runs the default pymilter engine)."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import messages as M
from .conftest import BOUNCES, E2E, USER, MilterProc
from .postfix_rig import Rig, postfix_available


class AsyncioMilterProc(MilterProc):
    def write_config(self, auto_reply: str) -> Path:
        path = super().write_config(auto_reply)
        path.write_text(path.read_text().replace("[milter]\n", '[milter]\nengine = "asyncio"\n', 1))
        return path


@pytest.fixture(scope="module")
def aio_e2e() -> Iterator[E2E]:
    reason = postfix_available()
    if reason:
        pytest.skip(f"end-to-end tests need a local Postfix: {reason}")
    base = Path(tempfile.mkdtemp(prefix="bm-e2e-aio-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "milter").mkdir(mode=0o755)
    (base / "db").mkdir(mode=0o755)
    milter = AsyncioMilterProc(base)
    milter.start()
    rig = Rig(base / "pf", milter=f"unix:{milter.sock}")
    try:
        rig.start()
        yield E2E(base, rig, milter)
    finally:
        rig.stop()
        milter.stop()
        if not os.environ.get("BOUNCEMILTER_E2E_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def test_asyncio_engine_stores_a_dsn_through_postfix(aio_e2e: E2E, token: str) -> None:
    e2e = aio_e2e
    assert e2e.milter.events("start")[0]["engine"] == "asyncio"
    code, reply, qid = e2e.send("", [BOUNCES], M.hard_bounce(token))
    assert code == 250, reply
    row = e2e.wait_message_row(token)
    assert (row["kind"], row["action"], row["queue_id"]) == ("bounce", "accept", qid)
    assert (row["client_addr"], row["helo"], row["envelope_from"]) == ("127.0.0.1", "client.example", "")
    rcpts = e2e.recipient_rows(row["id"])
    assert [(r["address"], r["reason"], bool(r["hard"]), r["status"]) for r in rcpts] == [
        ("alice@example.org", "userunknown", True, "5.1.1")
    ]
    with open(e2e.wait_file("bounces", token), "rb") as fh:
        delivered = email.message_from_binary_file(fh, policy=email.policy.compat32)
    assert delivered["X-Bounce-Kind"] == "bounce"
    assert delivered["X-Bounce-Recipient"] == "alice@example.org"

    plain = f"{token}-plain"
    code, reply, _ = e2e.send("alice@example.org", [USER], M.ordinary(plain))
    assert code == 250, reply
    with open(e2e.wait_file("user", plain), "rb") as fh:
        assert b"X-Bounce-" not in fh.read()
    assert e2e.message_rows(plain) == []
    assert [x for x in e2e.milter.events("skipped") if x["queue_id"]]  # accepted at DATA, body never seen
