"""The cheapest possible pymilter milter: bench/floor_milter.c's twin in Python, for the benchmark.

Same session as bouncemilter (no CONNECT event; no-reply events unless "reply" is given, as on
TCP) and the same decisions (ordinary mail accepted at DATA, mail to the bounce domain read to the
end and accepted), no work at all. What it costs Postfix is the price of any pymilter milter here.

    python bench/floor_pymilter.py unix:/path/to.sock @sink.test [reply]
"""

from __future__ import annotations

import sys

import Milter

NO_REPLY = Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_HDR | Milter.P_NR_EOH


class Floor(Milter.Base):
    domain = ""
    reply_all = False

    def __init__(self) -> None:
        super().__init__()
        self.matched = False

    def negotiate(self, opts: list[int]) -> int:
        want = Milter.P_NOCONNECT | Milter.P_NOUNKNOWN | Milter.P_SKIP | (0 if self.reply_all else NO_REPLY)
        self._actions = opts[0] = opts[0] & Milter.ADDHDRS
        self._protocol = opts[1] = opts[1] & want
        opts[2] = opts[3] = 0
        return Milter.CONTINUE

    def _go(self) -> int:
        return Milter.CONTINUE if self.reply_all else Milter.NOREPLY

    def hello(self, name: str) -> int:
        return self._go()

    def envfrom(self, sender: str, *params: str) -> int:
        self.matched = False
        return self._go()

    def envrcpt(self, rcpt: str, *params: str) -> int:
        if rcpt.rstrip(">").lower().endswith(self.domain):
            self.matched = True
        return self._go()

    def data(self) -> int:
        return Milter.CONTINUE if self.matched else Milter.ACCEPT

    def header(self, name: str, value: str) -> int:
        return self._go()

    def eoh(self) -> int:
        return self._go()

    def body(self, chunk: bytes) -> int:
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.ACCEPT


def main() -> int:
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["reply"]):
        print(__doc__, file=sys.stderr)
        return 2
    Floor.domain = sys.argv[2].lower()
    Floor.reply_all = len(sys.argv) == 4
    Milter.factory = Floor
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("floor", sys.argv[1], 240)
    return 0


if __name__ == "__main__":
    sys.exit(main())
