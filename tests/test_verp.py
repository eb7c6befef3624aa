"""Return-path patterns, recipient matching and VERP encode/decode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bouncemilter.verp import BounceAddress, BounceMatcher, Match, parse_bounce_address, verp_decode, verp_encode


def matcher(*specs: str, **kw) -> BounceMatcher:
    return BounceMatcher([parse_bounce_address(s) for s in specs], **kw)


@pytest.mark.parametrize(
    ("spec", "pattern", "kind"),
    [
        ("bounces@example.com", "bounces@example.com", "exact"),
        ("  Bounces@Example.COM ", "bounces@example.com", "exact"),
        ("<bounces@example.com>", "bounces@example.com", "exact"),
        ("bounces+*@example.com", "bounces+*@example.com", "verp"),
        ("list-bounces-*@lists.example.com", "list-bounces-*@lists.example.com", "verp"),
        ("@bounces.example.com", "@bounces.example.com", "domain"),
        ("@EXAMPLE.com", "@example.com", "domain"),
    ],
)
def test_parse_valid(spec: str, pattern: str, kind: str) -> None:
    parsed = parse_bounce_address(spec)
    assert parsed == BounceAddress(pattern)
    assert parsed.kind == kind


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "bounces",
        "bounces@",
        "@",
        "a@b@example.com",
        "bounces@exa mple.com",
        "bounces@.example.com",
        "bounces@example..com",
        "bo unces@example.com",
        "*@example.com",
        "bounces*@example.com",
        "bounces+*x@example.com",
        "bounces+**@example.com",
        "*bounces+@example.com",
        '"bounces"@example.com',
    ],
)
def test_parse_rejects_garbage(spec: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_bounce_address(spec)
    assert str(err.value)  # a message, not a bare exception


def test_parse_rejects_non_string() -> None:
    with pytest.raises(ValueError):
        parse_bounce_address(42)  # type: ignore[arg-type]


def test_exact_match_is_case_insensitive_and_accepts_angle_brackets() -> None:
    m = matcher("bounces@example.com")
    for rcpt in ("bounces@example.com", "<bounces@example.com>", "<BOUNCES@Example.Com>", " <bounces@example.com> "):
        assert m.match(rcpt) == Match("bounces@example.com", "bounces@example.com", "")
    assert m.match("bounces+x=example.org@example.com") is None  # exact means exact
    assert m.match("bounces@example.org") is None
    assert m.match("other@example.com") is None


def test_verp_match_decodes_recipient() -> None:
    m = matcher("bounces+*@example.com")
    hit = m.match("<bounces+alice=example.org@example.com>")
    assert hit == Match("bounces+alice=example.org@example.com", "bounces+*@example.com", "alice@example.org")
    # the subscriber's own local part may contain the separator and the encoding char
    assert m.match("bounces+alice+news=example.org@example.com").verp_recipient == "alice+news@example.org"
    assert m.match("bounces+a=b=example.org@example.com").verp_recipient == "a=b@example.org"
    # the bare mailbox is still ours, with no subscriber
    assert m.match("bounces@example.com") == Match("bounces@example.com", "bounces+*@example.com", "")
    # a VERP-shaped address without an encoded address is ours but names nobody
    assert m.match("bounces+12345@example.com").verp_recipient == ""
    assert m.match("bounces+@example.com") is None
    assert m.match("bouncesx+alice=example.org@example.com") is None
    assert m.match("bounces+alice=example.org@example.net") is None


def test_verp_with_other_separator_and_encoding() -> None:
    m = matcher("list-bounces-*@lists.example.com", separator="-", encoding_char="#")
    hit = m.match("list-bounces-bob#example.org@lists.example.com")
    assert hit is not None and hit.verp_recipient == "bob@example.org"


def test_domain_match() -> None:
    m = matcher("@bounces.example.com")
    assert m.match("anything@bounces.example.com") == Match("anything@bounces.example.com", "@bounces.example.com", "")
    assert m.match("b+carol=example.org@Bounces.Example.com").verp_recipient == "carol@example.org"
    assert m.match("x@sub.bounces.example.com") is None
    assert m.match("x@example.com") is None


def test_specific_pattern_wins_over_domain() -> None:
    m = matcher("@example.com", "bounces+*@example.com", "postmaster@example.com")
    assert m.match("postmaster@example.com").pattern == "postmaster@example.com"
    assert m.match("bounces+a=example.org@example.com").pattern == "bounces+*@example.com"
    assert m.match("someone@example.com").pattern == "@example.com"


@pytest.mark.parametrize("rcpt", ["", "<>", "postmaster", "<@>", "@example.com", "<@relay.example.net:>"])
def test_garbage_recipients_do_not_match(rcpt: str) -> None:
    assert matcher("@example.com", "bounces@example.com").match(rcpt) is None


def test_source_route_and_quoted_local_part() -> None:
    m = matcher("bounces@example.com")
    assert m.match("<@relay.example.net:bounces@example.com>").address == "bounces@example.com"
    assert m.match('<"bounces"@example.com>').address == "bounces@example.com"


def test_empty_matcher_is_falsy() -> None:
    assert not BounceMatcher([])
    assert matcher("bounces@example.com")


def test_matcher_rejects_equal_separator_and_encoding() -> None:
    with pytest.raises(ValueError):
        BounceMatcher([], separator="+", encoding_char="+")


def test_encode_decode_examples() -> None:
    assert verp_encode("bounces@example.com", "alice@example.org") == "bounces+alice=example.org@example.com"
    assert verp_encode("bounces+*@example.com", "Alice@Example.org") == "bounces+alice=example.org@example.com"
    assert verp_encode("<bounces@example.com>", "bob@example.org", "-", "#") == "bounces-bob#example.org@example.com"
    assert verp_decode("bounces+alice=example.org@example.com") == "alice@example.org"
    assert verp_decode("<Bounces+Alice=Example.org@example.com>") == "alice@example.org"
    assert verp_decode("bounces-bob#example.org@example.com", "-", "#") == "bob@example.org"


@pytest.mark.parametrize(
    "address",
    [
        "bounces@example.com",
        "bounces+12345@example.com",
        "+alice=example.org@example.com",
        "bounces+alice=@example.com",
        "bounces+=example.org@example.com",
        "bounces+alice=localhost@example.com",
        "",
        "<>",
        "garbage",
    ],
)
def test_decode_not_verp(address: str) -> None:
    assert verp_decode(address) == ""


@pytest.mark.parametrize(("bounce", "rcpt"), [("x", "a@b.c"), ("bounces@example.com", "nobody"), ("@d.com", "a@b.c")])
def test_encode_rejects_non_addresses(bounce: str, rcpt: str) -> None:
    with pytest.raises(ValueError):
        verp_encode(bounce, rcpt)


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-=", min_size=1, max_size=20)
_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_domain = st.lists(_label, min_size=2, max_size=4).map(".".join)


@given(local=_local, domain=_domain)
def test_round_trip(local: str, domain: str) -> None:
    recipient = f"{local}@{domain}"
    encoded = verp_encode("bounces@example.com", recipient)
    assert verp_decode(encoded) == recipient
    hit = matcher("bounces+*@example.com").match(f"<{encoded.upper()}>")
    assert hit is not None and hit.verp_recipient == recipient


@given(local=_local.filter(lambda s: "-" not in s and "#" not in s), domain=_domain)
def test_round_trip_other_characters(local: str, domain: str) -> None:
    recipient = f"{local}@{domain}"
    encoded = verp_encode("list-bounces@example.com", recipient, "-", "#")
    # "list-bounces" itself contains the separator: the matcher knows the prefix, verp_decode alone does not
    hit = matcher("list-bounces-*@example.com", separator="-", encoding_char="#").match(encoded)
    assert hit is not None and hit.verp_recipient == recipient


@given(st.text(max_size=80))
def test_match_never_raises(rcpt: str) -> None:
    matcher("bounces+*@example.com", "@example.net", "x@example.org").match(rcpt)
    verp_decode(rcpt)


_PATH_PIECES = st.sampled_from(
    ["<", ">", "@", '"', " ", "\t", "\u3000", "bounces", "+", "=", "alice", "example.org", "Example.COM", "x.test", ":"]
)


@given(st.lists(_PATH_PIECES, max_size=12).map("".join))
def test_match_path_is_match_of_the_bare_path(path: str) -> None:
    # the milter's fast path for RCPT TO must decide exactly what match(bare(path)) decides
    from bouncemilter.decide import bare

    m = matcher("bounces@example.com", "bounces+*@example.org", "@x.test")
    assert m.match_path(path) == m.match(bare(path))
    for plain in (f"<{path}>", f"<{path}@example.org>", f"<bounces+{path}@example.org>"):
        assert m.match_path(plain) == m.match(bare(plain))


@given(st.lists(_PATH_PIECES, max_size=12).map("".join))
def test_match_path_over_bounce_and_unsubscribe_addresses(path: str) -> None:
    from bouncemilter.decide import bare
    from bouncemilter.unsubscribe import AddressMatcher

    m = AddressMatcher(
        [parse_bounce_address(a) for a in ("bounces@example.com", "@x.test")],
        [parse_bounce_address(a) for a in ("unsubscribe+*@example.org", "unsubscribe@x.test")],
    )
    for p in (path, f"<{path}>", f"<unsubscribe+{path}@example.org>", f"<{path}@x.test>"):
        assert m.match_path(p) == m.match(bare(p))
