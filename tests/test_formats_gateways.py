"""Gateway / enterprise-server / Japanese-carrier bounce formats, on hand-written fixtures."""

from __future__ import annotations

import pytest

from bouncemilter import classify
from bouncemilter.classify.formats import gateways
from bouncemilter.classify.mime import parse_message

# file, detector, [(recipient, status, reply code, words the diagnostic must contain, reason set by the format or None)]
CASES = [
    ("exchange2003.eml", "exchange2003", [
        ("jdoe@example.com", "", "", "The recipient name is not recognized", "userunknown"),
        ("asmith@example.com", "", "", "Too Many Hops", "networkerror"),
    ]),
    ("exchange2007.eml", "exchange2007", [
        ("archive@corp.example.com", "5.2.3", "550", "RESOLVER.RST.RecipSizeLimit; message too large", "mesgtoobig"),
    ]),
    ("domino.eml", "domino", [
        ("taro@example.net", "", "", "not listed in Domino Directory", "userunknown"),
    ]),
    ("notes.eml", "notes", [
        ("hanako@notes.example.co.jp", "", "", "User not listed in public Name & Address Book", "userunknown"),
    ]),
    ("ezweb.eml", "ezweb", [
        ("no-such-user@ezweb.ne.jp", "", "550", "550 <no-such-user@ezweb.ne.jp>: User unknown", "userunknown"),
    ]),
    ("kddi.eml", "kddi", [
        ("full-box@abc123.dion.ne.jp", "", "", "As their mailbox is full.", "mailboxfull"),
    ]),
    ("mfilter.eml", "mfilter", [
        ("ichiro@example.co.jp", "", "550", "550 ichiro@example.co.jp... No such user", "filtered"),
    ]),
    ("imail.eml", "imailserver", [
        ("bigmail@example.net", "", "", "User mailbox exceeds allowed size", "mailboxfull"),
    ]),
    ("mxlogic.eml", "mxlogic", [
        ("gone@example.com", "5.1.1", "550", "Recipient address rejected: User unknown in local recipient table", None),
    ]),
    ("interscan.eml", "interscanmss", [
        ("nobody@example.co.jp", "", "", "Unable to deliver message to <nobody@example.co.jp>", "userunknown"),
    ]),
    ("activehunter.eml", "activehunter", [
        ("student@example.ed.jp", "5.1.1", "550", "550 sorry, no mailbox here by that name", None),
    ]),
    ("fml.eml", "fml", [
        ("club@lists.example.org", "", "", "You are not a member of this mailing list", "rejected"),
    ]),
    ("mailfoundry.eml", "mailfoundry", [
        ("nouser@example.com", "", "550", "550 <nouser@example.com> No such user here", None),
    ]),
    ("mailmarshal.eml", "mailmarshal", [
        ("accounts@example.com", "5.1.1", "550", "550 5.1.1 User unknown", None),
    ]),
    ("messagingserver.eml", "messagingserver", [
        ("quota@example.net", "5.2.2", "552", "552 5.2.2 Delivery failed: Over quota", None),
    ]),
    ("messagelabs.eml", "messagelabs", [
        ("closed@example.com", "5.1.1", "550", "does not exist. Please check the address.", None),
    ]),
    ("mcafee.eml", "mcafee", [
        ("ghost@example.net", "", "550", "550 User (ghost@example.net) unknown.", "userunknown"),
    ]),
    ("surfcontrol.eml", "surfcontrol", [
        ("offline@example.com", "", "554", "554 Service currently unavailable", None),
    ]),
    ("amavis.eml", "amavis", [
        ("staff@example.com", "5.7.0", "554", "554 5.7.0 Reject, id=01234-05 - SPAM", "spamdetected"),
    ]),
    ("exchange2007-remote.eml", "exchange2007", [
        ("legal@partner.example.com", "5.1.1", "550", "Recipient address rejected: User unknown in relay", None),
    ]),
    ("bigfoot.eml", "bigfoot", [
        ("forward@example.com", "5.1.1", "550", "550 5.1.1 <forward@example.com>... User unknown", None),
    ]),
]


@pytest.mark.parametrize(("name", "detector", "expected"), CASES, ids=[c[0] for c in CASES])
def test_gateway_format(fixture_bytes, name: str, detector: str, expected: list) -> None:
    result = classify(fixture_bytes(f"gateways/{name}"))
    assert result.kind == "bounce"
    assert result.detector == detector
    assert [r.recipient for r in result.recipients] == [e[0] for e in expected]
    for row, (_, status, code, words, reason) in zip(result.recipients, expected, strict=True):
        assert row.action == "failed"
        assert row.status == status
        assert row.reply_code == code
        assert words in row.diagnostic
        assert "\n" not in row.diagnostic
        if reason is not None:
            assert row.reason == reason


def test_exchange2003_drops_mts_id_boilerplate(fixture_bytes) -> None:
    result = classify(fixture_bytes("gateways/exchange2003.eml"))
    assert all("MTS-ID" not in r.diagnostic and "31Z-1234" not in r.diagnostic for r in result.recipients)


def test_messaging_server_source_route_gives_original_address(fixture_bytes) -> None:
    row = classify(fixture_bytes("gateways/messagingserver.eml")).recipients[0]
    assert row.recipient == "quota@example.net"
    assert row.remote_mta == "store1.example.net"


def test_remote_mta_from_the_text(fixture_bytes) -> None:
    assert classify(fixture_bytes("gateways/mailfoundry.eml")).recipients[0].remote_mta == "mx1.example.com"
    assert classify(fixture_bytes("gateways/mailmarshal.eml")).recipients[0].remote_mta == "192.0.2.60"
    assert classify(fixture_bytes("gateways/exchange2007.eml")).recipients[0].remote_mta == "EXCH01.corp.example.com"
    remote = classify(fixture_bytes("gateways/exchange2007-remote.eml")).recipients[0]
    assert remote.remote_mta == "mx.partner.example.com"
    assert "##" not in remote.diagnostic and "#" not in remote.diagnostic[:1]


def test_ordinary_mail_is_taken_by_no_gateway_detector(fixture_bytes) -> None:
    msg = parse_message(fixture_bytes("gateways/ordinary.eml"))
    for name, detect in gateways.DETECTORS:
        assert detect(msg) is None, name
    assert classify(fixture_bytes("gateways/ordinary.eml")).kind == "not_bounce"


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_each_fixture_is_taken_by_one_gateway_detector_only(fixture_bytes, name: str) -> None:
    msg = parse_message(fixture_bytes(f"gateways/{name}"))
    taken = [n for n, detect in gateways.DETECTORS if (found := detect(msg)) is not None and found.recipients]
    assert len(taken) == 1, taken


def test_detectors_survive_garbage() -> None:
    for raw in (b"", b"Subject: DELIVERY FAILURE: x\n\nwas not delivered to:\n", b"X-Mailer: m-FILTER\n\n\xff\xfe",
                b"Subject: Undeliverable Mail\n\nfoo: bar: @\n", b"X-AHMAILID: 1\n\n>>> <>\n"):
        msg = parse_message(raw)
        for _, detect in gateways.DETECTORS:
            detect(msg)
