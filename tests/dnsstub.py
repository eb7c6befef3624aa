"""A tiny authoritative DNS server on 127.0.0.1 (UDP, dnspython), for the DNS-check tests and the benchmark.

Zones (all under .test):
  live.test       MX 10 mx.live.test; mx.live.test A 127.0.0.1
  aonly.test      A 127.0.0.2 (no MX: implicit MX, alive)
  nullmx.test     MX 0 .       (RFC 7505: accepts no mail)
  nodata.test     exists (TXT only) but has no MX, A or AAAA
  anything else   NXDOMAIN (dead.test, nxdomain.test ...)
`silent = True` makes it swallow every query (a dead resolver), `servfail = True` answers SERVFAIL, `delay`
holds each answer back (a slow resolver);
`queries` counts what it received.
"""

from __future__ import annotations

import socket
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

RECORDS: dict[tuple[str, str], list[str]] = {
    ("live.test.", "MX"): ["10 mx.live.test."],
    ("mx.live.test.", "A"): ["127.0.0.1"],
    ("aonly.test.", "A"): ["127.0.0.2"],
    ("nullmx.test.", "MX"): ["0 ."],
    ("nodata.test.", "TXT"): ['"exists"'],
}
NAMES = {name for name, _ in RECORDS}


class DnsStub:
    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None) -> None:
        self.records = dict(RECORDS if records is None else records)
        self.names = {name for name, _ in self.records}
        self.silent = False
        self.servfail = False
        self.delay = 0.0  # seconds before each answer (a slow resolver)
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dnsstub", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            if self.silent:
                continue
            if self.delay:
                time.sleep(self.delay)
            try:
                reply = self._answer(dns.message.from_wire(data))
                self.sock.sendto(reply.to_wire(), peer)
            except Exception:
                continue

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if self.servfail:
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        q = query.question[0]
        name = q.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        if name not in self.names:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        values = self.records.get((name, rdtype))
        if values:
            reply.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, values))
        return reply  # NOERROR with no answer = NODATA
