"""Return-path addresses: configured patterns, recipient matching and VERP encode/decode.

Three kinds of pattern are configured (`bounce_addresses` in the config, `--bounce-address` on the command line):

- exact:  ``bounces@example.com`` matches only that address;
- VERP:   ``bounces+*@example.com`` matches ``bounces+<anything>@example.com``; the ``<anything>`` is the
  subscriber's address with its ``@`` encoded, e.g. ``bounces+alice=example.org@example.com`` names
  ``alice@example.org`` (Postfix's and Mailman's convention: separator ``+``, encoding character ``=``);
- domain: ``@bounces.example.com`` matches every address in that domain (a VERP-shaped local part
  ``<anything>+alice=example.org`` is decoded too).

Matching is case-insensitive and costs one dict look-up per recipient (plus one prefix test per VERP pattern of
the recipient's domain), because it runs for every recipient of every message the MTA receives.
"""

from __future__ import annotations

from dataclasses import dataclass

from .signing import split_token

_LOCAL_FORBIDDEN = set(' \t\r\n<>()[],;:\\"@')
_DOMAIN_ALLOWED = set("abcdefghijklmnopqrstuvwxyz0123456789.-_[]:")


@dataclass(frozen=True)
class BounceAddress:
    """One configured return-path pattern, normalised to lower case."""

    pattern: str

    @property
    def kind(self) -> str:
        """ "exact", "verp" or "domain"."""
        if self.pattern.startswith("@"):
            return "domain"
        if "*@" in self.pattern:
            return "verp"
        return "exact"

    @property
    def domain(self) -> str:
        return self.pattern.rpartition("@")[2]


@dataclass(frozen=True)
class Match:
    address: str  # the recipient, lower-cased addr-spec
    pattern: str  # the BounceAddress.pattern that matched
    verp_recipient: str  # decoded VERP recipient, "" when the address carries none
    token: str = ""  # the signed-return-path token at the end of the local part (bouncemilter.signing), if any
    unsubscribe: bool = False  # one of the [unsubscribe] addresses (bouncemilter.unsubscribe), not a return path


def _check_domain(domain: str, spec: str) -> None:
    if not domain:
        raise ValueError(f"{spec!r}: missing domain after '@'")
    if not set(domain) <= _DOMAIN_ALLOWED or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise ValueError(f"{spec!r}: {domain!r} is not a valid domain")


def _check_local(local: str, spec: str) -> None:
    if not local:
        raise ValueError(f"{spec!r}: empty local part (use '@domain' to match a whole domain)")
    if set(local) & _LOCAL_FORBIDDEN:
        raise ValueError(f"{spec!r}: {local!r} is not a plain local part (no spaces, quotes, brackets or '@')")
    if not local.isprintable():  # a NUL or an ESC: no MTA delivers to it, and it would garble logs and terminals
        raise ValueError(f"{spec!r}: {local!r} holds a control character")


def parse_bounce_address(spec: str) -> BounceAddress:
    """Validate and normalise one pattern: ``local@domain``, ``local+*@domain`` or ``@domain``.

    The VERP pattern's separator is whatever character sits before the ``*`` (it must be the configured
    separator for matching to decode it; config.py checks that).
    """
    if not isinstance(spec, str):
        raise ValueError(f"{spec!r}: a bounce address must be a string")
    text = spec.strip().lower()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text:
        raise ValueError("empty bounce address")
    if text.count("@") != 1:
        raise ValueError(f"{spec!r}: expected 'local@domain', 'local+*@domain' or '@domain'")
    local, _, domain = text.partition("@")
    _check_domain(domain, spec)
    if not local:
        return BounceAddress(text)
    if "*" in local:
        if local.count("*") != 1 or not local.endswith("*") or len(local) < 3:
            raise ValueError(
                f"{spec!r}: a VERP pattern is 'local' + separator + '*' before the '@', e.g. bounces+*@{domain}"
            )
        prefix, sep = local[:-2], local[-2]
        if sep.isalnum() or sep == "*":
            raise ValueError(f"{spec!r}: the character before '*' must be the VERP separator (e.g. '+' or '-')")
        _check_local(prefix, spec)
        return BounceAddress(text)
    _check_local(local, spec)
    return BounceAddress(text)


def clean_rcpt(rcpt: str) -> str:
    """The addr-spec of an SMTP path as the MTA passes it: ``<a@b>``, ``a@b``, ``<@relay:a@b>``; lower-cased."""
    addr = rcpt.strip()
    if addr.startswith("<"):
        end = addr.find(">")
        addr = addr[1:end] if end > 0 else addr[1:]
    if addr.startswith("@"):  # obsolete source route "@hop,@hop:user@domain"
        addr = addr.partition(":")[2]
    addr = addr.strip()
    if len(addr) >= 2 and addr[0] == '"':  # quoted local part: keep the quotes off for comparison
        q = addr.rfind('"')
        if q > 0 and addr[q + 1 : q + 2] == "@":
            addr = addr[1:q] + addr[q + 1 :]
    return addr.lower()


def verp_encode(bounce_address: str, recipient: str, separator: str = "+", encoding_char: str = "=") -> str:
    """``verp_encode("bounces@example.com", "alice@example.org")`` -> ``bounces+alice=example.org@example.com``.

    `bounce_address` may also be a VERP pattern (``bounces+*@example.com``); its ``+*`` is dropped first.
    """
    base = clean_rcpt(bounce_address)
    local, at, domain = base.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{bounce_address!r}: not an address")
    if local.endswith(separator + "*"):
        local = local[: -len(separator) - 1]
    rlocal, rat, rdomain = recipient.strip().strip("<>").rpartition("@")
    if not rat or not rlocal or not rdomain:
        raise ValueError(f"{recipient!r}: not an address")
    return f"{local}{separator}{rlocal}{encoding_char}{rdomain}@{domain}".lower()


def _decode_tail(tail: str, encoding_char: str) -> str:
    """``alice=example.org`` -> ``alice@example.org``; "" when it does not look like an encoded address.

    The LAST encoding character is the '@': a domain never contains it, a local part may.
    """
    rlocal, enc, rdomain = tail.rpartition(encoding_char)
    if not enc or not rlocal or not rdomain or "." not in rdomain:
        return ""
    if not set(rdomain) <= _DOMAIN_ALLOWED or rdomain.startswith(".") or rdomain.endswith("."):
        return ""
    return f"{rlocal}@{rdomain}"


def verp_decode(address: str, separator: str = "+", encoding_char: str = "=") -> str:
    """``bounces+alice=example.org@example.com`` -> ``alice@example.org``; "" when not a VERP address.

    The FIRST separator ends the bounce mailbox's own name (the subscriber's local part may contain the
    separator too, e.g. ``bounces+alice+news=example.org@…`` -> ``alice+news@example.org``). A signed return
    path's token after the encoded domain is left out (``bounces+alice=example.org+<token>@…``).
    """
    local = clean_rcpt(address).rpartition("@")[0]
    head, sep, tail = local.partition(separator)
    if not sep or not head:
        return ""
    rest = split_token(tail, separator)[0]  # a signed return path ends in a token
    return _decode_tail(rest, encoding_char) if rest else ""


# a first or last character after which clean_rcpt() does more than lower-case: a bracket, a source route, a
# quoted local part, white space (all of Unicode's: str.strip() takes it off)
_NOT_PLAIN = frozenset('<>@"') | frozenset(c for c in map(chr, range(0x3001)) if c.isspace())


class BounceMatcher:
    """Decides whether an envelope recipient is one of our return-path addresses."""

    def __init__(self, patterns: list[BounceAddress], separator: str = "+", encoding_char: str = "=") -> None:
        if not separator or not encoding_char or separator == encoding_char:
            raise ValueError("the VERP separator and encoding character must be two different non-empty strings")
        self.patterns = list(patterns)
        self.separator = separator
        self.encoding_char = encoding_char
        self._exact: dict[str, str] = {}
        self._domains: dict[str, str] = {}
        self._verp: dict[str, list[tuple[str, str]]] = {}  # domain -> [(local prefix incl. separator, pattern)]
        for p in self.patterns:
            kind = p.kind
            if kind == "domain":
                self._domains.setdefault(p.domain, p.pattern)
            elif kind == "verp":
                local = p.pattern.rpartition("@")[0][:-1]  # "bounces+"
                self._verp.setdefault(p.domain, []).append((local, p.pattern))
                # the bare mailbox ("bounces@…") is the VERP address without a subscriber: match it too
                self._exact.setdefault(f"{local[:-1]}@{p.domain}", p.pattern)
            else:
                self._exact.setdefault(p.pattern, p.pattern)

        # every domain a recipient must have to match at all: most recipients are told apart by this alone
        self._all_domains = (
            frozenset(self._domains) | frozenset(self._verp) | {a.rpartition("@")[2] for a in self._exact}
        )

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match_path(self, path: str) -> Match | None:
        """match() of an SMTP path as the MTA passes it (``<a@b>``, ``a@b``, ``<>``): what the milter asks for
        every recipient of every message, so a plain ``<local@domain>`` of another domain is turned away in a
        few steps (each Python call is ~1,000 instructions; match() of a stranger took 7,000)."""
        if path[:1] == "<" and path[-1:] == ">":
            inner = path[1:-1]
            # plain (clean_rcpt() would only lower-case it): its domain decides
            if inner and inner[0] not in _NOT_PLAIN and inner[-1] not in _NOT_PLAIN:
                if inner[inner.rfind("@") + 1 :].lower() not in self._all_domains:
                    return None
                return self.match(inner)
            return self.match(inner.strip())
        path = path.strip()  # (decide.bare)
        if path[:1] == "<" and path[-1:] == ">":
            path = path[1:-1]
        return self.match(path.strip())

    def match(self, rcpt: str) -> Match | None:
        addr = clean_rcpt(rcpt)
        local, at, domain = addr.rpartition("@")
        if not at or not local:
            return None
        pattern = self._exact.get(addr)
        if pattern is not None:
            return Match(addr, pattern, "")
        for prefix, pattern in self._verp.get(domain, ()):
            if local.startswith(prefix) and len(local) > len(prefix):
                rest, token = split_token(local[len(prefix) :], self.separator)
                return Match(addr, pattern, _decode_tail(rest, self.encoding_char) if rest else "", token)
        pattern = self._domains.get(domain)
        if pattern is not None:
            head, sep, tail = local.partition(self.separator)
            if not sep or not head:
                return Match(addr, pattern, "")
            rest, token = split_token(tail, self.separator)
            return Match(addr, pattern, _decode_tail(rest, self.encoding_char) if rest else "", token)
        return None
