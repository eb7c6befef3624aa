"""Is a recorded message evidence about mail we really sent? The verdict between classification and the store.

With signing on (`[signing] secret_file`) and `verify` not "off", `Verifier.apply()` sets on the store row:

- ``verified`` (messages and recipients): True when the message proves that it answers our mail, else False.
  Only verified evidence moves the suppression policy (`policy.classify_event`); unverified rows are kept.
- ``verification``: why, in words, for people (`history`, the log line, Datasette).

What proves it, first match wins:

1. a valid token in the envelope recipient (the return path we signed): a recipient token binds the bounce to
   that recipient; a message token binds it to the message's recipients when the sent log has them;
2. the returned original carries a valid signed return path (its Return-Path header: what an ARF complaint
   quotes, since the mailbox provider received the message with it);
3. the returned original's Message-ID is in the sent log (`[signing] log_sent`).

"Binds" means that only rows about those recipients are verified: a forger holding one of our messages (every
recipient holds one) can then only speak about himself. A single bound recipient becomes the row's address, as
a VERP address does (so a complaint whose report hides the recipient still names who complained).

`check_address()` is the RCPT-time check the milter uses for `verify = "reject"`.

Second, with or without signing: a hard `hostunknown` / `notaccept` row (the claim that a whole domain is dead)
keeps `hard` only if DNS agrees (`dnscheck.DomainChecker`); if the domain accepts mail it counts as soft, and
``recipients.note`` says why. Unverified rows are not looked up (they never count anyway).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from . import signing
from .classify.address import canonical
from .dnscheck import normalise_domain
from .store import row_address, verp_addresses

if TYPE_CHECKING:
    from .classify.model import Classification
    from .store import MessageMeta
    from .verp import BounceMatcher, Match


class SentLookup(Protocol):
    """The sent log (`[signing] log_sent`): recipients of the messages with this token or Message-ID."""

    def by_token(self, token: str) -> list[set[str]] | None: ...

    def by_message_id(self, message_id: str) -> list[set[str]] | None: ...


@dataclass
class Evidence:
    why: str
    bound: set[str] | None  # the recipients it may speak about; None = any


DOMAIN_REASONS = frozenset({"hostunknown", "notaccept"})  # reasons that claim a whole domain is dead


class Verifier:
    def __init__(
        self,
        keys: signing.KeyRing | None,
        matcher: BounceMatcher,
        mode: str = "record",
        max_age_days: int = 30,
        sent: SentLookup | None = None,
        dns: Any = None,
        dns_wait: float = 0.04,
    ) -> None:
        self.keys = keys  # None: signing off (only the DNS check runs)
        self.matcher = matcher
        self.mode = mode if keys is not None else "off"
        self.max_age_days = max_age_days
        self.sent = sent
        self.dns = dns  # dnscheck.DomainChecker or None
        self.dns_wait = dns_wait  # seconds the DNS check may add (the milter: [dns] timeout_ms)

    def waiting(self, dns_wait: float) -> Verifier:
        """This verifier with another DNS wait (a mailbox reader can wait for the whole lookup)."""
        other = copy.copy(self)
        other.dns_wait = dns_wait
        return other

    @property
    def active(self) -> bool:
        return self.mode != "off"

    @property
    def rejects(self) -> bool:
        return self.mode == "reject"

    # -- RCPT time

    def check_match(self, match: Match, now: datetime | None = None) -> signing.Check:
        if not match.token:
            what = "unsigned VERP return path" if match.verp_recipient else "bare bounce address"
            return signing.Check(signing.UNSIGNED, what, recipient=match.verp_recipient)
        return signing.verify(self.keys, match.token, match.verp_recipient, now=now, max_age_days=self.max_age_days)

    def check_address(self, address: str, now: datetime | None = None) -> signing.Check:
        match = self.matcher.match(address)
        if match is None:
            return signing.Check(signing.UNSIGNED, "not a bounce address")
        return self.check_match(match, now)

    def refuse_at_rcpt(self, match: Match, now: datetime | None = None) -> signing.Check | None:
        """With verify = "reject": the failed check when this recipient must get 550 5.7.1, else None.

        The bare bounce address is never refused: complaints (feedback loops) and bounces of mail sent before
        signing was enabled arrive there, and a complaint can still prove itself by the original it quotes.
        """
        if not self.rejects or not (match.token or match.verp_recipient):
            return None
        check = self.check_match(match, now)
        return None if check.ok else check

    # -- end of message

    def apply(self, raw: bytes, result: Classification, meta: MessageMeta, now: datetime | None = None) -> None:
        """Set meta.verified, meta.verification and the per-recipient verdicts, then check domain claims."""
        if self.active:
            self._verify(raw, result, meta, now)
        if self.dns is not None and meta.bounce_addresses:  # (mail to anyone else never counts: no lookups)
            self._check_domains(result, meta)

    def _verify(self, raw: bytes, result: Classification, meta: MessageMeta, now: datetime | None) -> None:
        checks = [self.check_address(a, now) for a in meta.bounce_addresses]
        valid = [c for c in checks if c.ok]
        evidence = self._from_token(valid[0], "signed return path") if valid else None
        if evidence is None:
            evidence = self._from_content(raw, result, now)
        if evidence is None:
            meta.verified = False
            meta.verification = _failure(checks)
            return
        meta.verified = True
        meta.verification = evidence.why
        if evidence.bound is None:
            return
        # as the rows hold them (IDN domains as A-labels: classify/address.py), whatever form the token carried
        evidence.bound = {canonical(a).address or a.strip().lower() for a in evidence.bound}
        if len(evidence.bound) == 1 and not [v for v in meta.verp_recipients if v]:
            meta.verp_recipients = [next(iter(evidence.bound))]
        outside = sorted(a for a in row_addresses(meta, result) if a not in evidence.bound)
        for address in row_addresses(meta, result):
            meta.recipient_verified[address] = address in evidence.bound
        if outside:
            shown = ", ".join(outside[:3]) + (" ..." if len(outside) > 3 else "")
            meta.verification += f"; not about {shown}: unverified"

    def _check_domains(self, result: Classification, meta: MessageMeta) -> None:
        claims: list[tuple[Any, str, str]] = []  # (recipient result, row address, domain)
        for r, address in zip(result.recipients, _addresses(meta, result), strict=True):
            if not (r.hard and r.reason in DOMAIN_REASONS and address):
                continue
            if meta.recipient_verified.get(address, meta.verified) is False:
                continue  # never counts: no lookup
            named = r.recipient if "@" in (r.recipient or "") else address
            claims.append((r, address, named.rpartition("@")[2].lower()))
        if not claims:
            return
        states = self.dns.check_many([d for _, _, d in claims], self.dns_wait)
        for r, address, domain in claims:
            state = states[normalise_domain(domain)]
            if state.state == "alive":
                r.hard = False
                note = f"{r.reason} claims {domain} is dead, but {state.why}: counted as soft"
            elif state.state == "dead":
                note = f"DNS agrees: {state.why}"
            else:
                note = f"DNS check failed ({state.why}): counted as classified"
            meta.recipient_notes[address] = note

    def _from_token(self, check: signing.Check, what: str) -> Evidence:
        if check.recipient:
            return Evidence(f"{what} for {check.recipient} ({check.why})", {check.recipient})
        sent = self.sent.by_token(check.token) if self.sent is not None else None
        if sent:
            return Evidence(f"{what}, message token ({check.why}); recipients from the sent log", set().union(*sent))
        return Evidence(f"{what}, message token ({check.why})", None)

    def _from_content(self, raw: bytes, result: Classification, now: datetime | None) -> Evidence | None:
        from .classify.mime import parse_message  # only for mail that did not come to a signed address

        headers = parse_message(raw).original_headers()
        return_path = headers.get("return-path").strip() if headers is not None else ""
        if return_path:
            check = self.check_address(return_path, now)
            if check.ok:
                return self._from_token(check, "the returned original's signed return path")
        mid = result.original.message_id.strip() if result.original else ""
        if mid and self.sent is not None:
            sent = self.sent.by_message_id(mid)
            if sent:
                return Evidence(f"the returned original {mid[:200]} is in the sent log", set().union(*sent))
        return None


def _addresses(meta: MessageMeta, result: Classification) -> list[str]:
    """The `recipients.address` of each of result.recipients (store._recipient_rows decides the same way)."""
    verps = verp_addresses(meta)
    verp = verps[0] if len(verps) == 1 else ""
    return [row_address(r, verp) for r in result.recipients]


def row_addresses(meta: MessageMeta, result: Classification) -> list[str]:
    """The distinct `recipients.address` values the store will write."""
    out = _addresses(meta, result) if result.recipients else verp_addresses(meta)
    return list(dict.fromkeys(a for a in out if a))


def _failure(checks: Sequence[signing.Check]) -> str:
    if not checks:
        return "not addressed to a bounce address, and no signed original"
    worst = next((c for c in checks if c.status not in (signing.UNSIGNED,)), checks[0])
    if worst.status == signing.UNSIGNED:
        return f"{worst.why}, and no signed original"
    return {
        signing.EXPIRED: "token expired",
        signing.BAD: "token does not verify",
        signing.UNKNOWN_KEY: "token of an unknown key",
        signing.MALFORMED: "malformed token",
    }.get(worst.status, worst.status) + f": {worst.why}"


def make_verifier(
    settings: Any,
    matcher: BounceMatcher,
    sent: SentLookup | None = None,
    dns: Any = None,
    dns_wait: float | None = None,
) -> Verifier | None:
    """The Verifier of the [signing] settings with `dns` (a DomainChecker), or None when there is nothing to
    check (raises config.ConfigError for an unusable key file). `dns_wait` default: [dns] timeout_ms."""
    keys = None
    if getattr(settings, "signing_enabled", False):
        from .config import read_keys

        keys = read_keys(settings.signing_secret_file)
    if keys is None and dns is None:
        return None
    wait = dns_wait if dns_wait is not None else getattr(settings, "dns_timeout_ms", 40) / 1000
    return Verifier(
        keys,
        matcher,
        getattr(settings, "signing_verify", "record"),
        getattr(settings, "signing_max_age_days", 30),
        sent,
        dns,
        wait,
    )


def make_domain_checker(settings: Any, on_failure: Any = None) -> Any:
    """The DomainChecker of the [dns] settings, or None when `check` is off."""
    if not getattr(settings, "dns_check", True):
        return None
    from .dnscheck import DomainChecker

    return DomainChecker(
        settings.dns_nameservers,
        lifetime=settings.dns_lookup_timeout,
        cache_seconds=settings.dns_cache_seconds,
        on_failure=on_failure,
    )
