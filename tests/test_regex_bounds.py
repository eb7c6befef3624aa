"""No classifier pattern may take super-linear time on hostile text: anyone can send the milter mail.

Every compiled pattern in bouncemilter.classify is run over long runs of the characters that
make regexes backtrack. A pattern is flagged when doubling the input makes it both slow and
more than ~3x slower (quadratic), so a busy CI machine does not produce false alarms.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
import time

import pytest

import bouncemilter.classify  # noqa: F401 - loads the package
from bouncemilter import classify

PACKAGE = sys.modules["bouncemilter.classify"]
UNITS = [
    "a",
    "@",
    " ",
    "a@",
    "a.",
    "<",
    "<a",
    "a@a.",
    "5",
    "5.",
    "550 ",
    "\n",
    " \n",
    "a\n",
    "-",
    "=?",
    ":",
    "a:",
    "(",
    "[",
    '"',
    "\t",
    "x ",
    "@ ",
    ". ",
    "a;",
    "a=",
    "=",
    "\\",
    "'",
    "/",
    "#",
    "*",
    ">",
]


def _patterns() -> list[tuple[str, re.Pattern]]:
    modules = [PACKAGE] + [
        importlib.import_module(m.name) for m in pkgutil.walk_packages(PACKAGE.__path__, "bouncemilter.classify.")
    ]
    seen: dict[int, tuple[str, re.Pattern]] = {}
    for module in modules:
        for name, obj in vars(module).items():
            if isinstance(obj, re.Pattern):
                seen.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
    return list(seen.values())


def _cost(pattern: re.Pattern, unit: str, n: int) -> float:
    text = (unit * (n // len(unit) + 1))[:n]
    worst = 0.0
    for variant in (text, text + "!", "x" + text + "\n"):
        subject = variant.encode() if isinstance(pattern.pattern, bytes) else variant
        t0 = time.perf_counter()
        for _ in pattern.finditer(subject):
            pass
        worst = max(worst, time.perf_counter() - t0)
    return worst


def test_every_pattern_is_linear() -> None:
    patterns = _patterns()
    assert len(patterns) > 50
    slow = []
    for name, pattern in patterns:
        for unit in UNITS:
            small = _cost(pattern, unit, 4000)
            if small < 0.01:
                continue
            big = _cost(pattern, unit, 8000)
            if big > 0.04 and big > 3 * small:
                slow.append(f"{name} on {unit!r}: {small:.3f}s -> {big:.3f}s")
    assert not slow, "\n".join(slow)


@pytest.mark.parametrize(
    "raw",
    [
        b"From: MAILER-DAEMON@example.org\nSubject: Undelivered Mail Returned to Sender\n\n"
        b"550 5.1.1 <a@example.net> user unknown\n" + b"\n" * 20000,
        b"From: x@zoho.example\nX-ZohoMail: 1\n\n" + b"@" * 40000,
        b"From: postmaster@example.org\nSubject: Undeliverable: hi\n\n" + b" " * 40000 + b"SMTP=",
        b"From: MAILER-DAEMON@example.org\nSubject: failure notice\n\n" + b"a@" * 30000,
        # found by bench/fuzz_classify.py (seed 15): an unclosed "<x@x@..." line after qmail's preamble (was 0.6 s),
        # an Exim recipient line of "<gone@<gone@..." (3 s), Gmail's boilerplate phrase repeated (2.4 s)
        b"From: MAILER-DAEMON@example.org\nSubject: failure notice\n\nHi. This is the qmail-send program at "
        b"example.org.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\n<"
        + b"xxxxxxxxxxxxxxxxxxxx@"
        * 16000,
        b"From: Mail Delivery System <Mailer-Daemon@example.org>\nSubject: Mail delivery failed: returning message "
        b"to sender\nX-Failed-Recipients: a@example.net\n\nThis message was created automatically by mail delivery "
        b"software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a "
        b"permanent error. The following address(es) failed:\n\n  " + b"<gone@" * 12000,
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nSubject: Delivery Status Notification "
        b"(Failure)\n\nDelivery to the following recipient failed permanently:\n\n     a@example.net\n\n"
        b"Technical details of permanent failure:\n"
        + b"Google tried to deliver your message, but it was rejected by the "
        * 2000,
    ],
)
def test_hostile_bodies_classify_quickly(raw: bytes) -> None:
    t0 = time.perf_counter()
    classify(raw)
    assert time.perf_counter() - t0 < 1.0


_LITERAL = re.compile(r"(?:\\[^sSdDwWbBAZ0-9]|[A-Za-z0-9 <>:_\-=;,.!'\"/])+")
_PREFIX_UNITS = ["@", " ", "a@", "\n", "a", "<", "a:", ">"]


def _literals(pattern: re.Pattern) -> list[str]:
    """Literal words of a pattern ("User \\(" -> "User ("): a pattern may only backtrack after them."""
    source = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode("latin-1")
    words = {re.sub(r"\\(.)", r"\1", m.group(0)).strip(".") for m in _LITERAL.finditer(source)}
    return sorted(w for w in words if len(w) >= 3)[:12]


def test_every_pattern_is_linear_after_its_own_literals() -> None:
    # 4x the input: linear work takes ~4x the time, quadratic ~16x. A pattern is timed again (best
    # of 3) before it counts as slow, so that a busy machine does not fail a linear one; the low
    # threshold catches a quadratic pattern with a small constant too (">>>\s+.*<...>" took 11 ms
    # on 3,000 spaces and would take minutes on a 1 MiB line).
    slow = []
    for name, pattern in _patterns():
        for word in _literals(pattern):
            for unit in _PREFIX_UNITS:
                if _cost_after(pattern, word, unit, 2000) < 0.002:
                    continue
                small = min(_cost_after(pattern, word, unit, 2000) for _ in range(3))
                big = min(_cost_after(pattern, word, unit, 8000) for _ in range(3))
                if big > 0.02 and big > 8 * small:
                    slow.append(f"{name} after {word!r} on {unit!r}: {small:.4f}s -> {big:.4f}s")
    assert not slow, "\n".join(slow)


def _cost_after(pattern: re.Pattern, word: str, unit: str, n: int) -> float:
    text = word + (unit * (n // len(unit) + 1))[:n]
    subject = text.encode("latin-1", "replace") if isinstance(pattern.pattern, bytes) else text
    t0 = time.perf_counter()
    for _ in pattern.finditer(subject):
        pass
    return time.perf_counter() - t0


# Line starts the recipient patterns anchor on, and what may follow an address token
_AT_PREFIXES = ["", "<", "  ", "  <", " * ", "\t", "x ", "RCPT TO: ", "Addressed To: "]
_AT_TAILS = ["", " x", ">x"]


def test_no_pattern_backtracks_over_every_at_sign_of_a_long_token() -> None:
    # "x+@x+" where x also matches "@" tries every "@" of an unclosed "a@a@a@..." token, each time scanning the
    # rest of it: quadratic (bench/fuzz_classify.py found nine such recipient patterns, one 3 s on 72 kB).
    slow = []
    for name, pattern in _patterns():
        for prefix in _AT_PREFIXES:
            for tail in _AT_TAILS:
                if _cost_text(pattern, prefix + "a@" * 1000 + tail) < 0.001:
                    continue
                small = min(_cost_text(pattern, prefix + "a@" * 1000 + tail) for _ in range(3))
                big = min(_cost_text(pattern, prefix + "a@" * 4000 + tail) for _ in range(3))
                if big > 0.01 and big > 8 * small:
                    slow.append(f"{name} on {prefix!r} + 'a@'... + {tail!r}: {small:.4f}s -> {big:.4f}s")
    assert not slow, "\n".join(slow)


def _cost_text(pattern: re.Pattern, text: str) -> float:
    subject = text.encode("latin-1") if isinstance(pattern.pattern, bytes) else text
    t0 = time.perf_counter()
    for _ in pattern.finditer(subject):
        pass
    return time.perf_counter() - t0
