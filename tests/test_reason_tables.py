"""Every entry of the reason, provider and vendor tables has a hand-written case, and every case
decides as it says. Adding a phrase without its case fails here.

Fixtures (one file per table, real server wordings, written by hand):
- tests/fixtures/reasons/<reason>.txt   "STATUS STAGE | diagnostic"            (the file names the reason)
- tests/fixtures/rhost/<provider>.txt   "REASON | REMOTE-HOST | STATUS | diagnostic"
- tests/fixtures/vendor/<vendor>.txt    "REASON | STAGE | the MTA's own text"
"-" stands for an empty field. The reply code is the one the diagnostic starts with.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bouncemilter.classify.reasons import TABLES, decide
from bouncemilter.classify.reasons.catalog import PSEUDO, STATUS
from bouncemilter.classify.reasons.matcher import normalise, phrase_regex
from bouncemilter.classify.reasons.rhost import PROVIDERS
from bouncemilter.classify.reasons.vendor import TABLES as VENDORS
from bouncemilter.classify.stage import split

FIXTURES = Path(__file__).parent / "fixtures"
_REPLY = re.compile(r"^\s*([245]\d\d)(?:[\s:\-]|$)")


def _rows(path: Path, fields: int) -> list[list[str]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|", fields - 1)]
        assert len(parts) == fields, f"{path.name}:{n}: {line!r}"
        out.append([("" if p == "-" else p) for p in parts] + [f"{path.name}:{n}"])
    return out


def _reply(text: str) -> str:
    m = _REPLY.match(text)
    return m.group(1) if m else ""


def _matches(phrase: str, text: str) -> bool:
    rx = phrase_regex(phrase)
    return phrase in text if rx is None else rx.search(text) is not None


# -- reasons ---------------------------------------------------------------------------------------------------------

CATALOG: dict[str, list[tuple[str, str, str, str]]] = {}
for _path in sorted((FIXTURES / "reasons").glob("*.txt")):
    for _head, _text, _where in _rows(_path, 2):
        _status, _, _stage = _head.partition(" ")
        CATALOG.setdefault(_path.stem, []).append((_status.strip("-"), _stage.strip().strip("-"), _text, _where))
CATALOG_CASES = [(reason, *case) for reason, cases in CATALOG.items() for case in cases]
PHRASES = [(t.name, p) for t in TABLES.values() if t.name != "vacation" for p in t.phrases]
NOT_PHRASES = [(t.name, p) for t in TABLES.values() for p in t.not_phrases]
STAGE_PHRASES = [(t.name, st, p) for t in TABLES.values() for st, ps in t.stage_phrases.items() for p in ps]


@pytest.mark.parametrize(
    ("reason", "status", "stage", "text", "where"), CATALOG_CASES, ids=[c[-1] for c in CATALOG_CASES]
)
def test_catalog_case_decides_its_reason(reason: str, status: str, stage: str, text: str, where: str) -> None:
    text, tagged = split(text)  # as the classifier does: a stage the reply itself names
    decision = decide(status, _reply(text), text, smtp_command=stage or tagged)
    assert decision.reason == reason, f"{where}: {decision}"


@pytest.mark.parametrize(("reason", "phrase"), PHRASES, ids=[f"{r}:{p}" for r, p in PHRASES])
def test_every_phrase_has_a_case(reason: str, phrase: str) -> None:
    assert any(_matches(phrase, normalise(text)) for _, _, text, _ in CATALOG.get(reason, [])), (
        f"no case in tests/fixtures/reasons/{reason}.txt contains {phrase!r}"
    )


@pytest.mark.parametrize(("reason", "phrase"), NOT_PHRASES, ids=[f"{r}:not:{p}" for r, p in NOT_PHRASES])
def test_every_cancelling_phrase_has_a_case(reason: str, phrase: str) -> None:
    # A case of another reason shows the wording that would otherwise have matched this one.
    others = [text for r, cases in CATALOG.items() if r != reason for _, _, text, _ in cases]
    assert any(phrase in normalise(text) for text in others), phrase


@pytest.mark.parametrize(("reason", "stage", "phrase"), STAGE_PHRASES)
def test_every_stage_phrase_has_a_case(reason: str, stage: str, phrase: str) -> None:
    assert any(st == stage and phrase in normalise(text) for _, st, text, _ in CATALOG[reason])


def test_vacation_wording() -> None:
    for phrase in TABLES["vacation"].phrases:
        assert decide("", "", f"Auto: {phrase.capitalize()} and will reply when I am back.").reason == "vacation"


STATUS_CASES = sorted(STATUS.items())


@pytest.mark.parametrize(("status", "reason"), STATUS_CASES, ids=[s for s, _ in STATUS_CASES])
def test_every_status_code_decides_alone(status: str, reason: str) -> None:
    decision = decide(status, "", "")
    assert (decision.reason, decision.rule) == (reason, f"status:{status}")


@pytest.mark.parametrize(("code", "reason"), sorted(PSEUDO.items()))
def test_every_pseudo_status_decides_alone(code: str, reason: str) -> None:
    assert decide(f"5.0.{code}", "", "").reason == reason


REPLY_HINTS = [(t.name, code) for t in TABLES.values() for code in t.reply]


@pytest.mark.parametrize(("reason", "code"), REPLY_HINTS)
def test_every_reply_hint_decides_when_nothing_else_does(reason: str, code: str) -> None:
    assert decide("", code, f"{code} Command rejected").reason == reason


def test_every_reason_has_a_fixture_file_or_no_phrases() -> None:
    for table in TABLES.values():
        if table.phrases and table.name != "vacation":
            assert table.name in CATALOG, table.name


# -- provider tables -------------------------------------------------------------------------------------------------

RHOST: dict[str, list[list[str]]] = {p.stem: _rows(p, 4) for p in sorted((FIXTURES / "rhost").glob("*.txt"))}
RHOST_CASES = [(name, *row) for name, rows in RHOST.items() for row in rows]


@pytest.mark.parametrize(
    ("provider", "reason", "host", "status", "text", "where"), RHOST_CASES, ids=[c[-1] for c in RHOST_CASES]
)
def test_provider_case_decides_by_its_table(provider: str, reason: str, host: str, status: str, text: str, where: str):
    recipient = "" if host else f"someone@{PROVIDERS[provider].domains[0]}"
    decision = decide(status, _reply(text), text, remote_mta=host, recipient=recipient)
    assert decision.reason == reason, f"{where}: {decision}"
    assert decision.rule.startswith(f"rhost:{provider}/"), f"{where}: {decision}"


RULES = [(name, i, rule) for name, p in PROVIDERS.items() for i, rule in enumerate(p.rules)]


@pytest.mark.parametrize(("provider", "index", "rule"), RULES, ids=[f"{n}:{i}" for n, i, _ in RULES])
def test_every_provider_rule_has_a_case(provider: str, index: int, rule) -> None:
    table = PROVIDERS[provider]
    for reason, _host, status, text, _where in RHOST.get(provider, []):
        if reason == rule.reason and rule.matches(status, _reply(text), normalise(text)):
            # ...and no earlier rule of the table takes the case first
            assert table.decide(status, _reply(text), normalise(text))[0] == rule.reason
            return
    pytest.fail(f"no case in tests/fixtures/rhost/{provider}.txt for rule {rule}")


def _linear(table, status: str, reply: str, text: str) -> str:
    """What a provider table decides read rule by rule, without its anchor-word index."""
    for rule in table.rules:
        if rule.matches(status, reply, text):
            return rule.reason
    return ""


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_anchor_index_wakes_every_rule_a_linear_scan_would(provider: str) -> None:
    # every provider's cases, and every rule's own phrase in a sentence, under each table
    texts = [(status, _reply(text), normalise(text)) for rows in RHOST.values() for _r, _h, status, text, _w in rows]
    texts += [(r.status, r.reply, f"550 x {r.phrase} y") for p in PROVIDERS.values() for r in p.rules if r.phrase]
    table = PROVIDERS[provider]
    plain = dataclasses.replace(table, code_rx=None)  # the codes are not part of the index
    for status, reply, text in texts:
        assert plain.decide(status, reply, text)[0] == _linear(table, status, reply, text), (provider, text)


CODES = [(name, code) for name, p in PROVIDERS.items() for code in p.codes]


@pytest.mark.parametrize(("provider", "code"), CODES, ids=[f"{n}:{c}" for n, c in CODES])
def test_every_provider_code_has_a_case(provider: str, code: str) -> None:
    table = PROVIDERS[provider]
    assert table.code_rx is not None
    found = [text for _, _, _, text, _ in RHOST.get(provider, []) if (m := table.code_rx.search(normalise(text)))
             and m.group(1) == code]  # fmt: skip
    assert found, f"no case in tests/fixtures/rhost/{provider}.txt carries code {code}"


def test_every_provider_has_cases_for_hosts_and_domains() -> None:
    for name, table in PROVIDERS.items():
        assert name in RHOST, name
        if table.domains:
            # chosen by the recipient's domain when the report names no remote host
            assert any(not host for _, host, _, _, _ in RHOST[name]), f"{name}: no case without a remote host"


# -- vendor tables ---------------------------------------------------------------------------------------------------

VENDOR: dict[str, list[list[str]]] = {p.stem: _rows(p, 3) for p in sorted((FIXTURES / "vendor").glob("*.txt"))}
VENDOR_CASES = [(name, *row) for name, rows in VENDOR.items() for row in rows]


@pytest.mark.parametrize(
    ("vendor", "reason", "stage", "text", "where"), VENDOR_CASES, ids=[c[-1] for c in VENDOR_CASES]
)
def test_vendor_case(vendor: str, reason: str, stage: str, text: str, where: str) -> None:
    assert VENDORS[vendor].find(text, False, stage)[0] == reason, where


MESSAGES = [(name, reason, phrase) for name, t in VENDORS.items() for reason, phrase, _ in t.messages]


@pytest.mark.parametrize(("vendor", "reason", "phrase"), MESSAGES, ids=[f"{n}:{p}" for n, _, p in MESSAGES])
def test_every_vendor_message_has_a_case(vendor: str, reason: str, phrase: str) -> None:
    table = VENDORS[vendor]
    for _reason, stage, text, _where in VENDOR.get(vendor, []):
        if table.find(text, False, stage) == (reason, phrase):
            return
    pytest.fail(f"no case in tests/fixtures/vendor/{vendor}.txt decided by {phrase!r}")


STAGE_PRESETS = [(name, st, r) for name, t in VENDORS.items() for st, r in t.stage_presets.items()]


@pytest.mark.parametrize(("vendor", "stage", "reason"), STAGE_PRESETS)
def test_every_vendor_stage_preset_has_a_case(vendor: str, stage: str, reason: str) -> None:
    assert any(st == stage and r == reason for r, st, _, _ in VENDOR.get(vendor, [])), (vendor, stage)
