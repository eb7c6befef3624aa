"""Which format detectors can match a message, read once per message from a few headers.

Every detector first rejects a foreign message on its From, Subject, Message-ID, Content-Type,
Received lines or a header's presence. Asking 40 detectors in turn cost ~5,000 instructions each
(a Python call and a few header look-ups per detector: ~160,000 of a Postfix DSN's ~900,000), so
each family module also declares, per detector, a `Gate`: cheap facts its own first check implies
(whenever the detector returns a result, one of its gate's facts holds). `candidates` reads the
facts of a message once (one pass over short lower-cased strings) and yields only the detectors
whose gate is open, in DETECTORS order. A gate may be looser than the detector, never stricter:
tests/test_formats_gate.py checks that on every fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..mime import Message
from .providers_common import header_lower


@dataclass(frozen=True, slots=True)
class Gate:
    """Facts of which at least one holds for every message the detector reads; all lower case."""

    from_has: tuple[str, ...] = ()  # substrings of the From value
    from_blank: bool = False  # an empty or blank From (a null sender's bounce)
    subject_starts: tuple[str, ...] = ()  # prefixes of the raw Subject, leading white space stripped
    subject_has: tuple[str, ...] = ()  # substrings of the raw Subject
    headers: tuple[str, ...] = ()  # header names present
    message_id_has: tuple[str, ...] = ()  # substrings of the Message-ID value
    content_type_has: tuple[str, ...] = ()  # substrings of the top Content-Type value
    received_has: tuple[str, ...] = ()  # substrings of the Received headers
    # The detector's own test, for a condition the facts above cannot state exactly (a case-insensitive
    # regex on the decoded Subject): asked only in the detector's turn, when no fact above holds.
    check: Callable[[Message], bool] | None = None


Detector = tuple[str, Callable]
Tokens = tuple[tuple[str, frozenset[int]], ...]


def _tokens(gates: Sequence[Gate | None], attr: str) -> Tokens:
    by_token: dict[str, set[int]] = {}
    for i, gate in enumerate(gates):
        for token in getattr(gate, attr) if gate is not None else ():
            by_token.setdefault(token, set()).add(i)
    return tuple((token, frozenset(idx)) for token, idx in by_token.items())


class Gates:
    """The gates of DETECTORS, indexed by fact so a message's facts are read once for all of them."""

    def __init__(self, detectors: Sequence[Detector], gates: dict[str, Gate]) -> None:
        unknown = set(gates) - {name for name, _ in detectors}
        if unknown:
            raise ValueError(f"gates for unknown detectors: {sorted(unknown)}")
        self.detectors = list(detectors)
        table = [gates.get(name) for name, _ in detectors]
        self.ungated = frozenset(i for i, gate in enumerate(table) if gate is None)
        self.blank = frozenset(i for i, gate in enumerate(table) if gate is not None and gate.from_blank)
        self.from_has = _tokens(table, "from_has")
        self.subject_starts = _tokens(table, "subject_starts")
        self.any_subject_start = tuple(token for token, _ in self.subject_starts)
        self.subject_has = _tokens(table, "subject_has")
        self.message_id_has = _tokens(table, "message_id_has")
        self.content_type_has = _tokens(table, "content_type_has")
        self.received_has = _tokens(table, "received_has")
        headers: dict[str, set[int]] = {}
        for i, gate in enumerate(table):
            for name in gate.headers if gate is not None else ():
                headers.setdefault(name, set()).add(i)
        self.headers = {name: frozenset(idx) for name, idx in headers.items()}
        self.checks = {i: gate.check for i, gate in enumerate(table) if gate is not None and gate.check is not None}

        # A sender and a subject come back bounce after bounce (one MTA's MAILER-DAEMON, its wording): their facts
        # are read once per value (the From alone has ~25 substrings to look for).
        self.sender_facts = lru_cache(maxsize=1024)(self._sender_facts)
        self.subject_facts = lru_cache(maxsize=1024)(self._subject_facts)

    def _sender_facts(self, sender: str) -> frozenset[int]:
        opened: set[int] = set()
        if not sender.strip():
            opened |= self.blank
        for token, idx in self.from_has:
            if token in sender:
                opened |= idx
        return frozenset(opened)

    def _subject_facts(self, subject: str) -> frozenset[int]:
        opened: set[int] = set()
        start = subject.lstrip()
        if start.startswith(self.any_subject_start):  # nearly always False: one C call for all prefixes
            for token, idx in self.subject_starts:
                if start.startswith(token):
                    opened |= idx
        for token, idx in self.subject_has:
            if token in subject:
                opened |= idx
        return frozenset(opened)

    def opened(self, msg: Message) -> frozenset[int]:
        """Positions of the detectors whose gate is open on the facts alone (checks aside)."""
        opened = self.ungated | self.sender_facts(header_lower(msg, "from"))
        subject = header_lower(msg, "subject")
        if subject:
            opened |= self.subject_facts(subject)
        h = msg.headers
        for name in self.headers.keys() & h.names():
            opened |= self.headers[name]
        for facts, value in (
            (self.message_id_has, h.get("message-id")),
            (self.content_type_has, h.get("content-type")),
            (self.received_has, "\n".join(h.get_all("received"))),
        ):
            if value:
                value = value.lower()
                for token, idx in facts:
                    if token in value:
                        opened |= idx
        return opened

    def candidates(self, msg: Message) -> Iterator[Detector]:
        """The detectors that may match `msg`, in order."""
        opened = self.opened(msg)
        checks = self.checks
        for i in sorted(opened.union(checks)):
            if i in opened or checks[i](msg):
                yield self.detectors[i]
