"""Signed return paths through a real Postfix, verify = "reject": forged return paths get 550 5.7.1 at RCPT
(the sending MTA owns the failure: no backscatter), a bare bounce address naming a victim is accepted and ends
unverified, Postfix's own bounces are never refused, and a genuine signed bounce still suppresses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bouncemilter.signing import sign

from . import messages as M
from .conftest import E2E
from .signing_rig import KEYS, PATTERN, SigningMilter, signing_milter, suppressed, wait_row
from .test_signing_e2e import forgeries


@pytest.fixture(scope="module")
def rejecting(e2e: E2E) -> Iterator[tuple[E2E, SigningMilter]]:
    with signing_milter(e2e, "signing-reject", "reject") as pair:
        yield pair


def test_forgeries_get_5xx_at_rcpt_or_end_unverified(e2e: E2E, rejecting, token: str) -> None:  # type: ignore[no-untyped-def]
    view, milter = rejecting
    victim = "eve-target@example.org"
    for name, to in forgeries(victim):
        code, reply, _ = e2e.send("", [to], M.hard_bounce(f"{token}-{name}", victim))
        if name == "bare":
            assert code == 250, reply
            assert wait_row(view, f"{token}-{name}")["verified"] == 0
        else:
            assert code == 550 and "5.7.1" in reply, (name, code, reply)
    assert len([e for e in milter.events("rejected") if victim.split("@")[0] in e["recipient"]]) == 3
    assert victim not in suppressed(view)


def test_genuine_signed_bounce_still_suppresses(e2e: E2E, rejecting, token: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = rejecting
    rp = sign(KEYS, PATTERN, "gone@example.org")
    code, reply, _ = e2e.send("", [rp], M.hard_bounce(token, "gone@example.org"))
    assert code == 250, reply
    assert wait_row(view, token)["verified"] == 1
    assert "gone@example.org" in suppressed(view)


def test_postfix_own_bounce_to_an_unsigned_address_is_never_refused(e2e: E2E, rejecting, token: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = rejecting
    # local submission from an unsigned VERP sender: Postfix's own DSN for the unknown local user goes to it
    e2e.rig.sendmail("bounces+old=example.org@test.example", ["nosuch@test.example"], M.ordinary(token))
    row = wait_row(view, token, column="original_message_id")
    assert (row["kind"], row["verified"], row["action"]) == ("bounce", 0, "accept")
    e2e.wait_file("bounces", token)  # delivered, not refused or deferred
