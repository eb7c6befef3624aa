"""Metrics and log lines of signed return paths: signed, verified, unverified and rejected counters, scraped
over loopback after real milter sessions (testctx); every message line says whether it was verified."""

from __future__ import annotations

from collections.abc import Iterator

import Milter
import pytest

from bouncemilter.metrics import Metrics
from bouncemilter.milter import BounceMilter
from bouncemilter.signing import KeyRing, Signer, sign
from bouncemilter.verdict import Verifier

from . import test_milter
from .e2e import messages as M
from .test_metrics import scrape
from .test_milter import feed

setup = test_milter.setup
KEYS = KeyRing(["metrics test key 0123456789"])


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics(process=False)
    yield m
    m.stop()


def test_counters_and_log_lines(setup, metrics: Metrics) -> None:  # type: ignore[no-untyped-def]
    _, cap = setup()
    rt = BounceMilter.runtime
    rt.metrics = metrics
    rt.signer = Signer(KEYS, ["@test.example"], ["bounces+*@test.example"])
    rt.verifier = Verifier(KEYS, rt.matcher, "reject")
    feed(M.ordinary("m1"), sender="<news@test.example>", rcpts=("<a@sink.test>",))  # signed
    feed(M.ordinary("m2"), sender="<news@test.example>", rcpts=("<a@sink.test>", "<b@sink.test>"))  # signed
    good = sign(KEYS, "bounces+*@test.example", "alice@example.org")
    feed(M.hard_bounce("m3"), rcpts=(f"<{good}>",))  # verified
    feed(M.hard_bounce("m4"), rcpts=("<bounces@test.example>",))  # unverified (bare address, no evidence)
    rc, _ = feed(M.hard_bounce("m5"), rcpts=("<bounces+x=example.org@test.example>",))  # rejected at RCPT
    assert rc == Milter.REJECT
    _, port = metrics.start("127.0.0.1:0")
    got = scrape(port)
    assert got[("bouncemilter_signed_total", ())] == 2
    assert got[("bouncemilter_verified_total", ())] == 1
    assert got[("bouncemilter_unverified_total", ())] == 1
    assert got[("bouncemilter_rejected_total", ())] == 1
    assert got[("bouncemilter_dns_failures_total", ())] == 0
    lines = cap.events("message") + cap.events("rejected")
    assert [line["verified"] for line in lines] == [True, False, False]
    assert all("verification" in line for line in lines)


def test_without_signing_message_lines_still_carry_the_field(setup) -> None:  # type: ignore[no-untyped-def]
    _, cap = setup()
    feed(M.hard_bounce("m6"))
    (line,) = cap.events("message")
    assert "verified" in line and line["verified"] is None  # not checked: signing is off
