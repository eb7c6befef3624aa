"""Signed return paths through a real Postfix, verify = "record": the outbound loop (signed on the way out, the
remote 550 becomes Postfix's own DSN, which comes back on the internal path verified), a genuine DSN to the
output of `bouncemilter sign`, forgeries kept unverified, complaints, key rotation."""

from __future__ import annotations

import grp
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bouncemilter.signing import sign

from ..dnsstub import DnsStub
from . import messages as M
from . import signed_messages as S
from .conftest import BOUNCES, E2E
from .signing_rig import KEYS, OLD_ONLY, PATTERN, SigningMilter, signing_milter, suppressed, wait_row


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsStub]:
    stub = DnsStub().start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def signed(e2e: E2E, dns: DnsStub) -> Iterator[tuple[E2E, SigningMilter]]:
    extra = f'log_sent = true\n\n[dns]\nnameservers = ["{dns.address}"]\n'
    with signing_milter(e2e, "signing-record", "record", extra=extra) as pair:
        yield pair


def test_postfix_reaches_the_default_0660_socket_through_its_group(signed) -> None:  # type: ignore[no-untyped-def]
    _, milter = signed
    st = os.stat(milter.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660 and grp.getgrgid(st.st_gid).gr_name == "postfix"
    # every other test of this module goes through this socket, from Postfix's smtpd and cleanup
    assert stat.S_IMODE(os.stat(milter.db).st_mode) == 0o640


def test_outbound_loop_signed_bounced_verified_suppressed(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, milter = signed
    code, reply, qid = e2e.send("sender@test.example", ["victim@reject.test"], M.ordinary(token))
    assert code == 250, reply
    # it left with a signed return path: qmgr logs the envelope sender after the milter changed it
    deadline = time.monotonic() + 30
    line = None
    while time.monotonic() < deadline and line is None:
        line = next((x for x in e2e.rig.log.read_text().splitlines() if f"{qid}: from=<" in x), None)
        time.sleep(0.1)
    assert line is not None, e2e.rig.log.read_text()[-2000:]
    rp = re.search(r"from=<([^>]*)>", line).group(1)
    assert rp.startswith("bounces+victim=reject.test+") and rp.endswith("@test.example"), line
    assert milter.cli("verify", "--config", str(milter.config), rp).startswith("valid for victim@reject.test")
    # the remote 550 made Postfix write a DSN to that return path; it came back through the milter
    row = wait_row(view, token, column="original_message_id")
    assert (row["kind"], row["envelope_from"], row["verified"]) == ("bounce", "", 1)
    assert "signed return path for victim@reject.test" in row["verification"]
    assert rp in row["bounce_addresses"]
    (rcpt,) = view.recipient_rows(row["id"])
    assert (rcpt["address"], rcpt["hard"], rcpt["verified"], rcpt["status"]) == ("victim@reject.test", 1, 1, "5.1.1")
    logged = [e for e in milter.events("message") if e.get("queue_id") == row["queue_id"]]
    assert logged and logged[0]["internal"] is True and logged[0]["verified"] is True
    assert "victim@reject.test" in suppressed(view)
    signed_lines = [e for e in milter.events("signed") if e.get("queue_id") == qid]
    assert signed_lines and signed_lines[0]["return_path"] == rp


def test_several_recipients_message_token_bound_by_the_sent_log(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = signed
    rcpts = ["first@reject.test", "second@reject.test"]
    code, reply, qid = e2e.send("news@test.example", rcpts, M.ordinary(token))
    assert code == 250, reply
    row = wait_row(view, token, column="original_message_id")
    assert row["verified"] == 1 and "message token" in row["verification"] and "sent log" in row["verification"]
    bounce_address = json.loads(row["bounce_addresses"])[0]
    assert "=" not in bounce_address  # no VERP: a message token
    assert sorted((r["address"], r["verified"]) for r in view.recipient_rows(row["id"])) == [(a, 1) for a in rcpts]
    assert set(rcpts) <= suppressed(view)
    deadline = time.monotonic() + 10  # the sent log is written in batches, off the SMTP path
    while not (found := view.query("SELECT * FROM sent WHERE queue_id = ?", (qid,))) and time.monotonic() < deadline:
        time.sleep(0.1)
    (sent,) = found
    assert json.loads(sent["recipients"]) == rcpts and sent["return_path"] == bounce_address
    assert sent["message_id"] == f"<{token}@example.net>"


def test_genuine_dsn_to_a_sign_cli_address_suppresses(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, milter = signed
    rp = milter.cli("sign", "--config", str(milter.config), "alice@example.org")
    code, reply, _ = e2e.send("", [rp], M.hard_bounce(token, "alice@example.org"))
    assert code == 250, reply
    row = wait_row(view, token)
    assert row["verified"] == 1 and row["kind"] == "bounce"
    assert "alice@example.org" in suppressed(view)


def forgeries(victim: str) -> list[tuple[str, str]]:
    good = sign(KEYS, PATTERN, victim)
    local, _, domain = good.partition("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    return [
        ("unsigned-verp", f"bounces+{victim.replace('@', '=')}@test.example"),
        ("changed-char", f"{flipped}@{domain}"),
        ("expired", sign(KEYS, PATTERN, victim, now=datetime.now(UTC) - timedelta(days=40))),
        ("bare", BOUNCES),
    ]


def test_forgeries_are_stored_unverified_and_do_not_suppress(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = signed
    for name, to in forgeries("mallory-target@example.org"):
        code, reply, _ = e2e.send("", [to], M.hard_bounce(f"{token}-{name}", "mallory-target@example.org"))
        assert code == 250, (name, reply)
        row = wait_row(view, f"{token}-{name}")
        assert row["verified"] == 0, (name, row["verification"])
        assert [r["verified"] for r in view.recipient_rows(row["id"])] == [0], name
    assert "mallory-target@example.org" not in suppressed(view)


def test_forged_complaint_does_not_suppress_one_quoting_a_signed_original_does(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = signed
    code, reply, _ = e2e.send("abuse@feedback.example.com", [BOUNCES], S.arf(f"{token}-f", "quiet@example.com"))
    assert code == 250, reply
    assert wait_row(view, f"{token}-f")["verified"] == 0
    assert "quiet@example.com" not in suppressed(view)
    rp = sign(KEYS, PATTERN, "upset@example.com")
    raw = S.arf(f"{token}-s", "upset@example.com", return_path=rp)
    code, reply, _ = e2e.send("abuse@feedback.example.com", [BOUNCES], raw)
    assert code == 250, reply
    row = wait_row(view, f"{token}-s")
    assert (row["kind"], row["verified"]) == ("complaint", 1)
    assert "upset@example.com" in suppressed(view)


def test_key_rotation_token_of_the_second_key_still_verifies(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = signed
    rp = sign(OLD_ONLY, PATTERN, "rotated@example.org")  # signed before the new key was put first
    code, reply, _ = e2e.send("", [rp], M.hard_bounce(token, "rotated@example.org"))
    assert code == 250, reply
    row = wait_row(view, token)
    assert row["verified"] == 1 and "key 2" in row["verification"]
    assert "rotated@example.org" in suppressed(view)


@pytest.mark.parametrize(
    ("recipient", "suppresses", "note"),
    [
        ("ann@live.test", False, "counted as soft"),
        ("bo@dead.test", True, "NXDOMAIN"),
        ("cy@nullmx.test", True, "null MX"),
    ],
)
def test_domain_claims_are_checked_in_dns(  # type: ignore[no-untyped-def]
    e2e: E2E, signed, dns: DnsStub, token: str, recipient: str, suppresses: bool, note: str
) -> None:
    view, _ = signed
    dns.silent = False
    code, reply, _ = e2e.send("", [sign(KEYS, PATTERN, recipient)], S.hostunknown(token, recipient))
    assert code == 250, reply
    row = wait_row(view, token)
    (rcpt,) = view.recipient_rows(row["id"])
    assert rcpt["reason"] in ("hostunknown", "notaccept")  # both claim the whole domain is dead
    assert (rcpt["verified"], rcpt["hard"]) == (1, int(suppresses))
    assert note in rcpt["note"]
    assert (recipient in suppressed(view)) is suppresses


def test_dead_resolver_changes_nothing(e2e: E2E, signed, dns: DnsStub, token: str) -> None:  # type: ignore[no-untyped-def]
    view, milter = signed
    dns.silent = True
    try:
        recipient = "dz@aonly.test"  # alive in DNS, but the resolver does not answer
        code, reply, _ = e2e.send("", [sign(KEYS, PATTERN, recipient)], S.hostunknown(token, recipient))
        assert code == 250, reply
        row = wait_row(view, token)
    finally:
        dns.silent = False
    (rcpt,) = view.recipient_rows(row["id"])
    assert rcpt["hard"] == 1 and "DNS check failed" in rcpt["note"]
    assert recipient in suppressed(view)
    assert any(e.get("domain") == "aonly.test" for e in milter.events("dns_failed"))


def test_dsn_after_a_50mb_attachment_yields_its_recipient(e2e: E2E, signed, token: str) -> None:  # type: ignore[no-untyped-def]
    view, milter = signed
    recipient = "far@example.org"
    raw = S.dsn_after_attachment(token, recipient)
    assert len(raw) > 50 * 1024 * 1024
    code, reply, _ = e2e.send("", [sign(KEYS, PATTERN, recipient)], raw)
    assert code == 250, reply
    row = wait_row(view, token, timeout=60)
    assert (row["kind"], row["verified"], row["size"] >= len(raw) - 100) == ("bounce", 1, True)
    assert [(r["address"], r["status"]) for r in view.recipient_rows(row["id"])] == [(recipient, "5.1.1")]
    assert row["original_message_id"] == f"<orig-{token}@test.example>"
    assert recipient in suppressed(view)
    line = next(e for e in milter.events("message") if e.get("queue_id") == row["queue_id"])
    assert line["truncated"] is True  # read by structure, past body_cap
