"""DNS checks of domain claims against a real DNS server on loopback (tests/dnsstub.py), and their effect on
what a hostunknown bounce counts as."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bouncemilter import dnscheck
from bouncemilter.config import ConfigError, load_settings
from bouncemilter.dnscheck import ALIVE, DEAD, UNKNOWN, DomainChecker, parse_nameserver
from bouncemilter.ingest import Envelope, ingest
from bouncemilter.signing import KeyRing
from bouncemilter.store import Store
from bouncemilter.suppressions import open_store
from bouncemilter.verdict import Verifier
from bouncemilter.verp import BounceMatcher, parse_bounce_address

from .conftest import query_rows
from .dnsstub import DnsStub
from .e2e import messages as M
from .e2e import signed_messages as S

MATCHER = BounceMatcher([parse_bounce_address("bounces+*@test.example")])
SETTINGS = load_settings(None, {"bounce_addresses": ["bounces+*@test.example"]})


@pytest.fixture(scope="module")
def server() -> Iterator[DnsStub]:
    s = DnsStub().start()
    yield s
    s.stop()


@pytest.fixture
def stub(server: DnsStub) -> DnsStub:
    server.silent = server.servfail = False
    server.delay = 0.0
    return server


@pytest.fixture
def checker(stub: DnsStub) -> Iterator[DomainChecker]:
    failures: list[tuple[str, str]] = []
    c = DomainChecker([stub.address], lifetime=1.0, on_failure=lambda d, why: failures.append((d, why)))
    c.failures_seen = failures  # type: ignore[attr-defined]
    yield c
    c.close()


@pytest.mark.parametrize(
    ("domain", "state", "words"),
    [
        ("live.test", ALIVE, "has MX mx.live.test"),
        ("aonly.test", ALIVE, "implicit MX"),
        ("nullmx.test", DEAD, "null MX"),
        ("nodata.test", DEAD, "no MX, A or AAAA"),
        ("dead.test", DEAD, "NXDOMAIN"),
        ("Sub.Dead.Test.", DEAD, "NXDOMAIN"),
    ],
)
def test_domain_states(checker: DomainChecker, domain: str, state: str, words: str) -> None:
    got = checker.check(domain, 2.0)
    assert got.state == state and words in got.why


def test_answers_are_cached(checker: DomainChecker, stub: DnsStub) -> None:
    assert checker.check("live.test", 2.0).state == ALIVE
    asked = stub.queries
    assert checker.check("LIVE.test", 2.0).state == ALIVE
    assert stub.queries == asked


def test_a_dead_resolver_fails_open_logged_and_counted(checker: DomainChecker, stub: DnsStub) -> None:
    stub.silent = True
    got = checker.check("live.test", 0.05)
    assert got.state == UNKNOWN and "no DNS answer within 50 ms" in got.why
    assert checker.failures >= 1 and checker.failures_seen[0][0] == "live.test"  # type: ignore[attr-defined]


def test_servfail_and_unreachable_server_are_failures(stub: DnsStub) -> None:
    stub.servfail = True
    c = DomainChecker([stub.address], lifetime=1.0)
    got = c.check("live.test", 2.0)
    assert got.state == UNKNOWN and "no name server answered" in got.why and c.failures == 1
    c.close()


def test_resolver_counts_as_down_after_failures_in_a_row(stub: DnsStub) -> None:
    stub.servfail = True
    c = DomainChecker([stub.address], lifetime=1.0)
    for i in range(dnscheck.DOWN_AFTER):
        assert c.check(f"d{i}.test", 2.0).state == UNKNOWN
    asked = stub.queries
    got = c.check("another.test", 2.0)
    assert got.state == UNKNOWN and "resolver down" in got.why
    assert stub.queries == asked  # not asked at all
    assert c.failures == dnscheck.DOWN_AFTER + 1
    c.close()


def test_a_slow_answer_lands_in_the_cache_for_the_next_bounce(checker: DomainChecker, stub: DnsStub) -> None:
    stub.delay = 0.2
    assert checker.check("nullmx.test", 0.01).state == UNKNOWN
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and checker.check("nullmx.test", 0.0).state == UNKNOWN:
        time.sleep(0.05)
    assert checker.check("nullmx.test", 0.0).state == DEAD


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("::1", ("::1", 53)),
     ("[::1]:5353", ("::1", 5353))],
)  # fmt: skip
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["ns.example.com", "127.0.0.1:x", "[::1]x", "127.0.0.1:0"])
def test_parse_nameserver_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(spec)


def test_dns_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[dns]\nnameservers = ["127.0.0.1:5353"]\ntimeout_ms = 20\ncache_seconds = 60\n')
    s = load_settings(str(path))
    assert (s.dns_check, s.dns_nameservers, s.dns_timeout_ms, s.dns_cache_seconds) == (
        True,
        ("127.0.0.1:5353",),
        20,
        60,
    )
    path.write_text("[dns]\ntimeout_ms = 200\n")
    with pytest.raises(ConfigError, match=r"dns\.timeout_ms"):
        load_settings(str(path))
    path.write_text('[dns]\nnameservers = ["ns1.example.com"]\n')
    with pytest.raises(ConfigError, match=r"dns\.nameservers"):
        load_settings(str(path))


# -- what a hostunknown bounce counts as


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "dns.db"))
    yield s
    s.close()


def record(store: Store, verifier: Verifier, raw: bytes, to: str = "bounces@test.example") -> dict:
    m = MATCHER.match(to)
    env = Envelope(bounce_addresses=[m.address], verp_recipients=[m.verp_recipient] if m.verp_recipient else [])
    out = ingest(raw, env, SETTINGS, store, verifier=verifier)
    (row,) = query_rows(store.path, "SELECT * FROM recipients WHERE message_id = ?", (out.row_id,))
    return dict(row)


def suppressed(store: Store) -> set[str]:
    return {r[0] for r in query_rows(store.path, "SELECT address FROM suppressions WHERE state = 'suppressed'")}


def test_hostunknown_for_a_live_domain_counts_as_soft(store: Store, checker: DomainChecker) -> None:
    row = record(store, Verifier(None, MATCHER, dns=checker, dns_wait=2.0), S.hostunknown("d1", "ann@live.test"))
    assert (row["reason"], row["hard"]) == ("hostunknown", 0)
    assert "counted as soft" in row["note"] and "live.test has MX" in row["note"]
    assert suppressed(store) == set()


@pytest.mark.parametrize("domain", ["dead.test", "nullmx.test"])
def test_hostunknown_for_a_dead_domain_suppresses(store: Store, checker: DomainChecker, domain: str) -> None:
    row = record(store, Verifier(None, MATCHER, dns=checker, dns_wait=2.0), S.hostunknown("d2", f"bo@{domain}"))
    assert row["hard"] == 1 and row["note"].startswith("DNS agrees")
    assert suppressed(store) == {f"bo@{domain}"}


def test_dead_resolver_changes_nothing(store: Store, checker: DomainChecker, stub: DnsStub) -> None:
    stub.silent = True
    row = record(store, Verifier(None, MATCHER, dns=checker, dns_wait=0.05), S.hostunknown("d3", "cy@live.test"))
    assert row["hard"] == 1 and "DNS check failed" in row["note"]
    assert suppressed(store) == {"cy@live.test"}


def test_other_reasons_and_unverified_rows_are_not_looked_up(
    store: Store, checker: DomainChecker, stub: DnsStub
) -> None:
    keys = KeyRing(["dns test key 0123456789abcdef"])
    asked = stub.queries
    record(store, Verifier(keys, MATCHER, dns=checker), M.hard_bounce("d4", "di@live.test"))  # userunknown
    record(store, Verifier(keys, MATCHER, dns=checker), S.hostunknown("d5", "ed@live.test"))  # unsigned: unverified
    assert stub.queries == asked
