"""How long the DNS check of a hostunknown claim holds a message, against a DNS server on loopback.

    .venv/bin/python bench/dns_deadline.py [--rounds 50] [--wait-ms 40]

Starts tests/dnsstub.py (an authoritative dnspython server on 127.0.0.1) and measures, for
bouncemilter.dnscheck.DomainChecker with the milter's bound (`[dns] timeout_ms`):
- a cold lookup of each kind of domain (live MX, implicit MX, null MX, no data, NXDOMAIN);
- a cached answer;
- a resolver that does not answer (the wait must end at the bound), a slow one (answers after 200 ms: the
  first bounce waits the bound, the next finds the answer cached), one that answers SERVFAIL;
- the whole verdict step for one hostunknown DSN (Verifier.apply: parse + DNS), cold and cached.
Figures are wall-clock on a shared machine: read the medians, not the tails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bouncemilter.classify import classify  # noqa: E402
from bouncemilter.dnscheck import DomainChecker  # noqa: E402
from bouncemilter.store import MessageMeta  # noqa: E402
from bouncemilter.verdict import Verifier  # noqa: E402
from bouncemilter.verp import BounceMatcher, parse_bounce_address  # noqa: E402
from tests.dnsstub import DnsStub  # noqa: E402
from tests.e2e.signed_messages import hostunknown  # noqa: E402


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1000:7.2f} ms   max {s[-1] * 1000:7.2f} ms   (n={len(s)})"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--wait-ms", type=int, default=40)
    args = ap.parse_args()
    wait = args.wait_ms / 1000
    stub = DnsStub().start()
    try:
        print(f"DomainChecker against a loopback DNS server, wait bound {args.wait_ms} ms")
        for domain in ("live.test", "aonly.test", "nullmx.test", "nodata.test", "dead.test"):
            samples, state = [], ""
            for _ in range(args.rounds):
                c = DomainChecker([stub.address], lifetime=3.0)
                samples.append(timed(lambda c=c, d=domain: c.check(d, wait)))
                state = c.check(domain, wait).state
                c.close()
            print(f"  cold  {domain:12s} {state:6s} {ms(samples)}")
        c = DomainChecker([stub.address], lifetime=3.0)
        c.check("live.test", wait)
        print(f"  cached live.test          {ms([timed(lambda: c.check('live.test', wait)) for _ in range(1000)])}")
        c.close()

        stub.silent = True
        samples = []
        for i in range(min(args.rounds, 20)):
            c = DomainChecker([stub.address], lifetime=3.0)
            samples.append(timed(lambda c=c, i=i: c.check(f"x{i}.live.test", wait)))
            c.close()
        print(f"  silent resolver (fail open)  {ms(samples)}")
        stub.silent = False

        stub.delay = 0.2
        c = DomainChecker([stub.address], lifetime=3.0)
        first = timed(lambda: c.check("nullmx.test", wait))
        time.sleep(0.5)
        second = timed(lambda: c.check("nullmx.test", wait))
        print(
            f"  slow resolver (200 ms): first bounce {first * 1000:.1f} ms -> {c.check('nullmx.test', 0).state} "
            f"cached for the next ({second * 1000:.3f} ms)"
        )
        c.close()
        stub.delay = 0.0

        stub.servfail = True
        c = DomainChecker([stub.address], lifetime=3.0)
        samples = [timed(lambda i=i: c.check(f"s{i}.test", wait)) for i in range(3)]
        samples += [timed(lambda i=i: c.check(f"t{i}.test", wait)) for i in range(20)]
        print(f"  SERVFAIL (3, then 'resolver down')  {ms(samples)}   failures counted: {c.failures}")
        c.close()
        stub.servfail = False

        matcher = BounceMatcher([parse_bounce_address("bounces+*@test.example")])
        raw = hostunknown("bench", "ann@live.test")
        result_proto = classify(raw)
        for label, warm in (("cold", False), ("cached", True)):
            samples = []
            checker = DomainChecker([stub.address], lifetime=3.0)
            if warm:
                checker.check("live.test", 1.0)
            for _ in range(args.rounds):
                if not warm:
                    checker.close()
                    checker = DomainChecker([stub.address], lifetime=3.0)
                v = Verifier(None, matcher, dns=checker, dns_wait=wait)
                result = classify(raw)
                meta = MessageMeta("", "", "", "", "", ["bounces@test.example"], [], "", len(raw), 0.0)
                samples.append(timed(lambda v=v, result=result, meta=meta: v.apply(raw, result, meta)))
            checker.close()
            print(f"  verdict of one hostunknown DSN, {label:6s} {ms(samples)}")
        assert result_proto.recipients[0].reason == "hostunknown"
    finally:
        stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
