"""Our own addresses: the return paths ([bounce] addresses) and the unsubscribe addresses ([unsubscribe] addresses).

Both lists take the same three patterns (exact, VERP ``unsubscribe+*@example.com``, ``@domain``) with the same
VERP separator and encoding, so ``unsubscribe+alice=example.org@example.com`` names ``alice@example.org`` exactly
as a bounce address would. `build_matcher` gives the milter, `import` and `fetch` one matcher over both; a
`verp.Match` says which list matched (`Match.unsubscribe`). Each list is a `verp.BounceMatcher` built the same
way, so whatever rules decode a subscriber from a return path (signed tokens, once bouncemilter.signing exists:
issue #9) decode it from an unsubscribe address too: `subscriber()` is the one place that reads it.

An address both lists match goes to the more specific pattern (exact before VERP before @domain), so
``unsubscribe@example.com`` beside a return path ``@example.com`` is an unsubscribe address; the same pattern in
both lists is a configuration error (config.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .verp import BounceAddress, BounceMatcher, Match

_SPECIFIC = {"exact": 3, "verp": 2, "domain": 1}


class AddressMatcher:
    """`match(rcpt)` over the bounce and the unsubscribe patterns: a `Match` (with `unsubscribe` set) or None."""

    def __init__(
        self,
        bounce: Sequence[BounceAddress],
        unsubscribe: Sequence[BounceAddress] = (),
        separator: str = "+",
        encoding_char: str = "=",
    ) -> None:
        self.bounce = BounceMatcher(list(bounce), separator, encoding_char)
        self.unsubscribe = BounceMatcher(list(unsubscribe), separator, encoding_char)
        self.patterns = [*self.bounce.patterns, *self.unsubscribe.patterns]
        self._kinds = {p.pattern: p.kind for p in self.patterns}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, rcpt: str) -> Match | None:
        b = self.bounce.match(rcpt) if self.bounce.patterns else None
        u = self.unsubscribe.match(rcpt) if self.unsubscribe.patterns else None
        return self._either(b, u)

    def match_path(self, path: str) -> Match | None:
        """match() of an SMTP path as the MTA passes it (see `BounceMatcher.match_path`)."""
        if not self.unsubscribe.patterns:  # (no [unsubscribe] addresses: one call less for every recipient)
            return self.bounce.match_path(path)
        b = self.bounce.match_path(path) if self.bounce.patterns else None
        u = self.unsubscribe.match_path(path) if self.unsubscribe.patterns else None
        return self._either(b, u)

    def _either(self, b: Match | None, u: Match | None) -> Match | None:
        if u is None:
            return b
        if b is not None and _SPECIFIC[self._kinds[b.pattern]] > _SPECIFIC[self._kinds[u.pattern]]:
            return b
        return replace(u, unsubscribe=True)


def build_matcher(settings: Any) -> AddressMatcher:
    """The matcher for `config.Settings` (bounce and unsubscribe addresses, VERP separator and encoding)."""
    return AddressMatcher(
        settings.bounce_addresses,
        getattr(settings, "unsubscribe_addresses", ()),
        settings.verp_separator,
        settings.verp_encoding,
    )


def subscriber(matches: Sequence[Match]) -> str:
    """The subscriber an unsubscribe request is about, from the unsubscribe addresses it was sent to: the one
    address they encode ("" when none or several: then the request's sender is the subscriber)."""
    found = {m.verp_recipient for m in matches if m.unsubscribe and m.verp_recipient}
    return found.pop() if len(found) == 1 else ""
