"""Signed return paths: the token format, the key ring and expiry; `sign()`, `verify()` and `Signer`.

Pure: no configuration parsing and no I/O. The caller reads the key file (`config.read_keys`) and passes the
keys; the only outside input is an optional `now` and, for a new token, a random nonce (`secrets`).

Token: 16 characters of the lower-case RFC 4648 base32 alphabet (``a-z2-7``). Base32 rather than base64
because some MTAs change the case of the local part: a token is compared lower-cased, so it survives that.

    k ddd nnnn mmmmmmmm
    | |   |    +- the first 40 bits of HMAC-SHA256(key, "bm1" kid day nonce recipient)
    | |   +- 20 random bits, so that every message gets its own token (the sent log finds a message by it)
    | +- the day it was signed: days since 1970-01-01 UTC, modulo 32768 (the stamp wraps every 89 years)
    +- the key id, derived from the key (so rotation needs no numbering: the first key signs, all verify)

Return paths (``bounces+*@example.com``, separator ``+``, encoding ``=``):

- one recipient: VERP, then the token: ``bounces+alice=example.org+k2ab3cdefghijklm@example.com``. The
  recipient is inside the HMAC, so a bounce to this address is about alice@example.org whatever its body says;
- several recipients: the message token only, ``bounces+k2ab3cdefghijklm@example.com`` (its HMAC covers an
  empty recipient; the sent log, when kept, says who the message went to).

A token at the END of the local part never makes an unsigned VERP address ambiguous: the encoded domain that
precedes it cannot contain the separator.

Why 40 bits: a forger has to guess online, one SMTP transaction per guess (BATV uses 24 bits, SRS 24). Why a
day stamp and not a timestamp: three characters, and expiry is counted in days (`max_age_days`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_ALPHABET_SET = frozenset(ALPHABET)
TOKEN_LEN = 16
KID_LEN, DAY_LEN, NONCE_LEN, MAC_LEN = 1, 3, 4, 8
DAY_MODULUS = 32**DAY_LEN  # 32768 days
MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1: longer VERP local parts fall back to a message token
MIN_KEY_LEN = 16
_PREFIX = b"bm1\0"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Check.status values
VALID, EXPIRED, BAD, UNKNOWN_KEY = "valid", "expired", "bad", "unknown-key"
MALFORMED, UNSIGNED = "malformed", "unsigned"


class BadKey(ValueError):
    """A key that cannot be used (too short, empty ring)."""


@dataclass(frozen=True)
class Key:
    secret: bytes
    kid: str  # one base32 character

    @classmethod
    def make(cls, secret: str | bytes) -> Key:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_KEY_LEN:
            raise BadKey(f"a key must have at least {MIN_KEY_LEN} characters (got {len(raw)})")
        return cls(raw, _b32(hashlib.sha256(b"bouncemilter key id\0" + raw).digest())[:KID_LEN])

    def __repr__(self) -> str:  # never print the secret
        return f"Key(kid={self.kid!r})"


class KeyRing:
    """Keys in order: the first signs, every one verifies (rotation: put the new key first, keep the old)."""

    def __init__(self, secrets_: Iterable[str | bytes]) -> None:
        self.keys: tuple[Key, ...] = tuple(Key.make(s) for s in secrets_)
        if not self.keys:
            raise BadKey("no key")
        self._by_kid: dict[str, list[tuple[int, Key]]] = {}
        for i, key in enumerate(self.keys):
            self._by_kid.setdefault(key.kid, []).append((i, key))

    @classmethod
    def from_text(cls, text: str) -> KeyRing:
        """One key per line; blank lines and lines starting with '#' are skipped; surrounding spaces ignored."""
        return cls(line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))

    @property
    def signing_key(self) -> Key:
        return self.keys[0]

    def candidates(self, kid: str) -> list[tuple[int, Key]]:
        """(position in the ring, key) of the keys with this id (two keys may share one of the 32 ids)."""
        return self._by_kid.get(kid, [])

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"KeyRing({len(self.keys)} keys)"


@dataclass(frozen=True)
class Check:
    """What verify() found. `status` is one of VALID, EXPIRED, BAD, UNKNOWN_KEY, MALFORMED, UNSIGNED."""

    status: str
    why: str
    key_index: int = -1  # position of the verifying key in the ring (0 = the signing key)
    age_days: int = -1
    recipient: str = ""  # the recipient the token binds ("" for a message token)
    token: str = ""

    @property
    def ok(self) -> bool:
        return self.status == VALID


# ------------------------------------------------------------------------------------------------ encoding


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _int_b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def _b32_int(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + ALPHABET.index(ch)
    return value


def day_number(now: datetime | None = None) -> int:
    """Days since 1970-01-01 UTC (a naive datetime is taken as UTC)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH).days


def normalise_recipient(recipient: str | None) -> str:
    return (recipient or "").strip().strip("<>").strip().lower()


def _mac(key: Key, day: str, nonce: str, recipient: str) -> str:
    msg = _PREFIX + (key.kid + day + nonce).encode("ascii") + b"\0" + recipient.encode("utf-8", "surrogatepass")
    return _b32(hmac.new(key.secret, msg, hashlib.sha256).digest())[:MAC_LEN]


def new_nonce() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(NONCE_LEN))


def make_token(keys: KeyRing, recipient: str | None = None, *, day: int, nonce: str | None = None) -> str:
    """The token for `recipient` ("" or None: a message token) signed on day number `day`."""
    nonce = (nonce or new_nonce()).lower()
    if len(nonce) != NONCE_LEN or not set(nonce) <= _ALPHABET_SET:
        raise ValueError(f"nonce must be {NONCE_LEN} characters of {ALPHABET}")
    key = keys.signing_key
    stamp = _int_b32(day % DAY_MODULUS, DAY_LEN)
    return key.kid + stamp + nonce + _mac(key, stamp, nonce, normalise_recipient(recipient))


def is_token(text: str) -> bool:
    """True when `text` has the shape of a token (any case)."""
    return len(text) == TOKEN_LEN and set(text.lower()) <= _ALPHABET_SET


def verify(
    keys: KeyRing, token: str, recipient: str | None = None, *, now: datetime | None = None, max_age_days: int = 30
) -> Check:
    """Check `token` for `recipient` (None/"" for a message token) at `now` (default: the current time).

    Case-insensitive. A token signed up to one day in the future (clock skew between two hosts) is valid.
    """
    token = (token or "").strip().lower()
    rcpt = normalise_recipient(recipient)
    if not token:
        return Check(UNSIGNED, "no token", recipient=rcpt)
    if not is_token(token):
        return Check(MALFORMED, "not a token", recipient=rcpt, token=token)
    kid, stamp = token[:KID_LEN], token[KID_LEN : KID_LEN + DAY_LEN]
    nonce, mac = token[KID_LEN + DAY_LEN : -MAC_LEN], token[-MAC_LEN:]
    found = keys.candidates(kid)
    if not found:
        return Check(UNKNOWN_KEY, f"key id {kid!r} is not in the key ring", recipient=rcpt, token=token)
    for index, key in found:
        if hmac.compare_digest(_mac(key, stamp, nonce, rcpt), mac):
            age = (day_number(now) - _b32_int(stamp)) % DAY_MODULUS
            if age == DAY_MODULUS - 1:
                age = 0  # signed "tomorrow" by a host whose clock is ahead
            if age > max_age_days:
                return Check(EXPIRED, f"signed {age} days ago (valid {max_age_days})", index, age, rcpt, token)
            return Check(VALID, f"signed {age} day(s) ago with key {index + 1}", index, age, rcpt, token)
    what = f"for {rcpt}" if rcpt else "as a message token"
    return Check(BAD, f"does not verify {what} (altered, or made with another key)", recipient=rcpt, token=token)


# ------------------------------------------------------------------------------------------------ return paths


def split_token(tail: str, separator: str = "+") -> tuple[str, str]:
    """The part of a VERP local part after the bounce mailbox's separator -> (rest, token).

    ``alice=example.org+k2ab...`` -> (``alice=example.org``, ``k2ab...``); ``k2ab...`` -> ("", ``k2ab...``);
    anything without a token -> (tail, "").
    """
    if is_token(tail):
        return "", tail.lower()
    rest, sep, last = tail.rpartition(separator)
    if sep and rest and is_token(last):
        return rest, last.lower()
    return tail, ""


def _verp_base(bounce_address: str, separator: str) -> tuple[str, str]:
    """(local, domain) of a bounce address or VERP pattern (``bounces+*@example.com`` -> bounces, example.com)."""
    addr = bounce_address.strip().strip("<>").lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{bounce_address!r}: not an address")
    if local.endswith(separator + "*"):
        local = local[: -len(separator) - 1]
    return local, domain


_LOCAL_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~.")


def sign(
    keys: KeyRing,
    bounce_address: str,
    recipient: str | None = None,
    *,
    now: datetime | None = None,
    nonce: str | None = None,
    separator: str = "+",
    encoding: str = "=",
) -> str:
    """A signed return path: VERP + token for `recipient`, or a message token when there is none.

    `bounce_address` is the bounce mailbox or its VERP pattern (``bounces+*@example.com``). A recipient that
    cannot be written into a plain local part, or whose VERP form would pass 64 characters, gets a message
    token instead (the address must still be deliverable by every MTA on the way back).
    """
    local, domain = _verp_base(bounce_address, separator)
    day = day_number(now)
    rcpt = normalise_recipient(recipient)
    if rcpt:
        rlocal, at, rdomain = rcpt.rpartition("@")
        if at and rlocal and rdomain and set(rlocal + rdomain) <= _LOCAL_OK:
            verp = f"{local}{separator}{rlocal}{encoding}{rdomain}"
            token = make_token(keys, rcpt, day=day, nonce=nonce)
            if len(verp) + len(separator) + TOKEN_LEN <= MAX_LOCAL_PART:
                return f"{verp}{separator}{token}@{domain}"
    return f"{local}{separator}{make_token(keys, None, day=day, nonce=nonce)}@{domain}"


# ------------------------------------------------------------------------------------------------ outbound


class Signer:
    """Which envelope senders are signed, and with which bounce address.

    `senders`: ``@example.com`` (every sender of the domain) or ``news@example.com`` (that sender).
    `addresses`: the VERP patterns mail may come back to, in order; a sender's own domain's pattern is used
    when there is one (so the return path stays in the sender's domain for SPF and DMARC), else the first.
    """

    def __init__(
        self,
        keys: KeyRing,
        senders: Sequence[str],
        addresses: Sequence[str],
        separator: str = "+",
        encoding: str = "=",
    ) -> None:
        self.keys = keys
        self.separator = separator
        self.encoding = encoding
        self._domains = {s.strip().lower()[1:] for s in senders if s.strip().startswith("@")}
        self._exact = {s.strip().lower() for s in senders if not s.strip().startswith("@")}
        self.addresses = [a.strip().lower() for a in addresses]
        self._by_domain: dict[str, str] = {}
        for a in self.addresses:
            self._by_domain.setdefault(a.rpartition("@")[2], a)

    def __bool__(self) -> bool:
        return bool((self._domains or self._exact) and self.addresses)

    def wants(self, sender: str) -> bool:
        """Is mail from this envelope sender signed? (The null sender never is.)"""
        addr = sender.strip().strip("<>").lower()
        if not addr or "@" not in addr:
            return False
        return addr in self._exact or addr.rpartition("@")[2] in self._domains

    def bounce_address(self, sender: str) -> str:
        domain = sender.strip().strip("<>").lower().rpartition("@")[2]
        return self._by_domain.get(domain) or self.addresses[0]

    def return_path(self, sender: str, recipients: Sequence[str], now: datetime | None = None) -> str:
        """The signed return path for a message from `sender` to `recipients`."""
        rcpt = recipients[0] if len(recipients) == 1 else None
        return sign(
            self.keys,
            self.bounce_address(sender),
            rcpt,
            now=now,
            separator=self.separator,
            encoding=self.encoding,
        )
