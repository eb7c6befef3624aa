"""The milter: capture bounces, complaints and auto-replies in-line, record them, then act.

Flow per message (one `BounceMilter` instance per MTA connection, reused for its messages):

* `envrcpt` matches each recipient against the configured bounce addresses (exact, VERP, @domain);
* `data` accepts at once when nothing matched (and the sender is not `<>` with match_null_sender on),
  so the MTA never sends us the headers or body of ordinary mail;
* matched mail is buffered up to `body_cap` bytes (then SKIP), classified at end of message and
  recorded; only after the store committed does the milter reply. A store failure is a TEMPFAIL
  (the sender retries), except on Postfix's internal (non_smtpd) path, where mail must never be
  rejected or deferred by us: there we accept and log the failure loudly.

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
from .ingest import Envelope, NotStored, ingest
from .store import Store, StoreError

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
MAIL_MACROS = "{client_addr} {client_name} {client_port}"


class InFlight:
    """Counts messages between MAIL FROM and their final reply, so shutdown can wait for them.

    A plain lock around a counter: entered and left for every message, so it must be cheap; only
    shutdown waits, and it polls.
    """

    POLL = 0.01  # seconds between checks while shutdown waits

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self._n += 1

    def leave(self) -> None:
        with self._lock:
            self._n = max(0, self._n - 1)

    @property
    def count(self) -> int:
        return self._n

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL)
        return True


class GroupCommit:
    """Messages that reach end of message at the same time share one store transaction (one fsync).

    Each caller still returns only after its own rows are committed (or with StoreError), so the
    "committed before the reply" rule holds; under load, N waiting sessions cost one commit instead
    of N commits in a row. Leader/follower: the first caller writes everything queued, then
    everything that queued meanwhile, until the queue is empty; the others wait for their result.
    """

    def __init__(self, store: Any, timeout: float) -> None:
        self.store = store
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False

    def record(self, meta: Any, result: Classification, action: str) -> tuple[int, bool]:
        with self._mutex:
            lead = not self._leading
            # only a follower waits, so only a follower needs an Event (the common, uncontended case has none)
            item = _Pending((meta, result, action), None if lead else threading.Event())
            self._queue.append(item)
            self._leading = True
        if lead:
            self._lead()
        # A follower waits for a leader's commit; past the deadline the reply is TEMPFAIL (if the
        # row lands after all, the sender's retry is recognised as a duplicate).
        elif item.done is not None and not item.done.wait(self.timeout + 1.0):
            raise StoreError("store busy: group commit did not finish in time")
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _lead(self) -> None:
        while True:
            with self._mutex:
                batch, self._queue = self._queue, []
                if not batch:
                    self._leading = False
                    return
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        # Errors are handed to each waiting caller as they are: StoreError becomes a TEMPFAIL in eom(),
        # anything else is a bug that eom()'s guard logs with its traceback.
        try:
            if len(batch) == 1:
                results = [self.store.record(*batch[0].args)]
            else:
                results = self.store.record_many([p.args for p in batch], batch_size=len(batch))
            for p, res in zip(batch, results, strict=True):
                p.result = res
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                # The batch rolled back as a whole: retry one by one, so that a message that cannot be
                # stored does not take the others down with it.
                for p in batch:
                    try:
                        p.result = self.store.record(*p.args)
                    except Exception as one:
                        p.error = one
        finally:
            for p in batch:
                if p.done is not None:
                    p.done.set()


class _Pending:
    __slots__ = ("args", "done", "error", "result")

    def __init__(self, args: tuple[Any, Classification, str], done: threading.Event | None) -> None:
        self.args = args
        self.done = done
        self.result: tuple[int, bool] | None = None
        self.error: Exception | None = None


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

    def __post_init__(self) -> None:
        if self.writer is None:
            self.writer = GroupCommit(self.store, float(getattr(self.settings, "store_timeout", 5.0)))


def _internal_default(self: BounceMilter) -> int:
    return Milter.ACCEPT if self._internal else Milter.TEMPFAIL


def guarded(nr_bit: int = 0) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """No exception may reach libmilter: log it and answer TEMPFAIL (SMTP) / ACCEPT (internal path).

    For an event negotiated as no-reply (`nr_bit`) the MTA expects no answer: the failure is then
    remembered and given as the answer to the next event that has one (DATA or end of message).
    """

    def decorate(func: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(func)
        def wrapper(self: BounceMilter, *args: Any) -> int:
            try:
                return func(self, *args)
            except Exception:
                rc = _internal_default(self)
                logjson.event(
                    self._rt.logger,
                    logging.ERROR,
                    "callback_error",
                    f"unexpected error in {func.__name__}",
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

        return wrapper

    return decorate


_bare = decide.bare
_one_line = decide.one_line


class BounceMilter(Milter.Base):
    runtime: ClassVar[Runtime | None] = None

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
            mask &= ~NO_REPLY_EVENTS
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
        self._internal = self._internal_conn
        self._matched: list[tuple[str, Any]] = []  # (recipient as the MTA sent it, verp.Match)
        self._others: list[str] = []
        self._examine = False
        self._buf = bytearray()
        self._truncated = False
        self._size = 0
        self._declared_size = 0
        self._message_id = ""
        self._queue_id = ""
        self._t0 = 0.0

    def _start_message(self) -> None:
        self._finish_message()  # a previous message on this connection that ended without eom/abort
        self._reset()
        self._begin_message()
        self._t0 = time.perf_counter()

    def _begin_message(self) -> None:
        if not self._active:
            self._active = True
            self._rt.inflight.enter()

    def _finish_message(self) -> None:
        if self._active:
            self._active = False
            self._rt.inflight.leave()
        self._buf = bytearray()

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
        # Postfix's non_smtpd path (pickup, its own bounces) reports client port 0.
        self._internal_conn = port == 0
        return self._go(Milter.P_NR_CONN)

    @guarded(Milter.P_NR_HELO)
    def hello(self, heloname: str) -> int:
        self._helo = heloname or ""
        return self._go(Milter.P_NR_HELO)

    # -- envelope ----------------------------------------------------------------------------------

    @guarded(Milter.P_NR_MAIL)
    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        self._start_message()
        if self._protocol & Milter.P_NOCONNECT:  # lean session: the client comes as macros
            macro = self._ctx.getsymval
            self._client_name = macro("{client_name}") or ""
            self._client_addr = macro("{client_addr}") or ""
            self._internal_conn = macro("{client_port}") == "0"  # Postfix's non_smtpd path
        raw = mailfrom or ""
        self._envelope_from = _bare(raw)
        self._null_sender = self._envelope_from == ""
        # smtpd passes <addr> and <>; the non_smtpd path passes addr and "" (no angle brackets).
        self._internal = self._internal_conn or not raw.strip().startswith("<")
        for param in esmtp:  # the client's SIZE= is the only size we learn when the body is capped
            if param[:5].upper() == "SIZE=" and param[5:].isdigit():
                self._declared_size = int(param[5:])
        return self._go(Milter.P_NR_MAIL)

    @guarded(Milter.P_NR_RCPT)
    def envrcpt(self, to: str, *esmtp: str) -> int:
        match = self._rt.matcher.match(_bare(to))
        if match is not None:
            self._matched.append((to, match))
        else:
            self._others.append(to)
        return self._go(Milter.P_NR_RCPT)

    @guarded()
    def data(self) -> int:
        if self._failed or (self._rt.draining and not self._internal):
            # An earlier no-reply event failed, or we are shutting down (a TCP listener stays open):
            # answer like a milter that is down with milter_default_action = tempfail. Never
            # tempfail the internal path.
            self._failed = False
            self._finish_message()
            return _internal_default(self)
        self._examine = bool(self._matched) or (self._null_sender and self._rt.settings.match_null_sender)
        if not self._examine:
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
        return Milter.CONTINUE

    # -- content -----------------------------------------------------------------------------------

    @guarded(Milter.P_NR_HDR)
    @Milter.decode("bytes")
    def header(self, name: str, value: bytes | str) -> int:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        name_b = name.encode("ascii", "replace") if isinstance(name, str) else bytes(name)
        # Folded values arrive with bare LF (Postfix) or CRLF: store CRLF like the wire format.
        line = name_b + b": " + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
        self._size += len(line)
        self._append(line)
        if not self._message_id and name_b.lower() == b"message-id":
            self._message_id = _one_line(value.decode("utf-8", "replace"), 998)
        return self._go(Milter.P_NR_HDR)

    @guarded(Milter.P_NR_EOH)
    def eoh(self) -> int:
        self._size += 2
        self._append(b"\r\n")
        return self._go(Milter.P_NR_EOH)

    @guarded()
    def body(self, chunk: bytes) -> int:
        self._size += len(chunk)
        self._append(chunk)
        if self._truncated and self._protocol & Milter.P_SKIP:
            return Milter.SKIP  # enough to classify; the MTA goes straight to end of message
        return Milter.CONTINUE

    def _append(self, data: bytes) -> None:
        room = self._rt.settings.body_cap - len(self._buf)
        if room <= 0:
            self._truncated = True
            return
        if len(data) > room:
            data = data[:room]
            self._truncated = True
        self._buf += data

    # -- end of message ----------------------------------------------------------------------------

    @guarded()
    def eom(self) -> int:
        if self._failed:  # a header/eoh callback failed: nothing trustworthy to record
            self._failed = False
            self._finish_message()
            return _internal_default(self)
        if not self._examine:  # only reachable if the MTA ignored our ACCEPT at DATA
            self._finish_message()
            return Milter.ACCEPT
        t_eom = time.perf_counter()
        rt = self._rt
        settings = rt.settings
        self._queue_id = self.getsymval("i") or self._queue_id
        raw = bytes(self._buf)
        self._buf = bytearray()
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
        )
        stored = True
        store_error = ""
        store_ms = 0.0
        try:
            out = ingest(raw, env, settings, rt.writer, classifier=rt.classifier)
            result, action, processing_ms, store_ms = out.classification, out.action, out.classify_ms, out.store_ms
        except NotStored as exc:
            prepared = exc.prepared
            result, action, processing_ms = prepared.classification, prepared.action, prepared.classify_ms
            stored = False
            store_error = str(exc) or exc.__class__.__name__
        assert result is not None  # ingest() always classifies
        if rt.metrics is not None:
            rt.metrics.observe(result, action, time.perf_counter() - t_eom, stored=stored)
        if not stored:
            if not self._internal:
                self.setreply(*TEMPFAIL_REPLY)
                self._log(result, "tempfail", t_eom, level=logging.ERROR, stored=False, store_error=store_error)
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
        self._log(
            result,
            action,
            t_eom,
            level=level,
            stored=stored,
            store_error=store_error,
            classify_ms=round(processing_ms, 3),
            store_ms=round(store_ms, 3),
        )
        self._finish_message()
        return rc

    def _add_headers(self, result: Classification) -> None:
        for name, value in decide.bounce_headers(result, self._rt.settings.header_prefix):
            self.addheader(name, value)

    def _log(self, result: Classification, action: str, t_eom: float, *, level: int, **more: Any) -> None:
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
            **more,
        )

    @guarded()
    def abort(self) -> int:
        self._finish_message()
        self._reset()
        return Milter.CONTINUE

    @guarded()
    def close(self) -> int:
        self._finish_message()
        return Milter.CONTINUE


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


def _finish_unix_socket(spec: SocketSpec, settings: Any) -> None:
    group = getattr(settings, "socket_group", None)
    mode = getattr(settings, "socket_mode", None)
    # Unset: group-only when a group is named, else anyone who can reach the directory (Postfix runs
    # as another user than the milter, so the owner alone is never enough).
    mode = _socket_mode(mode) if mode is not None else (0o660 if group else 0o666)
    os.chmod(spec.path, mode)
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


def _register(settings: Any) -> None:
    """What Milter.runmilter does, minus opening the socket and running (we do those ourselves)."""
    import milter as _milter  # pymilter's C module

    Milter.factory = BounceMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.DELRCPT)
    _milter.set_exception_policy(Milter.TEMPFAIL)
    _milter.set_connect_callback(Milter.connect_callback)
    _milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    # straight to our methods with text (what Base.envfrom_bytes/envrcpt_bytes do, minus their lookups)
    _milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom(*[_text(x) for x in b]))
    _milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt(*[_text(x) for x in b]))
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
    from .verp import BounceMatcher

    logger = logjson.setup(settings.log_target, settings.log_level)
    try:
        spec = parse_socket(settings.socket)
    except ValueError as exc:
        logjson.event(logger, logging.ERROR, "start_failed", str(exc))
        return 2
    try:
        store = Store(settings.db, settings.store_timeout)
    except (StoreError, OSError) as exc:
        logjson.event(logger, logging.ERROR, "start_failed", f"cannot open the store: {exc}", db=str(settings.db))
        return 1
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
    matcher = BounceMatcher(settings.bounce_addresses, settings.verp_separator, settings.verp_encoding)
    rt = Runtime(
        settings=settings, matcher=matcher, store=store, logger=logger, no_reply=spec.kind == "unix", metrics=metrics
    )
    if not settings.bounce_addresses and not settings.match_null_sender:
        logjson.event(logger, logging.WARNING, "config", "no bounce addresses and match_null_sender off: nothing to do")
    return rt, spec


def _start_fetch(settings: Any, store: Store, logger: logging.Logger) -> Callable[[], None] | int | None:
    """[fetch] enabled: watch the hosted mailbox on a thread beside the milter (bouncemilter.fetch)."""
    if not getattr(settings, "fetch_enabled", False):
        return None
    from .fetch import FetchError, start_service

    try:
        return start_service(settings, store, logger)
    except FetchError as exc:
        logjson.event(logger, logging.ERROR, "start_failed", f"fetch: {exc}")
        return 1


def serve(settings: Any, *, exit_process: bool = True) -> int:
    """Run the milter until SIGTERM/SIGINT; returns (or exits with) the exit status."""
    import milter as _milter

    opened = open_runtime(settings)
    if isinstance(opened, int):
        return opened
    rt, spec = opened
    logger, store, metrics = rt.logger, rt.store, rt.metrics
    BounceMilter.runtime = rt

    stop_fetch = _start_fetch(settings, store, logger)  # before listening: a bad [fetch] stops the start
    if isinstance(stop_fetch, int):
        store.close()
        return stop_fetch
    _register(settings)
    _milter.setconn(spec.libmilter)
    sock_ident: tuple[int, int] | None = None
    try:
        if spec.kind == "unix":
            _prepare_unix_socket(spec, settings)
        _milter.opensocket(True)  # True: remove a stale unix socket left by a previous run
        if spec.kind == "unix":
            _finish_unix_socket(spec, settings)
            st = os.stat(spec.path)
            sock_ident = (st.st_dev, st.st_ino)
    except (OSError, _milter.error, KeyError) as exc:
        logjson.event(logger, logging.ERROR, "start_failed", f"cannot listen on {settings.socket}: {exc}")
        if stop_fetch is not None:
            stop_fetch()
        return 1
    nodelay = set_listener_nodelay(spec.port) if spec.kind != "unix" else 0

    stop = threading.Event()
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

    # The Python handlers run in this (main) thread; libmilter blocks these signals in its own
    # threads, so the kernel delivers them here.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    worker = threading.Thread(target=run_libmilter, name="libmilter", daemon=True)
    worker.start()
    logjson.event(
        logger,
        logging.INFO,
        "start",
        socket=spec.libmilter,
        db=str(settings.db),
        bounce_addresses=[str(getattr(b, "pattern", b)) for b in settings.bounce_addresses],
        tcp_nodelay=bool(nodelay),
        pid=os.getpid(),
    )
    while not stop.wait(1.0):
        pass
    # Drain: no new MTA sessions (smfi_stop() is not used: libmilter would drop the sessions in
    # progress at their next command), let messages in progress reach their reply, then go.
    t_stop = time.perf_counter()
    rt = BounceMilter.runtime
    rt.draining = True
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
    with contextlib.suppress(Exception):
        store.close()
    if metrics is not None:
        with contextlib.suppress(Exception):
            metrics.stop()
    for handler in logger.handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    if exit_process:
        # libmilter's own shutdown waits for its listener's poll timeout (seconds) and would cut
        # sessions short; nothing of ours is left to finish, so leave now.
        os._exit(status["rc"])
    return status["rc"]
