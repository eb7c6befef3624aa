"""Signed return paths: token encoding, tampering, expiry, case-folding, key rotation (bouncemilter.signing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bouncemilter import signing
from bouncemilter.signing import (
    ALPHABET,
    BAD,
    EXPIRED,
    MALFORMED,
    TOKEN_LEN,
    UNKNOWN_KEY,
    UNSIGNED,
    VALID,
    BadKey,
    KeyRing,
    Signer,
    make_token,
    sign,
    split_token,
    verify,
)
from bouncemilter.verp import BounceMatcher, parse_bounce_address, verp_decode

KEYS = KeyRing(["first key: 0123456789abcdef"])
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DAY = signing.day_number(NOW)


def token_of(address: str) -> str:
    return address.partition("@")[0].rpartition("+")[2]


def test_token_shape_is_lower_case_base32() -> None:
    token = make_token(KEYS, "alice@example.org", day=DAY, nonce="abcd")
    assert len(token) == TOKEN_LEN
    assert set(token) <= set(ALPHABET)
    assert token[0] == KEYS.signing_key.kid
    assert token[4:8] == "abcd"  # the nonce is carried as given
    # day stamp: days since 1970 mod 32768, big-endian base32
    stamp = token[1:4]
    assert sum(ALPHABET.index(c) * 32 ** (2 - i) for i, c in enumerate(stamp)) == DAY % 32768


def test_same_inputs_same_token_and_each_input_changes_it() -> None:
    base = make_token(KEYS, "alice@example.org", day=DAY, nonce="abcd")
    assert make_token(KEYS, "alice@example.org", day=DAY, nonce="abcd") == base
    assert make_token(KEYS, "bob@example.org", day=DAY, nonce="abcd")[-8:] != base[-8:]
    assert make_token(KEYS, "alice@example.org", day=DAY + 1, nonce="abcd")[-8:] != base[-8:]
    assert make_token(KEYS, "alice@example.org", day=DAY, nonce="abce")[-8:] != base[-8:]
    assert make_token(KEYS, None, day=DAY, nonce="abcd")[-8:] != base[-8:]
    assert make_token(KeyRing(["another key 0123456789"]), "alice@example.org", day=DAY, nonce="abcd") != base


def test_random_nonce_makes_tokens_differ() -> None:
    tokens = {make_token(KEYS, None, day=DAY) for _ in range(50)}
    assert len(tokens) > 40
    assert all(verify(KEYS, t, None, now=NOW).ok for t in tokens)


def test_sign_one_recipient_is_verp_plus_token() -> None:
    rp = sign(KEYS, "bounces+*@example.com", "Alice@Example.ORG", now=NOW)
    local, _, domain = rp.partition("@")
    assert domain == "example.com"
    assert local.startswith("bounces+alice=example.org+")
    check = verify(KEYS, token_of(rp), "alice@example.org", now=NOW)
    assert check.status == VALID and check.key_index == 0 and check.age_days == 0
    assert check.recipient == "alice@example.org"


def test_sign_without_recipient_is_a_message_token() -> None:
    rp = sign(KEYS, "bounces@example.com", None, now=NOW)
    local = rp.partition("@")[0]
    assert local.startswith("bounces+") and len(local) == len("bounces+") + TOKEN_LEN
    assert verify(KEYS, token_of(rp), None, now=NOW).ok
    # a message token does not verify for a recipient, nor a recipient token for none
    assert verify(KEYS, token_of(rp), "alice@example.org", now=NOW).status == BAD
    rp1 = sign(KEYS, "bounces@example.com", "alice@example.org", now=NOW)
    assert verify(KEYS, token_of(rp1), None, now=NOW).status == BAD


def test_long_or_odd_recipient_falls_back_to_a_message_token() -> None:
    long_rcpt = "a" * 50 + "@example.org"  # VERP local part would pass 64 characters
    rp = sign(KEYS, "bounces+*@example.com", long_rcpt, now=NOW)
    assert rp.partition("@")[0].count("=") == 0 and verify(KEYS, token_of(rp), None, now=NOW).ok
    quoted = '"john smith"@example.org'
    rp = sign(KEYS, "bounces+*@example.com", quoted, now=NOW)
    assert " " not in rp and verify(KEYS, token_of(rp), None, now=NOW).ok


def test_tampering_any_character_fails() -> None:
    token = make_token(KEYS, "alice@example.org", day=DAY, nonce="abcd")
    for i in range(TOKEN_LEN):
        for repl in ("a", "7"):
            if token[i] == repl:
                continue
            bad = token[:i] + repl + token[i + 1 :]
            check = verify(KEYS, bad, "alice@example.org", now=NOW)
            assert check.status in (BAD, UNKNOWN_KEY), (i, bad, check)
    # the recipient is part of what is signed
    assert verify(KEYS, token, "victim@example.org", now=NOW).status == BAD


@given(st.integers(0, TOKEN_LEN - 1), st.sampled_from(ALPHABET))
def test_tampering_property(pos: int, ch: str) -> None:
    token = make_token(KEYS, "alice@example.org", day=DAY, nonce="wxyz")
    bad = token[:pos] + ch + token[pos + 1 :]
    assert verify(KEYS, bad, "alice@example.org", now=NOW).ok is (bad == token)


def test_expiry() -> None:
    token = make_token(KEYS, "alice@example.org", day=DAY, nonce="abcd")
    assert verify(KEYS, token, "alice@example.org", now=NOW + timedelta(days=30), max_age_days=30).ok
    late = verify(KEYS, token, "alice@example.org", now=NOW + timedelta(days=31), max_age_days=30)
    assert late.status == EXPIRED and late.age_days == 31 and "31 days" in late.why
    assert verify(KEYS, token, "alice@example.org", now=NOW + timedelta(days=5), max_age_days=4).status == EXPIRED
    # one day of clock skew ahead is tolerated, more is not
    assert verify(KEYS, token, "alice@example.org", now=NOW - timedelta(days=1)).ok
    assert verify(KEYS, token, "alice@example.org", now=NOW - timedelta(days=2)).status == EXPIRED


def test_day_stamp_wraps_without_breaking_expiry() -> None:
    last = 32768 * 3 - 1  # the last day before the stamp wraps to 0
    token = make_token(KEYS, None, day=last, nonce="abcd")
    after = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=last + 3)
    check = verify(KEYS, token, None, now=after)
    assert check.ok and check.age_days == 3


def test_case_folding_survives_upper_and_lower_casing() -> None:
    rp = sign(KEYS, "bounces+*@example.com", "alice@example.org", now=NOW)
    for variant in (rp.upper(), rp.title(), rp.swapcase()):
        matcher = BounceMatcher([parse_bounce_address("bounces+*@example.com")])
        m = matcher.match(variant)
        assert m is not None and m.verp_recipient == "alice@example.org"
        assert verify(KEYS, m.token, m.verp_recipient, now=NOW).ok
    # a recipient with capitals signs and verifies the same as lower-cased
    assert verify(KEYS, token_of(rp), "ALICE@EXAMPLE.ORG", now=NOW).ok


def test_key_rotation_second_key_still_verifies() -> None:
    old = KeyRing(["old key 0123456789abcdef"])
    token = make_token(old, "alice@example.org", day=DAY, nonce="abcd")
    rotated = KeyRing(["new key 0123456789abcdef", "old key 0123456789abcdef"])
    check = verify(rotated, token, "alice@example.org", now=NOW)
    assert check.ok and check.key_index == 1 and "key 2" in check.why
    # the new first key signs
    assert make_token(rotated, "a@b.example", day=DAY)[0] == rotated.keys[0].kid
    # once the old key is removed, its tokens no longer verify
    assert verify(KeyRing(["new key 0123456789abcdef"]), token, "alice@example.org", now=NOW).status in (
        BAD,
        UNKNOWN_KEY,
    )


def test_unsigned_and_malformed() -> None:
    assert verify(KEYS, "", "alice@example.org", now=NOW).status == UNSIGNED
    assert verify(KEYS, "short", None, now=NOW).status == MALFORMED
    assert verify(KEYS, "0" * TOKEN_LEN, None, now=NOW).status == MALFORMED  # 0 and 1 are not base32


def test_keyring_from_text_and_bad_keys() -> None:
    ring = KeyRing.from_text("# rotated 2026-11\n  new key 0123456789abcdef  \n\nold key 0123456789abcdef\n")
    assert len(ring) == 2
    assert ring.keys[0].secret == b"new key 0123456789abcdef"
    assert "0123" not in repr(ring) + repr(ring.keys[0])  # secrets never printed
    with pytest.raises(BadKey):
        KeyRing.from_text("# nothing\n")
    with pytest.raises(BadKey):
        KeyRing(["short"])


def test_split_token() -> None:
    t = "k" + "a" * 15
    assert split_token(f"alice=example.org+{t}") == ("alice=example.org", t)
    assert split_token(t) == ("", t)
    assert split_token("alice=example.org") == ("alice=example.org", "")
    assert split_token(f"alice+news=example.org+{t.upper()}") == ("alice+news=example.org", t)
    assert split_token(f"alice=example.org-{t}", "-") == ("alice=example.org", t)


def test_matcher_and_verp_decode_understand_signed_addresses() -> None:
    matcher = BounceMatcher(
        [parse_bounce_address("bounces+*@example.com"), parse_bounce_address("@bounces.example.net")]
    )
    rp = sign(KEYS, "bounces+*@example.com", "alice+news@example.org", now=NOW)
    m = matcher.match(f"<{rp}>")
    assert m is not None and m.verp_recipient == "alice+news@example.org" and m.token == token_of(rp)
    assert verp_decode(rp) == "alice+news@example.org"
    msg = sign(KEYS, "bounces+*@example.com", None, now=NOW)
    m = matcher.match(msg)
    assert m is not None and m.verp_recipient == "" and m.token == token_of(msg)
    dom = sign(KEYS, "x@bounces.example.net", "bob@example.org", now=NOW)
    m = matcher.match(dom)
    assert m is not None and m.verp_recipient == "bob@example.org" and m.token == token_of(dom)
    plain = matcher.match("bounces+carol=example.org@example.com")
    assert plain is not None and plain.verp_recipient == "carol@example.org" and plain.token == ""


def test_signer_chooses_senders_and_the_sender_domain_pattern() -> None:
    signer = Signer(
        KEYS,
        ["@example.com", "news@example.org"],
        ["bounces+*@example.com", "bounces+*@example.org"],
    )
    assert signer.wants("<anyone@example.com>") and signer.wants("NEWS@example.org")
    assert not signer.wants("other@example.org") and not signer.wants("") and not signer.wants("<>")
    rp = signer.return_path("news@example.org", ["alice@example.net"], now=NOW)
    assert rp.endswith("@example.org") and rp.startswith("bounces+alice=example.net+")
    assert signer.return_path("x@elsewhere.example", ["a@b.example"], now=NOW).endswith("@example.com")
    several = signer.return_path("a@example.com", ["a@b.example", "c@d.example"], now=NOW)
    assert "=" not in several and verify(KEYS, token_of(several), None, now=NOW).ok
