"""Does DNS agree that a domain is dead? Checked before a `hostunknown` / `notaccept` bounce may suppress.

A hard bounce with one of those reasons claims that the recipient's whole domain cannot receive mail. That is
true when DNS says so: NXDOMAIN, a null MX (RFC 7505: "0 ."), or no MX and no A or AAAA (RFC 5321 5.1: no
implicit MX either). A domain that has an MX, or an address to fall back to, accepts mail: the bounce is then
evidence of a passing problem (a remote resolver's glitch, a forged report) and counts as soft.

Lookups run in a small thread pool with a whole-lookup deadline (`lifetime`), and every answer is cached
(`cache_seconds`). The milter waits for an answer at most `wait` (at most 50 ms, `[dns] timeout_ms`): no
answer by then means "unknown", the bounce counts as classified (today's behaviour), and the lookup goes on
in the background so that the next bounce for that domain finds the answer cached. A resolver that fails
(timeout, SERVFAIL, refused, unreachable) changes nothing either: it is logged and counted (`on_failure`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

DEAD, ALIVE, UNKNOWN = "dead", "alive", "unknown"
FAILURE_CACHE_SECONDS = 60.0  # a failing resolver is asked again for the same domain after this long
# After this many failed lookups in a row the resolver counts as down and is not asked for DOWN_SECONDS: an
# import of a mailbox full of hostunknown bounces must not wait lookup_timeout for each of them.
DOWN_AFTER = 3
DOWN_SECONDS = 30.0
CACHE_MAX = 10_000


@dataclass(frozen=True)
class DomainState:
    state: str  # DEAD | ALIVE | UNKNOWN
    why: str

    @property
    def dead(self) -> bool:
        return self.state == DEAD


class _Down(DomainState):
    """The answer while the resolver counts as down (reported as a failure, never cached)."""


def parse_nameserver(spec: str) -> tuple[str, int]:
    """'127.0.0.1', '127.0.0.1:5353', '::1' or '[::1]:5353' -> (address, port). ValueError otherwise."""
    import ipaddress

    text = spec.strip()
    port = 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{spec!r}: expected [IPv6]:PORT")
            port = int(rest[1:])
        text = host
    elif text.count(":") == 1:
        text, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"{spec!r}: bad port")
        port = int(p)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{spec!r}: a name server is an IP address (optionally :PORT)") from None
    if not 0 < port < 65536:
        raise ValueError(f"{spec!r}: port must be between 1 and 65535")
    return text, port


class DomainChecker:
    def __init__(
        self,
        nameservers: Sequence[str] = (),
        lifetime: float = 3.0,
        cache_seconds: float = 3600.0,
        workers: int = 4,
        on_failure: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.cache_seconds = cache_seconds
        self.on_failure = on_failure
        self.clock = clock
        self.failures = 0
        self._in_a_row = 0  # consecutive lookups the resolver failed
        self._down_until = 0.0
        self._cache: dict[str, tuple[float, DomainState]] = {}
        self._inflight: dict[str, cf.Future[DomainState]] = {}
        self._lock = threading.Lock()
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dnscheck")
        self._setup_error = ""
        try:
            self.resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf: every check is "unknown"
            self.resolver = dns.resolver.Resolver(configure=False)
            self._setup_error = f"no resolver configuration: {exc}"
        if nameservers:
            self.resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(s)) for s in nameservers]
        self.resolver.cache = None  # our own cache keeps the verdict, not three answers
        self.resolver.lifetime = lifetime

    # -- public

    def check(self, domain: str, wait: float) -> DomainState:
        return self.check_many([domain], wait)[_norm(domain)]

    def check_many(self, domains: Iterable[str], wait: float) -> dict[str, DomainState]:
        """The state of each domain, waiting at most `wait` seconds in all (lookups run in parallel)."""
        deadline = self.clock() + max(wait, 0.0)
        started: dict[str, cf.Future[DomainState] | DomainState] = {}
        for d in domains:
            name = _norm(d)
            if name not in started:
                started[name] = self._start(name)
        out: dict[str, DomainState] = {}
        for name, pending in started.items():
            if isinstance(pending, DomainState):
                out[name] = pending
                if isinstance(pending, _Down):
                    self._failed(name, pending.why)
                continue
            try:
                out[name] = pending.result(timeout=max(deadline - self.clock(), 0.0))
            except cf.TimeoutError:
                ms = round(wait * 1000)
                out[name] = DomainState(UNKNOWN, f"no DNS answer within {ms} ms (the lookup goes on)")
                self._failed(name, f"no answer within {ms} ms")
            except Exception as exc:  # a bug in a lookup: fail open
                out[name] = DomainState(UNKNOWN, f"lookup error: {exc}")
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- internals

    def _start(self, name: str) -> cf.Future[DomainState] | DomainState:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] > now:
                return hit[1]
            if now < self._down_until:
                return _Down(UNKNOWN, f"resolver down ({self._in_a_row} lookups failed in a row): not asked")
            running = self._inflight.get(name)
            if running is not None:
                return running
            future = self._pool.submit(self._lookup_and_cache, name)
            self._inflight[name] = future
            return future

    def _lookup_and_cache(self, name: str) -> DomainState:
        try:
            state = self.lookup(name)
        except Exception as exc:
            state = DomainState(UNKNOWN, f"lookup error: {exc.__class__.__name__}: {exc}")
        ttl = FAILURE_CACHE_SECONDS if state.state == UNKNOWN else self.cache_seconds
        with self._lock:
            if state.state == UNKNOWN and state.why.startswith(_RESOLVER_FAILURES):
                self._in_a_row += 1
                if self._in_a_row >= DOWN_AFTER:
                    self._down_until = self.clock() + DOWN_SECONDS
            else:
                self._in_a_row = 0
            self._inflight.pop(name, None)
            if len(self._cache) >= CACHE_MAX:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = (self.clock() + ttl, state)
        if state.state == UNKNOWN:
            self._failed(name, state.why)
        return state

    def _failed(self, name: str, why: str) -> None:
        self.failures += 1
        if self.on_failure is not None:
            with contextlib.suppress(Exception):  # a logging problem must not turn into a lookup problem
                self.on_failure(name, why)

    def lookup(self, name: str) -> DomainState:
        """One domain, synchronously (at most `lifetime` seconds): DEAD, ALIVE or UNKNOWN (resolver failed)."""
        if self._setup_error:
            return DomainState(UNKNOWN, self._setup_error)
        if not name or name.startswith("[") or "." not in name:
            return DomainState(UNKNOWN, f"{name!r} is not a domain name")
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            return DomainState(UNKNOWN, f"{name!r} is not a domain name: {exc}")
        t_end = time.monotonic() + self.lifetime
        try:
            mx = self._ask(qname, "MX", t_end)
            if mx is not None:
                hosts = sorted((r.preference, r.exchange) for r in mx)
                if all(host == dns.name.root for _, host in hosts):  # "MX 0 ." and nothing else
                    return DomainState(DEAD, f"{name} has a null MX (RFC 7505): it accepts no mail")
                shown = ", ".join(h.to_text(omit_final_dot=True) for _, h in hosts if h != dns.name.root)[:200]
                return DomainState(ALIVE, f"{name} has MX {shown}")
            for rdtype in ("A", "AAAA"):
                addr = self._ask(qname, rdtype, t_end)
                if addr is not None:
                    return DomainState(ALIVE, f"{name} has no MX but {rdtype} {addr[0].to_text()} (implicit MX)")
            return DomainState(DEAD, f"{name} has no MX, A or AAAA record")
        except dns.resolver.NXDOMAIN:
            return DomainState(DEAD, f"{name} does not exist (NXDOMAIN)")
        except dns.exception.Timeout:
            return DomainState(UNKNOWN, f"resolver timeout after {self.lifetime:g} s")
        except dns.resolver.NoNameservers as exc:
            return DomainState(UNKNOWN, f"no name server answered ({_short(exc)})")
        except dns.exception.DNSException as exc:
            return DomainState(UNKNOWN, f"resolver error: {exc.__class__.__name__}: {_short(exc)}")

    def _ask(self, qname: dns.name.Name, rdtype: str, t_end: float) -> dns.resolver.Answer | None:
        """The answer, or None for NODATA (the name exists, not this type). NXDOMAIN and failures raise."""
        remaining = t_end - time.monotonic()
        if remaining <= 0:
            raise dns.exception.Timeout()
        answer = self.resolver.resolve(
            qname, dns.rdatatype.from_text(rdtype), search=False, raise_on_no_answer=False, lifetime=remaining
        )
        return answer if answer.rrset is not None and len(answer.rrset) else None


_RESOLVER_FAILURES = ("resolver", "no name server", "no resolver")


def normalise_domain(domain: str) -> str:
    """The key check_many() returns a domain's state under."""
    return domain.strip().strip(".").lower()


_norm = normalise_domain


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
