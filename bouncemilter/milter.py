"""The milter: capture bounces, complaints and auto-replies in-line, record them, then act.

Flow per message (one `BounceMilter` instance per MTA connection, reused for its messages):

* `envrcpt` matches each recipient against the configured bounce addresses (exact, VERP, @domain);
* `data` accepts at once when nothing matched (and the sender is not `<>` with match_null_sender on:
  such mail is only observed, recorded without bounce addresses, and never moves the suppression list),
  so the MTA never sends us the headers or body of ordinary mail;
* matched mail is buffered up to `body_cap` bytes (then read by its MIME structure, and SKIP once
  nothing later can change the result), within the memory budget of all sessions ([limits] memory),
  classified at end of message, checked against signed return paths (`verdict`) and recorded; only
  after the store committed does the milter reply. A store failure is a TEMPFAIL
  (the sender retries), except on Postfix's internal (non_smtpd) path, where mail must never be
  rejected or deferred by us: there we accept and log the failure loudly.

Outbound mail of a [signing] sender: its body is never read; at end of message its envelope sender is
replaced (chgfrom) by a signed return path.

No callback lets an exception escape: an unexpected error is logged with its traceback and turns
into TEMPFAIL on the SMTP path and ACCEPT on the internal path.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import hashlib
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import Milter

from . import decide, logjson
from .classify import Classification, classify
from .classify.structure import Skimmer
from .ingest import Envelope, NotStored, ingest
from .store import Store, StoreError, display_name
from .store.db import ForeignDatabase
from .suppressions import open_store
from .verdict import make_domain_checker, make_verifier

MILTER_NAME = "bouncemilter"
TEMPFAIL_REPLY = ("451", "4.3.0", "bouncemilter: cannot record this message now (store unavailable), try again later")
ERROR_REPLY = ("451", "4.3.0", "bouncemilter: internal error while examining this message, try again later")
HEADER_VALUE_MAX = 200
SHUTDOWN_GRACE = 10.0  # seconds SIGTERM waits for messages already in progress
LISTEN_BACKLOG = 128
NO_REPLY_EVENTS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_HDR | Milter.P_NR_EOH
)
# A lean session skips CONNECT; the client's facts come as MAIL FROM macros (see BounceMilter.negotiate).
LEAN_SKIPS = Milter.P_NOCONNECT
MAIL_MACROS = "{client_addr} {client_name} {client_port} {daemon_port}"


def internal_path(client_port: object, daemon_port: object) -> bool:
    """Is this Postfix's own non_smtpd path (pickup, its own bounces), where we never reject or defer?

    Only signals an SMTP client cannot choose count. Measured with Postfix 3.7 (a milter asking for every
    macro below, on both paths):

    ============================  ===================================  ================================
    macro                         smtpd (a TCP client)                 non_smtpd (cleanup's emulation)
    ============================  ===================================  ================================
    ``{client_port}``             the client's TCP port (never 0)      ``0``
    ``{daemon_port}``             smtpd's listening port               ``0``
    ``{client_addr}``/``_``       the client (``127.0.0.1``/``localhost  ``127.0.0.1``/``localhost
                                  [127.0.0.1]`` for a local one)       [127.0.0.1]``
    ``{daemon_name}``, ``j``      ``$myhostname``                      the same
    ``{client_connections}``      a number                             not sent
    ``{mail_mailer}``             ``smtp``                             not sent
    MAIL FROM argument            as the client typed it               bare, without angle brackets
    ============================  ===================================  ================================

    The client's address and name and the daemon name are the same for a local SMTP client, and a missing
    macro proves nothing (another MTA may not know it). The sender's angle brackets are the client's own
    spelling: smtpd accepts ``MAIL FROM:x@y`` and passes it on bare, which is how an outside client used
    to be taken for Postfix itself. A TCP connection has no port 0 at either end: smtpd reports port 0
    only for a client that is not on TCP at all (``sendmail -bs``, a unix-domain smtpd: local users, who
    could inject through the non_smtpd path anyway), and XCLIENT changes it only for hosts the admin
    authorised. So: both ports 0; ``{daemon_port}`` may be missing (None) only in the classic sequence,
    where Postfix's default connect macros leave it out and the port of the CONNECT event decides alone.
    """
    return client_port in (0, "0") and daemon_port in (None, "0")


_PORT_ZERO = (0, "0")
_NO_FIELDS: list[tuple[str, bytes | str]] = []  # (shared, never appended to: header() makes a list of its own)
REPLY_RESERVE = 0.05  # seconds of [store] timeout kept for the reply itself (at most a tenth of it)
MEMORY_REPLY = ("451", "4.3.1", "bouncemilter: too many messages being examined at once, try again later")
# What one MTA connection costs besides its buffered message: libmilter's thread (its stack pages in use) and
# our per-connection objects. bench/memory_budget.py measured 5-6 KiB of RSS per idle connection (200 of them);
# counted as 16 KiB because a busy thread's stack holds more (classification runs on it).
CONNECTION_COST = 16 * 1024


class MemoryBudget:
    """Bytes the milter may hold across all sessions: buffered messages plus CONNECTION_COST per connection.

    A message we examine is buffered (up to body_cap each), so many slow sessions could otherwise take any
    amount of memory. Past the budget a newly matched message gets a 4xx (the sender retries later), from
    Postfix's SMTP path only; ordinary mail needs no buffer and is never refused, connections are only
    counted, and Postfix's own bounces are always taken (counted, never refused).
    """

    def __init__(self, limit: int, connection_cost: int = CONNECTION_COST) -> None:
        self.limit = limit
        self.connection_cost = connection_cost
        self._bytes = 0  # buffered messages
        # one entry per open connection: list.append and list.pop are atomic, so connect and disconnect (every
        # SMTP session, ordinary mail included) need no lock (a lock took 3,000 instructions a session)
        self._open: list[None] = []
        self.refused = 0  # messages answered 4xx because of the budget
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        return len(self._open)

    @property
    def used(self) -> int:
        return self._bytes + len(self._open) * self.connection_cost

    def full(self) -> bool:
        return self.used >= self.limit

    def take(self, n: int, force: bool = False) -> bool:
        with self._lock:
            if not force and self.used + n > self.limit:
                return False
            self._bytes += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self._bytes = max(0, self._bytes - n)

    def connect(self) -> None:
        self._open.append(None)

    def disconnect(self) -> None:
        try:  # noqa: SIM105 - contextlib.suppress() would cost a context manager per connection
            self._open.pop()
        except IndexError:  # (more disconnects than connects: a bug elsewhere, not worth a crash)
            pass

    def note_refused(self) -> None:
        with self._lock:
            self.refused += 1


class InFlight:
    """Counts messages between MAIL FROM and their final reply, so shutdown can wait for them.

    Entered and left for every message, ordinary mail included, so it must be cheap: one list entry per
    message (list.append and list.pop are atomic, no lock); only shutdown waits, and it polls.
    """

    POLL = 0.01  # seconds between checks while shutdown waits

    def __init__(self) -> None:
        self._busy: list[None] = []

    def enter(self) -> None:
        self._busy.append(None)

    def leave(self) -> None:
        try:  # noqa: SIM105 - contextlib.suppress() would cost a context manager per message
            self._busy.pop()
        except IndexError:
            pass

    @property
    def count(self) -> int:
        return len(self._busy)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._busy:
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL)
        return True


class GroupCommit:
    """Messages that reach end of message at the same time share one store transaction (one fsync).

    Each caller still returns only after its own rows are committed (or with StoreError), so the
    "committed before the reply" rule holds; under load, N waiting sessions cost one commit instead
    of N commits in a row.

    Every caller has a deadline (its reply must reach the MTA before Postfix's milter_content_timeout;
    `[store] timeout` after end of message) and nobody waits past their own. Leader/follower: the first
    caller writes everything queued (itself included) in one transaction bounded by its own deadline,
    then hands the queue to the oldest waiting caller, who leads the next batch, and so on; a leader
    never drains other callers' work past its own deadline. A follower whose deadline passes leaves
    (StoreError: TEMPFAIL); if a leader was writing its rows at that moment and they land after all,
    the sender's retry is recognised as a duplicate.

    A store that writes several transactions side by side can say so (`store.writers`): as many leaders
    then write at once, a caller that finds a free place writes at once, and only callers past them queue
    up to share a batch.
    """

    def __init__(self, store: Any, timeout: float) -> None:
        self.store = store
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._queue: list[_Pending] = []
        self._leaders = 0  # batches being written now
        self._max_leaders = max(int(getattr(store, "writers", 1)), 1)

    def record(self, meta: Any, result: Classification, action: str, deadline: float | None = None) -> tuple[int, bool]:
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        with self._mutex:
            lead = self._leaders < self._max_leaders
            # only a follower waits, so only a follower needs an Event (the common, uncontended case has none)
            item = _Pending((meta, result, action), deadline, None if lead else threading.Event())
            if lead:
                self._leaders += 1
            else:
                self._queue.append(item)
        if lead or self._wait(item):
            self._lead(item)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _wait(self, item: _Pending) -> bool:
        """A follower waits for its result (False) or to be made leader (True); StoreError at its deadline."""
        assert item.done is not None
        while True:
            item.done.wait(max(item.deadline - time.monotonic(), 0.0))
            with self._mutex:
                if item.finished:
                    return False
                late = time.monotonic() >= item.deadline
                if item.promoted:
                    item.promoted = False
                    item.done.clear()
                    self._queue.remove(item)  # out of the queue at once: nobody else may promote it again
                    if not late:
                        return True
                    self._hand_off()  # too late to lead: pass the place on and leave
                elif late and item in self._queue:
                    self._queue.remove(item)  # never written
                if late:
                    raise StoreError("store busy: not committed before the reply deadline (store.timeout)")

    def _hand_off(self) -> None:
        """(Under the mutex.) Make the oldest waiting caller the next leader, or give up this leader's place."""
        for nxt in self._queue:
            if not nxt.promoted:  # one made leader already holds a place of its own
                nxt.promoted = True
                assert nxt.done is not None  # only followers are queued
                nxt.done.set()
                return
        self._leaders -= 1

    def _lead(self, me: _Pending) -> None:
        with self._mutex:
            # everyone waiting, but those made leaders already (they hold a place and write their own batch)
            batch = [me]
            rest = []
            for p in self._queue:
                (rest if p.promoted else batch).append(p)
            self._queue = rest
        now = time.monotonic()
        live = [p for p in batch if p.deadline > now]  # the others have given up (or are about to)
        try:
            self._write(live, me.deadline)
        finally:
            for p in batch:
                if not p.finished:
                    p.error = p.error or StoreError("store busy: deadline passed before its turn to be written")
                    p.finished = True
                if p.done is not None:
                    p.done.set()
            with self._mutex:
                self._hand_off()

    def _write(self, batch: list[_Pending], deadline: float) -> None:
        # Errors are handed to each waiting caller as they are: StoreError becomes a TEMPFAIL in eom(),
        # anything else is a bug that eom()'s guard logs with its traceback.
        try:
            if len(batch) == 1:
                results = [self.store.record(*batch[0].args, deadline=deadline)]
            else:
                results = self.store.record_many([p.args for p in batch], batch_size=len(batch), deadline=deadline)
            for p, res in zip(batch, results, strict=True):
                p.result, p.finished = res, True
        except Exception as exc:
            if len(batch) == 1 or time.monotonic() >= deadline:
                for p in batch:
                    p.error, p.finished = exc, True
                return
            # The batch rolled back as a whole: retry one by one (within the same deadline), so that a
            # message that cannot be stored does not take the others down with it.
            for p in batch:
                try:
                    p.result = self.store.record(*p.args, deadline=deadline)
                except Exception as one:
                    p.error = one
                p.finished = True


class _Pending:
    __slots__ = ("args", "deadline", "done", "error", "finished", "promoted", "result")

    def __init__(self, args: tuple[Any, Classification, str], deadline: float, done: threading.Event | None) -> None:
        self.args = args
        self.deadline = deadline
        self.done = done
        self.result: tuple[int, bool] | None = None
        self.error: Exception | None = None
        self.finished = False
        self.promoted = False


class _Until:
    """The writer with one message's reply deadline, for ingest() (which calls record(meta, result, action))."""

    __slots__ = ("deadline", "writer")

    def __init__(self, writer: Any, deadline: float) -> None:
        self.writer = writer
        self.deadline = deadline

    def record(self, meta: Any, result: Classification, action: str) -> tuple[int, bool]:
        return self.writer.record(meta, result, action, deadline=self.deadline)


@dataclass
class Runtime:
    """Everything the per-connection milter objects share (set once before the milter starts)."""

    settings: Any  # bouncemilter.config.Settings
    matcher: Any  # bouncemilter.verp.BounceMatcher
    store: Any  # bouncemilter.store.Store
    logger: logging.Logger
    classifier: Callable[[bytes], Classification] = classify
    inflight: InFlight = field(default_factory=InFlight)
    draining: bool = False  # SIGTERM received: finish what is in progress, take no new SMTP sessions
    no_reply: bool = True  # negotiate no-reply events (see BounceMilter.protocol_mask)
    lean: bool = True  # skip CONNECT where the MTA can send its facts as macros (see BounceMilter.negotiate)
    writer: Any = None  # GroupCommit over `store` (set in __post_init__)
    metrics: Any = None  # bouncemilter.metrics.Metrics when [metrics] enabled
    signer: Any = None  # bouncemilter.signing.Signer when [signing] senders are set: outbound mail is signed
    verifier: Any = None  # bouncemilter.verdict.Verifier when signing is on: inbound mail is checked
    sent_log: Any = None  # bouncemilter.sentlog.SentLog when [signing] log_sent
    dns_config: tuple = ()  # the [dns] settings the verifier's DNS checker was built with (make_trust)
    budget: Any = None  # MemoryBudget ([limits] memory; set in __post_init__)

    def __post_init__(self) -> None:
        if self.writer is None:
            self.writer = GroupCommit(self.store, float(getattr(self.settings, "store_timeout", 5.0)))
        if self.budget is None:
            self.budget = MemoryBudget(int(getattr(self.settings, "limit_memory", 64 << 20)))


def _marked_truncated(classifier: Callable[[bytes], Classification]) -> Callable[[bytes], Classification]:
    def classify_cut(raw: bytes) -> Classification:
        result = classifier(raw)
        result.truncated = True
        return result

    return classify_cut


def _internal_default(self: BounceMilter) -> int:
    return Milter.ACCEPT if self._internal else Milter.TEMPFAIL


def guarded(nr_bit: int = 0) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """No exception may reach libmilter: log it and answer TEMPFAIL (SMTP) / ACCEPT (internal path).

    For an event negotiated as no-reply (`nr_bit`) the MTA expects no answer: the failure is then
    remembered and given as the answer to the next event that has one (DATA or end of message).
    (The callbacks of every session - envfrom, envrcpt, data, header, eoh - have the same guard written
    inline: a wrapper is one more Python call, ~1,500 instructions per event.)
    """

    def decorate(func: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(func)
        def wrapper(self: BounceMilter, *args: Any) -> int:
            try:
                return func(self, *args)
            except Exception:
                return _failed(self, func.__name__, nr_bit)

        return wrapper

    return decorate


def _failed(self: BounceMilter, name: str, nr_bit: int) -> int:
    """(In an `except` block.) The answer to a callback that raised; see `guarded`."""
    rc = _internal_default(self)
    logjson.event(
        self._rt.logger,
        logging.ERROR,
        "callback_error",
        f"unexpected error in {name}",
        exc_info=True,
        queue_id=self._queue_id,
        internal=self._internal,
        reply="accept" if rc == Milter.ACCEPT else "tempfail",
    )
    if self._protocol & nr_bit:
        self._failed = True
        return Milter.NOREPLY
    if rc == Milter.TEMPFAIL:
        with contextlib.suppress(Exception):
            self.setreply(*ERROR_REPLY)
    self._finish_message()
    return rc


_bare = decide.bare
_one_line = decide.one_line


class BounceMilter(Milter.Base):
    runtime: ClassVar[Runtime | None] = None

    # Every attribute a slot: CPython 3.11 keeps an instance's attributes in a dict shared by all instances of the
    # class only up to 30 names; past that each instance gets a dict of its own and every attribute access takes
    # the slow path. One more attribute (the 31st) cost an ordinary session 15,000 instructions (90 k against
    # 75 k in bench/milter_cost.py); slots are fast whatever their number.
    __slots__ = (
        "_actions",
        "_active",
        "_buf",
        "_charged",
        "_client_addr",
        "_client_name",
        "_connected",
        "_ctx",
        "_declared_size",
        "_envelope_from",
        "_examine",
        "_failed",
        "_fields",
        "_helo",
        "_internal",
        "_internal_conn",
        "_matched",
        "_message_id",
        "_null_sender",
        "_others",
        "_ours",
        "_over",
        "_protocol",
        "_queue_id",
        "_rt",
        "_sign",
        "_size",
        "_skim",
        "_t0",
        "_truncated",
    )

    def __init__(self) -> None:
        super().__init__()
        rt = type(self).runtime
        if rt is None:
            raise RuntimeError("BounceMilter.runtime is not set")
        self._rt = rt
        self._client_name = ""
        self._client_addr = ""
        self._internal_conn = False
        self._helo = ""
        self._active = False
        self._failed = False  # a no-reply event failed; answered at the next event that has a reply
        self._charged = 0  # bytes of the buffer counted in the memory budget
        rt.budget.connect()
        self._connected = True
        self._reset()

    # -- protocol ----------------------------------------------------------------------------------

    @classmethod
    def protocol_mask(cls) -> int:
        """Protocol bits to clear from what the MTA offers; pymilter's default asks for every reply.

        With no-reply events the MTA streams connect/helo/mail/rcpt/header/eoh without waiting for us:
        one round trip per message phase instead of one per header. Only worth it (and only safe from
        Nagle stalls) on a unix socket: on TCP the MTA's back-to-back small writes would wait for our
        delayed ACKs, so there every event keeps its reply and the MTA never has two writes in flight.
        """
        mask = super().protocol_mask()
        rt = cls.runtime
        if rt is not None and rt.no_reply:
            events = NO_REPLY_EVENTS
            if rt.verifier is not None and rt.verifier.rejects:
                events &= ~Milter.P_NR_RCPT  # verify = "reject": RCPT keeps its reply (550 5.7.1)
            mask &= ~events
        return mask

    def negotiate(self, opts: list[int]) -> int:
        """Protocol options, plus a lean session wherever the MTA allows it (once per MTA connection).

        Each MTA event costs the MTA a write and us a wake-up and a Python callback, for ordinary
        mail as much as for bounces. CONNECT is the costliest (Postfix sends five macros with it)
        and tells us only the client, which Postfix (and Sendmail 8.14+) can send as macros with
        MAIL FROM instead, asked for with a macro list. An MTA that cannot skip the event or
        honour a macro list gets the classic sequence. (pymilter's Base.negotiate does the same
        minus the lean part, by looking up macro lists on every callback for every connection.)
        """
        try:
            actions, offered = opts[0], opts[1]
            self._actions = actions
            protocol = offered & ~self.protocol_mask()
            if self._rt.lean and offered & LEAN_SKIPS == LEAN_SKIPS and actions & Milter.SETSYMLIST:
                try:
                    # pymilter's Base.setsymlist joins bytes and fails on Python 3; the context's own works
                    self._ctx.setsymlist(Milter.M_ENVFROM, MAIL_MACROS)
                except Exception:
                    logjson.event(self._rt.logger, logging.WARNING, "negotiate", "macro list refused", exc_info=True)
                else:
                    protocol |= LEAN_SKIPS
        except Exception:  # no exception reaches libmilter: fall back to pymilter's own negotiation
            logjson.event(
                self._rt.logger, logging.ERROR, "callback_error", "unexpected error in negotiate", exc_info=True
            )
            return int(super().negotiate(opts))
        opts[1] = self._protocol = protocol
        opts[2] = opts[3] = 0
        return Milter.CONTINUE

    def _go(self, nr_bit: int) -> int:
        return Milter.NOREPLY if self._protocol & nr_bit else Milter.CONTINUE

    # -- per-message state -------------------------------------------------------------------------

    def _reset(self) -> None:
        self._envelope_from = ""
        self._null_sender = False
        self._sign = False  # outbound mail of a [signing] sender: its return path is replaced at end of message
        self._internal = self._internal_conn
        self._matched: list[tuple[str, Any]] = []  # (recipient as the MTA sent it, verp.Match)
        self._others: list[str] = []
        self._examine = False
        self._buf = bytearray()
        self._skim: Skimmer | None = None  # past body_cap: the message is read by its MIME structure
        self._over = False  # the memory budget refused this message's buffer: 4xx at the next reply
        self._truncated = False
        self._size = 0
        self._declared_size = 0
        self._message_id = ""
        self._queue_id = ""
        self._t0 = 0.0
        self._ours: list[tuple[str, int]] = []  # incoming headers with our prefix: (name, nth of that name)
        self._fields = _NO_FIELDS  # header fields until eoh() reads them (a list from the first one on)

    def _start_message(self) -> None:
        if self._active or self._charged:
            self._finish_message()  # a previous message on this connection that ended without eom/abort
        if self._t0:  # (a message came before on this connection; a new one or an aborted one is clean)
            self._reset()
        self._active = True
        self._rt.inflight.enter()
        self._t0 = time.perf_counter()

    def _finish_message(self) -> None:
        if self._active:
            self._active = False
            self._rt.inflight.leave()
        if self._buf:
            self._buf = bytearray()
        self._skim = None  # (an aborted message: what it held goes with its charge)
        if self._charged:
            self._rt.budget.give(self._charged)
            self._charged = 0

    def _refuse_memory(self, stage: str) -> int:
        """4xx for a message the memory budget cannot hold (never on Postfix's own path: it is always taken)."""
        rt = self._rt
        rt.budget.note_refused()
        if rt.metrics is not None:
            rt.metrics.memory_refused()
        logjson.event(
            rt.logger,
            logging.WARNING,
            "memory_budget",
            f"memory budget exhausted {stage}: deferred (4xx)",
            queue_id=self._queue_id,
            envelope_from=self._envelope_from,
            used=rt.budget.used,
            limit=rt.budget.limit,
            connections=rt.budget.connections,
        )
        self.setreply(*MEMORY_REPLY)
        self._finish_message()
        return Milter.TEMPFAIL

    # -- connection-level callbacks ----------------------------------------------------------------

    @guarded(Milter.P_NR_CONN)
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self._client_name = hostname or ""
        port = None
        if isinstance(hostaddr, tuple) and hostaddr:
            self._client_addr = str(hostaddr[0])
            port = hostaddr[1] if len(hostaddr) > 1 else None
        else:
            self._client_addr = str(hostaddr or "")
        # Postfix's non_smtpd path (pickup, its own bounces) reports client port 0 (see internal_path)
        self._internal_conn = internal_path(port, self._ctx.getsymval("{daemon_port}"))
        return self._go(Milter.P_NR_CONN)

    @guarded(Milter.P_NR_HELO)
    def hello(self, heloname: str) -> int:
        self._helo = heloname or ""
        return self._go(Milter.P_NR_HELO)

    # -- envelope ----------------------------------------------------------------------------------

    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        try:
            self._start_message()
            if self._protocol & Milter.P_NOCONNECT:  # lean session: the client comes as macros
                macro = self._ctx.getsymval
                self._client_name = macro("{client_name}") or ""
                self._client_addr = macro("{client_addr}") or ""
                port = macro("{client_port}")
                # (the daemon's port is asked for only when the client's says "internal")
                self._internal_conn = port in _PORT_ZERO and internal_path(port, macro("{daemon_port}"))
            self._envelope_from = sender = _bare(mailfrom) if mailfrom else ""
            self._null_sender = sender == ""
            # never from the sender's spelling: an SMTP client may leave out the angle brackets (see internal_path)
            self._internal = self._internal_conn
            for param in esmtp:  # the client's SIZE= is the only size we learn when the body is capped
                if param[:5].upper() == "SIZE=" and param[5:].isdigit():
                    self._declared_size = int(param[5:])
            signer = self._rt.signer
            if signer is not None and not self._null_sender and signer.wants(self._envelope_from):
                # a return path that is already one of ours (an application that signs its own) is left alone
                self._sign = self._rt.matcher.match(self._envelope_from) is None
            return Milter.NOREPLY if self._protocol & Milter.P_NR_MAIL else Milter.CONTINUE
        except Exception:
            return _failed(self, "envfrom", Milter.P_NR_MAIL)

    def envrcpt(self, to: str, *esmtp: str) -> int:
        try:
            match = self._rt.matcher.match_path(to)
            if match is not None:
                verifier = self._rt.verifier
                # (a session that negotiated RCPT without a reply, before a reload turned "reject" on, records instead)
                if (
                    not self._protocol & Milter.P_NR_RCPT
                    and verifier is not None
                    and verifier.rejects
                    and not self._internal
                ):
                    refused = verifier.refuse_at_rcpt(match)
                    if refused is not None:
                        return self._refuse(match, refused)
                self._matched.append((to, match))
            else:
                self._others.append(to)
            return Milter.NOREPLY if self._protocol & Milter.P_NR_RCPT else Milter.CONTINUE
        except Exception:
            return _failed(self, "envrcpt", Milter.P_NR_RCPT)

    def _refuse(self, match: Any, check: Any) -> int:
        """550 5.7.1 for a bounce address whose token is missing, altered or expired (verify = "reject")."""
        rt = self._rt
        self.setreply("550", "5.7.1", f"bouncemilter: this return path was not issued by us ({check.status})")
        if rt.metrics is not None:
            rt.metrics.count("rejected")
        logjson.event(
            rt.logger,
            logging.INFO,
            "rejected",
            queue_id=self.getsymval("i") or "",
            recipient=match.address,
            verified=False,
            verification=f"{check.status}: {check.why}",
            envelope_from=self._envelope_from,
            client_addr=self._client_addr,
        )
        return Milter.REJECT

    def data(self) -> int:
        try:
            if self._failed or (self._rt.draining and not self._internal):
                # An earlier no-reply event failed, or we are shutting down (a TCP listener stays open):
                # answer like a milter that is down with milter_default_action = tempfail. Never
                # tempfail the internal path.
                self._failed = False
                self._finish_message()
                return _internal_default(self)
            self._examine = bool(self._matched) or (self._null_sender and self._rt.settings.match_null_sender)
            if not self._examine and not self._sign:
                # Ordinary mail: "accept, no more events" so headers and body never reach us.
                if self._rt.logger.isEnabledFor(logging.DEBUG):
                    logjson.event(
                        self._rt.logger,
                        logging.DEBUG,
                        "skipped",
                        queue_id=self.getsymval("i") or "",
                        envelope_from=self._envelope_from,
                        recipients=len(self._others),
                    )
                self._finish_message()
                return Milter.ACCEPT
            self._queue_id = self.getsymval("i") or ""
            # (outbound mail we only sign is never buffered: the budget does not concern it)
            if self._examine and not self._internal and self._rt.budget.full():
                return self._refuse_memory("at DATA")
            return Milter.CONTINUE
        except Exception:
            return _failed(self, "data", 0)

    # -- content -----------------------------------------------------------------------------------

    @Milter.decode("bytes")
    def header(self, name: str, value: bytes | str) -> int:
        # One event per header field, for every examined or signed message: only keep it here; eoh() reads
        # them all in one loop (a header took ~12,000 instructions when each one was buffered and charged to
        # the memory budget as it came). The fields wait for eoh() uncounted: the MTA bounds a header block
        # (Postfix's header_size_limit, 100 KiB by default).
        try:
            if self._fields:
                self._fields.append((name, value))
            else:
                self._fields = [(name, value)]
            return Milter.NOREPLY if self._protocol & Milter.P_NR_HDR else Milter.CONTINUE
        except Exception:
            return _failed(self, "header", Milter.P_NR_HDR)

    def eoh(self) -> int:
        try:
            self._read_fields()
            if self._examine:
                self._size += 2
                self._append(b"\r\n")
            return Milter.NOREPLY if self._protocol & Milter.P_NR_EOH else Milter.CONTINUE
        except Exception:
            return _failed(self, "eoh", Milter.P_NR_EOH)

    def _read_fields(self) -> None:
        """The header fields that came (see header()): buffered as on the wire when the message is examined, its
        Message-ID, and the fields with our prefix (removed before ours are added)."""
        fields, self._fields = self._fields, _NO_FIELDS
        examine = self._examine
        settings = self._rt.settings
        prefix = settings.header_prefix.lower().encode() if settings.add_headers else None
        if prefix is None and examine and self._read_block(fields):
            return
        lines = []
        for name, value in fields:
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            name_b = name.encode("ascii", "replace") if isinstance(name, str) else bytes(name)
            if examine:
                # Folded values arrive with bare LF (Postfix) or CRLF: store CRLF like the wire format.
                if b"\n" in value:
                    value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                lines.append(name_b + b": " + value + b"\r\n")
            lower = name_b.lower()
            if not self._message_id and lower == b"message-id":
                self._message_id = _one_line(value.decode("utf-8", "replace"), 998)
            if prefix is not None and lower.startswith(prefix):
                text = name_b.decode("ascii", "replace")
                nth = 1 + sum(1 for n, _ in self._ours if n.lower() == text.lower())
                self._ours.append((text, nth))
        if lines:
            block = b"".join(lines)
            self._size += len(block)
            self._append(block)

    def _read_block(self, fields: list[tuple[str, bytes | str]]) -> bool:
        """_read_fields() of an examined message (no header prefix to watch) in a few operations for the whole
        block rather than a dozen per field (eoh() took ~45,000 instructions for a bounce's 8 fields); False, with
        nothing done, for fields it cannot take as they are (names must be text, values bytes, as pymilter gives)."""
        n = len(fields)
        if not n:
            return True
        try:
            names, values = zip(*fields, strict=True)
            joined = "\0".join(names)
            parts: list[bytes] = [b""] * (4 * n)
            parts[0::4] = joined.encode("ascii", "replace").split(b"\0")
            parts[1::4] = [b": "] * n
            parts[2::4] = values
            parts[3::4] = [b"\r\n"] * n
            block = b"".join(parts)
        except (TypeError, ValueError):  # a value that is not bytes, a name that is not text (or holds a NUL)
            return False
        if block.count(b"\n") != n:
            # Folded values arrive with bare LF (Postfix) or CRLF: store CRLF like the wire format (the same as
            # doing it value by value: each separator is one CRLF already).
            block = block.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not self._message_id:
            lowered = joined.lower().split("\0")
            if "message-id" in lowered:
                value = values[lowered.index("message-id")]
                self._message_id = _one_line(value.decode("utf-8", "replace"), 998)  # type: ignore[union-attr]
        self._size += len(block)
        self._append(block)
        return True

    @guarded()
    def body(self, chunk: bytes) -> int:
        if self._fields:  # (an MTA that sent no end-of-headers event)
            self._read_fields()
        if not self._examine:  # outbound mail we only sign: its body is never read
            return Milter.SKIP if self._protocol & Milter.P_SKIP else Milter.CONTINUE
        self._size += len(chunk)
        self._append(chunk)
        if self._over:
            return self._refuse_memory("while buffering")
        if self._skim is not None and self._skim.done and self._protocol & Milter.P_SKIP:
            return Milter.SKIP  # nothing later can change the result; the MTA goes straight to end of message
        return Milter.CONTINUE

    def _append(self, data: bytes) -> None:
        if self._over:
            return
        cap = self._rt.settings.body_cap
        if self._skim is None:
            if len(self._buf) + len(data) <= cap:
                if self._charge(len(self._buf) + len(data)):
                    self._buf += data
                return
            # Past body_cap the message is read by its MIME structure (headers and report parts kept, big bodies
            # skipped without being buffered): a report part after a large attachment is still found, and what
            # is held stays within body_cap (plus a line), as the memory budget counts it.
            self._truncated = True
            self._skim = Skimmer(budget=cap)
            self._skim.feed(bytes(self._buf))
            self._buf = bytearray()
        self._skim.feed(data)
        self._charge(self._skim.held)

    def _charge(self, total: int) -> bool:
        """Bring this message's share of the memory budget to `total` bytes. Past the budget the message is
        dropped and deferred at the next event with a reply (body or end of message); Postfix's own path is
        always taken (counted, never refused)."""
        more = total - self._charged
        if more <= 0:
            if more:
                self._rt.budget.give(-more)
                self._charged = total
            return True
        if self._rt.budget.take(more, force=self._internal):
            self._charged = total
            return True
        self._over = True
        self._buf = bytearray()
        self._skim = None
        self._rt.budget.give(self._charged)
        self._charged = 0
        return False

    # -- end of message ----------------------------------------------------------------------------

    @guarded()
    def eom(self) -> int:
        if self._failed:  # a header/eoh callback failed: nothing trustworthy to record
            self._failed = False
            self._finish_message()
            return _internal_default(self)
        if self._fields:  # (an MTA that sent no end-of-headers event)
            self._read_fields()
        if self._sign:
            self._sign_return_path()
        if not self._examine:  # signed-only mail, or the MTA ignored our ACCEPT at DATA
            self._finish_message()
            return Milter.ACCEPT
        if self._over:
            return self._refuse_memory("at end of message")
        t_eom = time.perf_counter()
        rt = self._rt
        settings = rt.settings
        # the reply must reach the MTA within [store] timeout of end of message (classification included); what
        # is left after the store gave up (the log line, the reply, the MTA's own work) gets REPLY_RESERVE
        deadline = time.monotonic() + rt.writer.timeout - min(REPLY_RESERVE, rt.writer.timeout / 10)
        self._queue_id = self.getsymval("i") or self._queue_id
        skim, self._skim = self._skim, None
        raw = skim.result() if skim is not None else bytes(self._buf)
        self._buf = bytearray()
        classifier = rt.classifier
        if skim is not None and skim.cut_report:  # the report part itself was longer than body_cap
            classifier = _marked_truncated(classifier)
        # The step `bouncemilter import` shares: classify, choose the action, commit the rows.
        env = Envelope(
            queue_id=self._queue_id,
            client_addr=self._client_addr,
            client_name=self._client_name,
            helo=self._helo,
            envelope_from=self._envelope_from,
            bounce_addresses=[m.address for _, m in self._matched],
            verp_recipients=[m.verp_recipient for _, m in self._matched if m.verp_recipient],
            message_id=self._message_id,  # "" (not None): the headers were already read
            size=max(self._size, self._declared_size) if self._truncated else self._size,
            # identifies a retry of a message without Message-ID (Postfix passes no Received: of its own)
            digest="" if self._message_id else hashlib.sha256(raw).hexdigest(),
            internal=self._internal,
            unsubscribe=any(m.unsubscribe for _, m in self._matched),
        )
        stored = True
        store_error = ""
        store_ms = 0.0
        more: dict[str, Any] = {}
        try:
            out = ingest(raw, env, settings, _Until(rt.writer, deadline), classifier=classifier, verifier=rt.verifier)
            result, action, processing_ms, store_ms = out.classification, out.action, out.classify_ms, out.store_ms
            verified, verification, notes = out.verified, out.verification, out.notes
            dropped = out.recipients_dropped
            if not out.inserted:
                # the same report again (a retry after a lost reply, or through another MX): already stored,
                # nothing new was written
                more["duplicate"], more["duplicate_of"] = True, out.row_id
        except NotStored as exc:
            prepared = exc.prepared
            result, action, processing_ms = prepared.classification, prepared.action, prepared.classify_ms
            verified, verification = prepared.meta.verified, prepared.meta.verification
            notes = prepared.meta.recipient_notes
            stored = False
            store_error = str(exc) or exc.__class__.__name__
            dropped = prepared.meta.recipients_dropped
        if dropped:  # the report named more recipients than [limits] recipients_per_message
            more["recipients_dropped"] = dropped
        assert result is not None  # ingest() always classifies
        if rt.metrics is not None:
            rt.metrics.observe(result, action, time.perf_counter() - t_eom, stored=stored)
            if stored and verified is not None:
                rt.metrics.count("verified" if verified else "unverified")
        trust: dict[str, Any] = {"verified": verified, "verification": verification}
        if notes:
            trust["notes"] = notes
        if result.truncated:  # nothing dropped without a word: the report named more than was read
            trust["report_truncated"] = True
            logjson.event(
                rt.logger,
                logging.WARNING,
                "report_truncated",
                f"the report names more recipients than were read; the first {len(result.recipients)} are recorded",
                queue_id=self._queue_id,
                recipients=len(result.recipients),
                verified=verified,
            )
        if not stored:
            if not self._internal:
                self.setreply(*TEMPFAIL_REPLY)
                self._log(
                    result,
                    "tempfail",
                    t_eom,
                    logging.ERROR,
                    {"stored": False, "store_error": store_error, **trust, **more},
                )
                self._finish_message()
                return Milter.TEMPFAIL
            # Internal path: deferring would leave Postfix's own bounce stuck; deliver it untouched.
            action = "accept"

        rc = Milter.ACCEPT
        action, delete, discard_all = decide.discard_plan(action, [r for r, _ in self._matched], self._others)
        for rcpt in delete:  # other recipients still get the message; only our copy goes
            self.delrcpt(rcpt)
        if discard_all:
            rc = Milter.DISCARD
        if rc != Milter.DISCARD and settings.add_headers:
            self._add_headers(result)
        level = logging.INFO if stored else logging.ERROR
        facts = {
            "stored": stored and "duplicate" not in more,
            "store_error": store_error,
            "classify_ms": decide.ms3(processing_ms),
            "store_ms": decide.ms3(store_ms),
            **trust,
            **more,
        }
        self._log(result, action, t_eom, level, facts)
        self._finish_message()
        return rc

    def _sign_return_path(self) -> None:
        """Replace the envelope sender by a signed return path. Never fails the message: mail that cannot be
        signed leaves unsigned (its bounces then count as unverified), and the error is logged."""
        rt = self._rt
        self._queue_id = self.getsymval("i") or self._queue_id
        recipients = [_bare(r) for r, _ in self._matched] + [_bare(r) for r in self._others]
        try:
            return_path = rt.signer.return_path(self._envelope_from, recipients)
            self.chgfrom(f"<{return_path}>")
        except Exception as exc:
            logjson.event(
                rt.logger,
                logging.ERROR,
                "sign_failed",
                f"the return path was not replaced: {exc.__class__.__name__}: {exc}",
                queue_id=self._queue_id,
                envelope_from=self._envelope_from,
            )
            return
        if rt.metrics is not None:
            rt.metrics.count("signed")
        if rt.sent_log is not None:
            match = rt.matcher.match(return_path)
            token = match.token if match is not None else ""
            rt.sent_log.add(self._queue_id, self._message_id, self._envelope_from, return_path, token, recipients)
        # debug: Postfix logs the new sender itself (qmgr "from=<bounces+...>"), and a line costs ~90k
        # instructions, a third of what signing adds to an outbound session (bench/signing_cost.py)
        logjson.event(
            rt.logger,
            logging.DEBUG,
            "signed",
            queue_id=self._queue_id,
            envelope_from=self._envelope_from,
            return_path=return_path,
            recipients=len(recipients),
            message_id=self._message_id,
            internal=self._internal,
        )

    def _add_headers(self, result: Classification) -> None:
        # Headers with our prefix that came with the message are someone else's claims (a forged
        # "X-Bounce-Kind: bounce" would sit beside ours): remove them first. Last first, so that
        # removing one does not renumber the others of the same name.
        for name, nth in reversed(self._ours):
            self.chgheader(name, nth, None)
        for name, value in decide.bounce_headers(result, self._rt.settings.header_prefix):
            self.addheader(name, value)

    def _log(self, result: Classification, action: str, t_eom: float, level: int, facts: dict[str, Any]) -> None:
        decide.log_message(
            self._rt.logger,
            level,
            result,
            action,
            t_eom=t_eom,
            t0=self._t0,
            queue_id=self._queue_id,
            envelope_from=self._envelope_from,
            matches=[m for _, m in self._matched],
            message_id=self._message_id,
            size=self._size,
            truncated=self._truncated,
            internal=self._internal,
            facts=facts,
        )

    @guarded()
    def abort(self) -> int:
        self._finish_message()
        self._reset()
        return Milter.CONTINUE

    def close(self) -> int:
        try:
            if self._active or self._charged or self._buf or self._skim is not None:
                self._finish_message()
            if self._connected:
                self._connected = False
                self._rt.budget.disconnect()
            return Milter.CONTINUE
        except Exception:
            return _failed(self, "close", 0)


# -- running the milter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SocketSpec:
    kind: str  # unix | inet | inet6
    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def libmilter(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"{self.kind}:{self.port}@{self.host}"


def parse_socket(spec: str) -> SocketSpec:
    """libmilter syntax: unix:/path (or local:/path), inet:PORT@HOST, inet6:PORT@HOST."""
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if not sep or not rest:
        raise ValueError(f"socket {spec!r}: expected unix:/path or inet:PORT@HOST")
    if kind in ("unix", "local"):
        if not rest.startswith("/"):
            raise ValueError(f"socket {spec!r}: the unix socket path must be absolute")
        return SocketSpec("unix", path=rest)
    if kind in ("inet", "inet6"):
        port_s, _, host = rest.partition("@")
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise ValueError(f"socket {spec!r}: bad port {port_s!r}")
        return SocketSpec(kind, host=host or ("127.0.0.1" if kind == "inet" else "::1"), port=int(port_s))
    raise ValueError(f"socket {spec!r}: unknown type {kind!r} (use unix:, inet: or inet6:)")


def set_listener_nodelay(port: int) -> int:
    """Set TCP_NODELAY on libmilter's listening socket(s) for `port`; returns how many were changed.

    libmilter creates and owns the listening socket and offers no hook for socket options. On Linux
    an accepted TCP socket inherits TCP_NODELAY from its listening socket, so setting it once here
    turns Nagle off for every MTA connection: replies made of several milter packets (e.g. ADDHEADER
    then ACCEPT) then leave at once instead of waiting ~40 ms for the MTA's delayed ACK.
    """
    changed = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            dup = os.dup(fd)
        except (ValueError, OSError):
            continue
        sock = socket.socket(fileno=dup)
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                continue
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                continue
            if sock.getsockname()[1] != port:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            changed += 1
        except OSError:
            continue
        finally:
            sock.close()  # closes only our duplicate
    return changed


def _socket_mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def _prepare_unix_socket(spec: SocketSpec, settings: Any) -> None:
    parent = os.path.dirname(spec.path)
    if not os.path.isdir(parent):
        raise OSError(f"socket directory {parent} does not exist")


class SocketBusy(Exception):
    """Another milter serves the unix socket: starting would take it over."""


def lock_socket(path: str) -> int:
    """Hold `path`.lock (flock) for the life of the process; returns its descriptor.

    libmilter removes whatever socket file is in the way, so without this a second instance would
    replace the socket of a running one, and stopping either would delete the socket the other
    serves. The lock file stays (removing it would race with a starting instance); the kernel
    releases the lock when the process ends, however it ends.
    """
    import fcntl  # local: only unix sockets need it

    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise SocketBusy(f"another bouncemilter (pid {holder}) holds {path}.lock and serves {path}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    # A live listener without the lock (an older version, another program): never take its socket over.
    if os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode):
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(1.0)
            probe.connect(path)
            os.close(fd)
            raise SocketBusy(f"a process without bouncemilter's lock is listening on {path}")
    return fd


SOCKET_MODE = 0o660  # owner and group: whoever may connect can inject bounces and suppressions


def _finish_unix_socket(spec: SocketSpec, settings: Any) -> None:
    """Mode (default 0660) and group (default: the milter's own) of the socket. Postfix must be in that group
    (usermod -a -G bouncemilter postfix), or set socket_group = "postfix" (the milter's user a member of it)."""
    group = getattr(settings, "socket_group", None)
    mode = getattr(settings, "socket_mode", None)
    os.chmod(spec.path, _socket_mode(mode) if mode is not None else SOCKET_MODE)
    if group:
        gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
        os.chown(spec.path, -1, gid)


def _unlink_socket(path: str, ident: tuple[int, int] | None) -> None:
    """Remove our unix socket (new MTA connections then fail fast), unless another process replaced it."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if ident is None or (st.st_dev, st.st_ino) == ident:
            os.unlink(path)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


# straight to our methods with text (what Base.envfrom_bytes/envrcpt_bytes do, minus their lookups); the
# address alone, as nearly always, without a list of parameters to build
def _envfrom_callback(ctx: Any, sender: bytes, *params: bytes) -> int:
    if params:
        return ctx.getpriv().envfrom(sender.decode("utf-8", "surrogateescape"), *[_text(x) for x in params])
    return ctx.getpriv().envfrom(sender.decode("utf-8", "surrogateescape"))


def _envrcpt_callback(ctx: Any, rcpt: bytes, *params: bytes) -> int:
    if params:
        return ctx.getpriv().envrcpt(rcpt.decode("utf-8", "surrogateescape"), *[_text(x) for x in params])
    return ctx.getpriv().envrcpt(rcpt.decode("utf-8", "surrogateescape"))


def _register(settings: Any) -> None:
    """What Milter.runmilter does, minus opening the socket and running (we do those ourselves)."""
    import milter as _milter  # pymilter's C module

    Milter.factory = BounceMilter
    flags = Milter.ADDHDRS | Milter.CHGHDRS | Milter.DELRCPT
    if getattr(settings, "signing_enabled", False) and getattr(settings, "signing_senders", ()):
        flags |= Milter.CHGFROM  # outbound signing replaces the envelope sender
    Milter.set_flags(flags)
    _milter.set_exception_policy(Milter.TEMPFAIL)
    _milter.set_connect_callback(Milter.connect_callback)
    _milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    _milter.set_envfrom_callback(_envfrom_callback)
    _milter.set_envrcpt_callback(_envrcpt_callback)
    _milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header(f, v))  # header() takes the bytes
    _milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    _milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    _milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    _milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    _milter.set_close_callback(Milter.close_callback)
    timeout = int(getattr(settings, "milter_timeout", 0) or 0)
    if timeout > 0:
        _milter.settimeout(timeout)
    _milter.setbacklog(LISTEN_BACKLOG)
    _milter.register(
        MILTER_NAME,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


def open_runtime(settings: Any) -> tuple[Runtime, SocketSpec] | int:
    """What the milter needs before it listens: logger, socket spec, store (with the suppression
    policy), metrics and the bounce-address matcher. An int is the exit status of a failed start."""
    from .policy import Policy
    from .unsubscribe import build_matcher

    logger = logjson.setup(settings.log_target, settings.log_level)
    try:
        spec = parse_socket(settings.socket)
    except ValueError as exc:
        logjson.event(logger, logging.ERROR, "start_failed", str(exc))
        return 2
    try:
        store = open_store(settings.db, settings.store_timeout)
    except (StoreError, OSError) as exc:
        logjson.event(
            logger, logging.ERROR, "start_failed", f"cannot open the store: {exc}", db=display_name(str(settings.db))
        )
        return 2 if isinstance(exc, ForeignDatabase) else 1  # a wrong --db: a usage error, as in the CLI
    store.suppressions.policy = Policy.from_settings(settings)
    metrics = None
    if getattr(settings, "metrics_enabled", False):
        from .metrics import Metrics

        metrics = Metrics()
        try:
            metrics.start(settings.metrics_listen)
        except OSError as exc:
            logjson.event(logger, logging.ERROR, "start_failed", f"metrics on {settings.metrics_listen}: {exc}")
            store.close()
            return 1
    matcher = build_matcher(settings)
    loggers = [logger]  # the runtime's logger once it exists (a reload may set up a new one)
    try:
        trust = make_trust(settings, matcher, store, lambda: loggers[-1], metrics)
    except Exception as exc:  # config.ConfigError: the key file changed since the settings were loaded
        logjson.event(logger, logging.ERROR, "start_failed", str(exc))
        store.close()
        return 2
    rt = Runtime(
        settings=settings,
        matcher=matcher,
        store=store,
        logger=logger,
        no_reply=spec.kind == "unix",
        metrics=metrics,
        signer=trust.signer,
        verifier=trust.verifier,
        sent_log=trust.sent_log,
        dns_config=trust.dns_config,
    )
    loggers.append(rt.logger)
    if metrics is not None:
        metrics.track_budget(rt.budget)
    if not matcher and not settings.match_null_sender:
        logjson.event(logger, logging.WARNING, "config", "no bounce addresses and match_null_sender off: nothing to do")
    return rt, spec


@dataclass
class Trust:
    """What [signing] and [dns] put in the runtime (see make_trust)."""

    signer: Any
    verifier: Any
    sent_log: Any
    dns_config: tuple


def _dns_config(settings: Any) -> tuple:
    keys = ("dns_check", "dns_nameservers", "dns_lookup_timeout", "dns_cache_seconds")
    return tuple(repr(getattr(settings, k, None)) for k in keys)


def make_trust(
    settings: Any,
    matcher: Any,
    store: Store,
    logger_of: Callable[[], logging.Logger],
    metrics: Any,
    running: Runtime | None = None,
) -> Trust:
    """The signer, the verifier (with its DNS checker) and the sent log of [signing] and [dns]: built at start
    and again on SIGHUP (`running`: the runtime whose DNS checker, cache included, and sent log are kept when
    their settings did not change). Raises config.ConfigError (an unusable key file) before starting anything."""

    def dns_failed(domain: str, why: str) -> None:
        logjson.event(logger_of(), logging.WARNING, "dns_failed", why, domain=domain, verified=None)
        if metrics is not None:
            metrics.count("dns_failures")

    signer = make_signer(settings)
    dns_config = _dns_config(settings)
    old_dns = running.verifier.dns if running is not None and running.verifier is not None else None
    if old_dns is not None and running is not None and running.dns_config == dns_config:
        dns = old_dns
    else:
        # a replaced checker is not closed: a session may still be waiting on it (its idle threads end with it)
        dns = make_domain_checker(settings, dns_failed)
    verifier = make_verifier(settings, matcher, dns=dns)
    sent_log = None
    # the sent log records what is signed, whatever `verify` says (verify = "off" while old mail still bounces)
    if verifier is not None and getattr(settings, "signing_enabled", False) and settings.signing_log_sent:
        sent_log = running.sent_log if running is not None else None
        if sent_log is None:
            from .sentlog import SentLog

            sent_log = SentLog(store, settings.signing_sent_retention_days, logger_of(), metrics).start()
        sent_log.retention_days = settings.signing_sent_retention_days
        verifier.sent = sent_log
    return Trust(signer, verifier, sent_log, dns_config)


def reload_trust(rt: Runtime, live: Any) -> None:
    """RELOAD_HOOKS entry: on SIGHUP the key file is read again (rotation) and [signing] / [dns] apply. A key file
    that cannot be used fails the reload as a whole: the running keys stay."""
    before = _key_ids(rt)
    trust = make_trust(live, rt.matcher, rt.store, lambda: rt.logger, rt.metrics, running=rt)
    old_log = rt.sent_log
    rt.signer, rt.verifier, rt.sent_log, rt.dns_config = trust.signer, trust.verifier, trust.sent_log, trust.dns_config
    if old_log is not None and old_log is not trust.sent_log:
        old_log.close()  # log_sent turned off: what is queued is written
    after = _key_ids(rt)
    if after != before:
        # key ids only (one character derived from each key), never the keys
        logjson.event(rt.logger, logging.INFO, "signing_keys", "signing keys reloaded", keys=after, before=before)


def _key_ids(rt: Runtime) -> list[str]:
    ring = rt.verifier.keys if rt.verifier is not None and rt.verifier.keys is not None else None
    if ring is None and rt.signer is not None:
        ring = rt.signer.keys
    return [k.kid for k in ring.keys] if ring is not None else []


def make_signer(settings: Any) -> Any:
    """The outbound Signer of [signing], or None when nothing is to be signed (raises config.ConfigError)."""
    if not getattr(settings, "signing_enabled", False) or not settings.signing_senders:
        return None
    from .config import read_keys
    from .signing import Signer

    keys = read_keys(settings.signing_secret_file)
    return Signer(
        keys, settings.signing_senders, settings.signing_addresses(), settings.verp_separator, settings.verp_encoding
    )


# Settings a running milter cannot take over on SIGHUP: they name what it opened at start.
RESTART_ONLY = (
    "socket",
    "socket_mode",
    "socket_group",
    "db",
    "milter_timeout",
    "metrics_enabled",
    "metrics_listen",
    "metrics_allow_remote",
    "notify_url",  # the webhook's thread starts with the milter (its other [notify] settings reload)
)
# Called with (runtime, new settings) after a reload applied the rest, e.g. to load new signing keys; an
# exception keeps the old settings (the reload fails as a whole).
RELOAD_HOOKS: list[Callable[[Runtime, Any], None]] = [reload_trust]


def reload_runtime(rt: Runtime, new: Any) -> dict[str, list[str]]:
    """Apply `new` settings to a running milter: addresses, actions, headers, policy, log, store timeout, and
    through RELOAD_HOOKS the signing keys (read again), [signing] and [dns] (reload_trust).

    Sessions in progress are not touched: each callback reads the runtime's current settings and matcher.
    Settings in RESTART_ONLY keep their running value (reported). Returns the changed and the ignored names.
    """
    from dataclasses import fields, replace

    from .policy import Policy
    from .unsubscribe import build_matcher

    old = rt.settings
    changed = [f.name for f in fields(new) if getattr(new, f.name) != getattr(old, f.name)]
    # the [fetch] watcher holds its mailbox connection and settings from the start
    ignored = [name for name in changed if name in RESTART_ONLY or name.startswith("fetch_")]
    live = replace(new, **{name: getattr(old, name) for name in ignored})
    matcher = build_matcher(live)
    policy = Policy.from_settings(live)
    previous = (rt.settings, rt.matcher, rt.store.suppressions.policy)
    rt.settings, rt.matcher, rt.store.suppressions.policy = live, matcher, policy
    try:
        for hook in RELOAD_HOOKS:
            hook(rt, live)
    except Exception:
        rt.settings, rt.matcher, rt.store.suppressions.policy = previous
        raise
    rt.store.timeout = rt.writer.timeout = float(live.store_timeout)
    if (live.log_target, live.log_level) != (old.log_target, old.log_level):
        rt.logger = logjson.setup(live.log_target, live.log_level)
    return {"changed": [n for n in changed if n not in ignored], "restart_needed": ignored}


RETENTION_FIRST = 60.0  # seconds after start before the first retention prune (let the start settle)
RETENTION_EVERY = 86400.0


def retention_loop(rt: Runtime, stop: threading.Event, first: float = RETENTION_FIRST) -> None:
    """[store] retention_days: prune older messages once a day (read at each run, so a reload applies)."""
    from .maintenance import prune

    wait = first
    while not stop.wait(wait):
        wait = RETENTION_EVERY
        days = int(getattr(rt.settings, "retention_days", 0) or 0)
        if days <= 0:
            continue
        try:
            out = prune(rt.store.path, days, timeout=rt.store.timeout)
        except Exception as exc:  # a busy or broken store: try again tomorrow, the milter goes on
            logjson.event(rt.logger, logging.ERROR, "prune_failed", str(exc), retention_days=days)
        else:
            logjson.event(rt.logger, logging.INFO, "prune", retention_days=days, **out)


def start_notifier(rt: Runtime) -> tuple[threading.Event, threading.Thread | None]:
    """[notify] url: the webhook's outbox worker (bouncemilter.notify), a thread beside libmilter, never on the
    SMTP path. Its position in the feed is set before the milter listens."""
    stop = threading.Event()
    if not getattr(rt.settings, "notify_url", ""):
        return stop, None
    from .notify import Notifier

    notifier = Notifier(rt.store.path, lambda: rt.settings, rt.logger, db_timeout=rt.store.timeout)
    try:
        notifier.start()
    except Exception as exc:  # the loop retries; the suppressions wait in the feed
        logjson.event(rt.logger, logging.ERROR, "notify_failed", f"cannot start the webhook outbox: {exc}")
    thread = threading.Thread(target=notifier.loop, args=(stop,), name="notify", daemon=True)
    thread.start()
    return stop, thread


def _start_fetch(rt: Runtime) -> Callable[[], None] | int | None:
    """[fetch] enabled: watch the hosted mailbox on a thread beside the milter (bouncemilter.fetch). Fetched
    bounces are verified by the milter's current verifier (keys and sent log as reloaded), with the DNS check
    given its whole lookup time: nothing waits on a mailbox."""
    settings, store, logger = rt.settings, rt.store, rt.logger
    if not getattr(settings, "fetch_enabled", False):
        return None
    from .fetch import FetchError, start_service

    def verifier() -> Any:
        current = rt.verifier
        return current.waiting(rt.settings.dns_lookup_timeout) if current is not None else None

    try:
        return start_service(settings, store, logger, verifier)
    except FetchError as exc:
        logjson.event(logger, logging.ERROR, "start_failed", f"fetch: {exc}")
        return 1


def serve(settings: Any, *, exit_process: bool = True, reload: Callable[[], Any] | None = None) -> int:
    """Run the milter until SIGTERM/SIGINT; returns (or exits with) the exit status.

    `reload` gives new settings on SIGHUP (it raises ConfigError for an invalid file: the old ones stay)."""
    import milter as _milter

    from . import sdnotify
    from .listencheck import port_in_use

    busy = port_in_use(settings.socket)  # before the store is opened or created: libmilter would only say so later
    if busy:
        logjson.event(logjson.setup(settings.log_target, settings.log_level), logging.ERROR, "start_failed", busy)
        return 1
    opened = open_runtime(settings)
    if isinstance(opened, int):
        return opened
    rt, spec = opened
    logger, store, metrics = rt.logger, rt.store, rt.metrics
    BounceMilter.runtime = rt

    stop_fetch = _start_fetch(rt)  # before listening: a bad [fetch] stops the start
    if isinstance(stop_fetch, int):
        store.close()
        return stop_fetch
    _register(settings)
    _milter.setconn(spec.libmilter)
    sock_ident: tuple[int, int] | None = None
    lock_fd = -1
    try:
        if spec.kind == "unix":
            _prepare_unix_socket(spec, settings)
            lock_fd = lock_socket(spec.path)  # held until the process exits
        # the socket is born group-only (umask 0117 while libmilter binds it): no moment when any local user
        # could connect, before _finish_unix_socket sets the configured mode
        old_umask = os.umask(0o117) if spec.kind == "unix" else None
        try:
            _milter.opensocket(True)  # True: remove a stale unix socket left by a previous run
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if spec.kind == "unix":
            _finish_unix_socket(spec, settings)
            st = os.stat(spec.path)
            sock_ident = (st.st_dev, st.st_ino)
    except (OSError, _milter.error, KeyError, SocketBusy) as exc:
        logjson.event(logger, logging.ERROR, "start_failed", f"cannot listen on {settings.socket}: {exc}")
        if stop_fetch is not None:
            stop_fetch()
        return 1
    nodelay = set_listener_nodelay(spec.port) if spec.kind != "unix" else 0

    stop = threading.Event()
    wake = threading.Event()
    reload_requested = threading.Event()
    status = {"rc": 0}

    def run_libmilter() -> None:
        try:
            _milter.main()
        except Exception as exc:
            logjson.event(logger, logging.ERROR, "milter_failed", str(exc))
            status["rc"] = 1
        finally:
            stop.set()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        wake.set()

    def on_hup(signum: int, _frame: Any) -> None:
        reload_requested.set()
        wake.set()

    def do_reload() -> None:
        sdnotify.reloading()
        try:
            if reload is None:
                raise ValueError("this milter was started without a configuration to reload")
            info = reload_runtime(rt, reload())
        except Exception as exc:  # ConfigError above all: the old settings stay in force
            logjson.event(rt.logger, logging.ERROR, "reload_failed", f"{exc}; the previous settings stay in force")
        else:
            logjson.event(rt.logger, logging.INFO, "reload", **info)
            if info["restart_needed"]:
                logjson.event(
                    rt.logger,
                    logging.WARNING,
                    "reload",
                    f"{', '.join(info['restart_needed'])}: changed, but only a restart applies them",
                )
        sdnotify.notify("READY=1")

    # The Python handlers run in this (main) thread; libmilter blocks these signals in its own
    # threads, so the kernel delivers them here.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    notify_stop, notifier_thread = start_notifier(rt)  # before libmilter takes the first session
    worker = threading.Thread(target=run_libmilter, name="libmilter", daemon=True)
    worker.start()
    threading.Thread(target=retention_loop, args=(rt, stop), name="retention", daemon=True).start()
    logjson.event(
        logger,
        logging.INFO,
        "start",
        socket=spec.libmilter,
        db=str(settings.db),
        bounce_addresses=[str(getattr(b, "pattern", b)) for b in settings.bounce_addresses],
        unsubscribe_addresses=[b.pattern for b in getattr(settings, "unsubscribe_addresses", ())],
        notify_url=getattr(settings, "notify_url", "") or None,
        tcp_nodelay=bool(nodelay),
        pid=os.getpid(),
    )
    # the socket listens (opensocket above): now Postfix, ordered after us, may start
    sdnotify.notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS=listening on {spec.libmilter}")
    while not stop.is_set():
        wake.wait(1.0)
        wake.clear()
        if reload_requested.is_set() and not stop.is_set():
            reload_requested.clear()
            do_reload()
    sdnotify.notify("STOPPING=1")
    # Drain: no new MTA sessions (smfi_stop() is not used: libmilter would drop the sessions in
    # progress at their next command), let messages in progress reach their reply, then go.
    t_stop = time.perf_counter()
    rt.draining = True
    logger = rt.logger  # a reload may have set up a new one
    if spec.kind == "unix":
        _unlink_socket(spec.path, sock_ident)
    busy = rt.inflight.count
    idle = rt.inflight.wait_idle(SHUTDOWN_GRACE)
    logjson.event(
        logger,
        logging.INFO,
        "stop",
        in_flight_at_stop=busy,
        drained=idle,
        shutdown_ms=round((time.perf_counter() - t_stop) * 1000, 1),
    )
    if stop_fetch is not None:
        with contextlib.suppress(Exception):
            stop_fetch()
    notify_stop.set()
    if notifier_thread is not None:  # a POST in flight gets its answer recorded, so it is not posted again
        notifier_thread.join(float(rt.settings.notify_timeout) + 1.0)
    if rt.sent_log is not None:
        with contextlib.suppress(Exception):
            rt.sent_log.close()  # writes what is queued
    if rt.verifier is not None and rt.verifier.dns is not None:
        with contextlib.suppress(Exception):
            rt.verifier.dns.close()
    with contextlib.suppress(Exception):
        store.close()
    if metrics is not None:
        with contextlib.suppress(Exception):
            metrics.stop()
    for handler in logger.handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    if lock_fd >= 0 and not exit_process:
        os.close(lock_fd)
    if exit_process:
        # libmilter's own shutdown waits for its listener's poll timeout (seconds) and would cut
        # sessions short; nothing of ours is left to finish, so leave now.
        os._exit(status["rc"])
    return status["rc"]
