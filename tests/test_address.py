"""The one address check (bouncemilter/classify/address.py) and that every detector goes through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bouncemilter.classify import classify
from bouncemilter.classify.address import canonical, check_result, show
from bouncemilter.classify.model import Classification, RecipientResult
from bouncemilter.classify.text import clean_address, find_addresses
from bouncemilter.suppressions import open_store

FIXTURES = Path(__file__).parent / "fixtures"
INVISIBLES = ["\u200b", "\u200d", "\u202e", "\u2066", "\ufeff", "\u00ad", "\x1b", "\x1f", "\x00", "\x85"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("alice@example.com.", "alice@example.com"),
        ("alice@Bücher.Example", "alice@xn--bcher-kva.example"),  # IDN to A-labels, for matching
        ("alice@xn--bcher-kva.example", "alice@xn--bcher-kva.example"),
        ("山田@例え.jp", "山田@xn--r8jz45g.jp"),  # one script per component: not a look-alike
        ('"john doe"@example.com', '"john doe"@example.com'),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
        ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
    ],
)
def test_canonical_keeps_and_normalises(given: str, expected: str) -> None:
    checked = canonical(given)
    assert checked.address == expected and not checked.lookalike


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("vic\u200btim@gmail.example", "\\u200b"),
        ("victim@gmail\u200b.example", "\\u200b"),
        ("vic\u202etim@gmail.example", "\\u202e"),
        ("a\x1b[2J@example.com", "\\x1b"),
        ("alice@\u00a0example.com", "\\xa0"),
        ("al\ufffdice@example.com", "could not decode"),
        ("x" * 65 + "@example.com", "64 octets"),
        ("é" * 33 + "@example.com", "64 octets"),  # 66 octets in UTF-8
        ("x" * 10 + "@" + ".".join(["a" * 60] * 4) + ".c", "254 octets"),  # 256 octets, a valid domain
        ("x" * 5010 + "@gmail.example", "254 octets"),
        ("john doe@example.com", "space"),
        ("nobody", "local@domain"),
        ("x@bad..example", "valid domain"),
        ("x@bad!host.example", "valid domain"),
        ("x@\U0001f600.example", "internationalised"),
    ],
)
def test_canonical_rejects_with_a_printable_note(given: str, why: str) -> None:
    checked = canonical(given)
    assert checked.address == ""
    assert why in checked.note and checked.note.isascii() and checked.note.isprintable()


def test_mixed_script_look_alikes_are_kept_but_flagged() -> None:
    for given, expected in [
        ("v\u0456ctim@gmail.example", "v\u0456ctim@gmail.example"),  # Cyrillic і in a Latin local part
        ("victim@gm\u0430il.example", "victim@xn--gmil-63d.example"),  # Cyrillic а in the domain
        ("victim@xn--gmil-63d.example", "victim@xn--gmil-63d.example"),  # the same, already in A-labels
    ]:
        checked = canonical(given)
        assert checked.address == expected and checked.lookalike and "look-alike" in checked.note
    assert not canonical("вася@example.ru").lookalike  # all Cyrillic: a real spelling, not mixed
    assert not canonical("victim@gmail.example").lookalike


def test_show_escapes_everything_not_printable_ascii() -> None:
    assert show("a\x1b[2Jb\u200b\\") == "a\\x1b[2Jb\\u200b\\\\"
    assert show("x" * 100, limit=10) == "x" * 10 + "..."


def test_extraction_does_not_split_at_an_invisible_character() -> None:
    for ch in INVISIBLES:
        text = f"Failed: vic{ch}tim@gmail.example (user unknown)"
        assert "tim@gmail.example" not in find_addresses(text), repr(ch)
        assert clean_address(f"rfc822; vic{ch}tim@gmail.example") != "tim@gmail.example", repr(ch)
    # a local part too long for the pattern is not cut short either
    assert find_addresses("x" * 200 + "\u200btim@gmail.example") == []


def test_check_result_blanks_rejected_recipients_and_notes_them() -> None:
    result = Classification(
        kind="bounce",
        evidence="message/delivery-status part",
        recipients=[
            RecipientResult("vic\u200btim@gmail.example"),
            RecipientResult("Bob@Example.ORG"),
            RecipientResult(""),
        ],
    )
    check_result(result)
    assert [r.recipient for r in result.recipients] == ["", "bob@example.org", ""]
    assert result.evidence.startswith("message/delivery-status part; address rejected")
    assert "vic\\u200btim@gmail.example" in result.evidence


def _dsn(recipient: str) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.net
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Delivery failed.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--b--
""".replace("\n", "\r\n").encode()


def test_zero_width_space_in_a_dsn_never_yields_the_innocent_address() -> None:
    result = classify(_dsn("vic\u200btim@gmail.example"))
    assert result.kind == "bounce"
    assert [r.recipient for r in result.recipients] == [""]
    assert "address rejected" in result.evidence and "\\u200b" in result.evidence


def test_over_long_local_part_is_not_recorded() -> None:
    result = classify(_dsn("x" * 5010 + "@gmail.example"))
    assert all(r.recipient == "" for r in result.recipients)
    assert "254 octets" in result.evidence or "64 octets" in result.evidence


def test_idn_recipient_is_matched_in_a_labels() -> None:
    (row,) = classify(_dsn("Alice@Bücher.Example")).recipients
    assert row.recipient == "alice@xn--bcher-kva.example"


def _single_byte_charset(raw: bytes) -> bool:
    # In an ISO-8859-x part the UTF-8 bytes of U+200B are three visible characters (â, a C1 control, ...):
    # there is no invisible character to test there.
    return re.search(rb"charset=\"?(iso-8859|windows-125)", raw, re.I) is not None and b"utf-8" not in raw


FORMAT_FIXTURES = sorted(p for sub in ("mta", "gateways", "providers") for p in (FIXTURES / sub).glob("*.eml"))


@pytest.mark.parametrize("path", FORMAT_FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_detector_splits_an_address_at_an_invisible_character(path: Path) -> None:
    """Every format detector: put an invisible character inside each recipient the fixture names; the part
    after it must never come out as a recipient, and every recipient that does is canonical."""
    raw = path.read_bytes()
    addresses = [r.recipient for r in classify(raw).recipients if "@" in r.recipient]
    if not addresses or _single_byte_charset(raw):
        pytest.skip("no recipient to mutate in this charset")
    for addr in addresses:
        local, _, domain = addr.partition("@")
        if len(local) < 2:
            continue
        cut = len(local) // 2
        tail = f"{local[cut:]}@{domain}"
        for ch in INVISIBLES:
            mutated = f"{local[:cut]}{ch}{local[cut:]}@{domain}".encode()
            data = re.sub(re.escape(addr.encode()), mutated, raw, flags=re.I)
            if data == raw:
                continue
            got = [r.recipient for r in classify(data).recipients]
            assert tail not in got, (repr(ch), addr, got)
            assert all(g == canonical(g).address for g in got if g), got


def _record(db: Path, raw: bytes, n: int, verp: str = "") -> None:
    from bouncemilter.store import MessageMeta

    with open_store(str(db)) as store:
        meta = MessageMeta("Q", "192.0.2.1", "mx", "mx", "", ["bounces@example.com"], [verp], f"<{n}@x>", 1, 0.1)
        store.record(meta, classify(raw), "accept")


def test_look_alike_is_stored_flagged_and_shown_by_suppressed(tmp_path: Path) -> None:
    import json
    import sqlite3

    from click.testing import CliRunner

    from bouncemilter.cli import main

    db = tmp_path / "b.db"
    _record(db, _dsn("v\u0456ctim@gmail.example"), 1)
    _record(db, _dsn("victim@gmail.example"), 2)
    conn = sqlite3.connect(db)
    assert dict(conn.execute("SELECT address, flags FROM recipients").fetchall()) == {
        "v\u0456ctim@gmail.example": "lookalike",
        "victim@gmail.example": "",
    }
    assert dict(conn.execute("SELECT address, flags FROM suppressions").fetchall()) == {
        "v\u0456ctim@gmail.example": "lookalike",
        "victim@gmail.example": "",
    }
    runner = CliRunner()
    table = runner.invoke(main, ["suppressed", "--db", str(db)]).output
    (line,) = [x for x in table.splitlines() if "ctim@gmail" in x and "look-alike" in x]
    assert line.startswith("v\u0456ctim@gmail.example")  # printable: shown as it is, with the flag
    rows = {
        r["address"]: r
        for r in json.loads(runner.invoke(main, ["suppressed", "--db", str(db), "--format", "json"]).output)
    }
    assert rows["v\u0456ctim@gmail.example"]["flags"] == "lookalike"  # JSON keeps the address exact


def test_verp_addresses_go_through_the_same_check(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "b.db"
    not_a_report = b"From: someone@example.net\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n\r\nhello\r\n"
    _record(db, not_a_report, 1, verp="vic\u200btim@gmail.example")
    _record(db, not_a_report.replace(b"<x@y>", b"<x2@y>"), 2, verp="Erin@B\u00fccher.Example")
    rows = sqlite3.connect(db).execute("SELECT verp_address FROM recipients ORDER BY id").fetchall()
    assert rows == [("erin@xn--bcher-kva.example",)]


def test_cli_takes_the_address_in_any_spelling_of_its_domain(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bouncemilter.cli import main

    db = tmp_path / "b.db"
    _record(db, _dsn("alice@b\u00fccher.example"), 1)
    out = CliRunner().invoke(main, ["history", "--db", str(db), "Alice@xn--bcher-kva.example"]).output
    assert "SUPPRESSED" in out
    res = CliRunner().invoke(main, ["suppress", "--db", str(db), "vic\u200btim@gmail.example"])
    assert res.exit_code == 2 and "\\u200b" in res.output


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"alice"@example.org', "alice@example.org"),  # quotes a dot-atom does not need
        ('"Alice.Smith"@Example.org', "alice.smith@example.org"),
        ('"a..b"@example.org', '"a..b"@example.org'),  # a dot-atom cannot say a..b: the quotes stay
        ('"a b"@example.org', '"a b"@example.org'),
    ],
)
def test_quoted_local_part_unquoted_only_when_a_dot_atom_says_the_same(raw: str, expected: str) -> None:
    assert canonical(raw).address == expected


def test_clean_address_keeps_the_opening_quote_of_a_quoted_local_part() -> None:
    assert clean_address('rfc822; <"a..b"@example.org>') == '"a..b"@example.org'
    assert clean_address('rfc822;"alice"@example.org') == '"alice"@example.org'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@xn--bcher-kva.example", "alice@xn--bcher-kva.example"),  # bücher: a real A-label
        ("alice@XN--BCHER-KVA.example", "alice@xn--bcher-kva.example"),
        ("alice@xn--zz.example", ""),  # punycode that decodes to nothing anyone can register
        ("alice@xn--.example", ""),
    ],
)
def test_a_labels_must_decode(raw: str, expected: str) -> None:
    checked = canonical(raw)
    assert checked.address == expected
    assert bool(checked.note) == (expected == "")
