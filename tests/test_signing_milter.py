"""The milter's outbound direction: envelope senders of [signing] senders leave with a signed return path
(chgfrom at end of message), without the body ever being read. Driven in-process with Milter.testctx."""

from __future__ import annotations

from datetime import UTC, datetime

import Milter
import pytest
from Milter import testctx

from bouncemilter.milter import BounceMilter
from bouncemilter.signing import KeyRing, Signer, verify

from . import test_milter
from .test_milter import M, feed

setup = test_milter.setup  # the fixture: each test runs with the unix, TCP and classic protocol sequences

KEYS = KeyRing(["outbound test key 0123456789"])


def signing_setup(setup, **settings):  # type: ignore[no-untyped-def]
    store, cap = setup(**settings)
    BounceMilter.runtime.signer = Signer(KEYS, ["@test.example"], ["bounces+*@test.example"])
    return store, cap


def token_of(address: str) -> str:
    return address.strip("<>").partition("@")[0].rpartition("+")[2]


def test_one_recipient_leaves_with_verp_and_token(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = signing_setup(setup)
    rc, ctx = feed(M.ordinary("s1"), sender="<sender@test.example>", rcpts=("<Victim@reject.test>",))
    assert rc == Milter.ACCEPT
    assert ctx._envfromchanged
    new = ctx._sender.strip("<>")
    assert new.startswith("bounces+victim=reject.test+") and new.endswith("@test.example")
    assert verify(KEYS, token_of(new), "victim@reject.test", now=datetime.now(UTC)).ok
    assert store.records == []  # outbound mail is not recorded
    (line,) = cap.events("signed")
    assert line["return_path"] == new and line["recipients"] == 1 and line["envelope_from"] == "sender@test.example"
    assert line["message_id"] == "<s1@example.net>" and line["queue_id"] == "QID123"


def test_several_recipients_get_a_message_token(setup) -> None:  # type: ignore[no-untyped-def]
    signing_setup(setup)
    rc, ctx = feed(M.ordinary("s2"), sender="<news@test.example>", rcpts=("<a@sink.test>", "<b@sink.test>"))
    assert rc == Milter.ACCEPT
    new = ctx._sender.strip("<>")
    assert "=" not in new.partition("@")[0]
    assert verify(KEYS, token_of(new), None, now=datetime.now(UTC)).ok


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("<someone@example.net>", "not one of the senders"),
        ("<>", "a bounce"),
        ("<bounces+x=y.example+aaaaaaaaaaaaaaaa@test.example>", "already a return path of ours"),
    ],
)
def test_other_senders_are_not_signed(setup, sender: str, why: str) -> None:  # type: ignore[no-untyped-def]
    signing_setup(setup)
    rc, ctx = feed(M.ordinary("s3"), sender=sender, rcpts=("<user@sink.test>",))
    assert rc == Milter.ACCEPT, why
    assert not getattr(ctx, "_envfromchanged", False), why


def test_outbound_body_is_never_read(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    signing_setup(setup)
    calls = []
    original = BounceMilter.body

    def counting(self, chunk):  # type: ignore[no-untyped-def]
        calls.append(len(chunk))
        return original(self, chunk)

    monkeypatch.setattr(BounceMilter, "body", counting)
    raw = M.ordinary("s4") + b"x" * 500_000
    rc, ctx = feed(raw, sender="<sender@test.example>", rcpts=("<victim@reject.test>",))
    assert rc == Milter.ACCEPT and ctx._envfromchanged
    assert len(calls) == 1  # SKIP at the first chunk: the MTA goes straight to end of message
    assert ctx._priv._buf == bytearray() and ctx._priv._size == 0


def test_mta_without_chgfrom_delivers_unsigned_and_logs(setup) -> None:  # type: ignore[no-untyped-def]
    _, cap = signing_setup(setup)
    testctx.TestCtx.default_opts = [Milter.CURR_ACTS & ~Milter.CHGFROM, 0x1FFFFF, 0, 0]
    rc, ctx = feed(M.ordinary("s5"), sender="<sender@test.example>", rcpts=("<victim@reject.test>",))
    assert rc == Milter.ACCEPT
    assert not getattr(ctx, "_envfromchanged", False)
    (err,) = cap.events("sign_failed")
    assert err["level"] == "error" and "CHGFROM" in err["msg"]


def test_bounce_to_our_address_from_a_signed_sender_is_still_examined(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = signing_setup(setup)
    rc, ctx = feed(M.hard_bounce("s6"), sender="<sender@test.example>", rcpts=("<bounces@test.example>",))
    assert rc == Milter.ACCEPT and ctx._envfromchanged
    ((_, result, _),) = store.records
    assert result.kind == "bounce"


def test_outbound_mail_is_signed_when_the_memory_budget_is_exhausted(setup) -> None:  # type: ignore[no-untyped-def]
    # the budget bounds buffered bounces; outbound mail is never buffered, so it is never deferred for memory
    store, cap = signing_setup(setup)
    budget = BounceMilter.runtime.budget
    held = budget.limit - budget.used
    assert budget.take(held)
    try:
        rc, ctx = feed(M.ordinary("s9"), sender="<sender@test.example>", rcpts=("<victim@reject.test>",))
        assert rc == Milter.ACCEPT and ctx._envfromchanged
        assert not cap.events("memory_budget")
        rc, ctx = feed(M.hard_bounce("s9-in"))
        assert rc == Milter.TEMPFAIL and ctx._reply[1] == "4.3.1"  # a bounce still waits for memory
        assert store.records == []
    finally:
        budget.give(held)
