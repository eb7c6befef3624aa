"""The milter protocol in pure Python on one asyncio event loop (`[milter] engine = "asyncio"`).

Same decisions as the pymilter engine (milter.py: bounce matching, ingest(), actions, headers, the
internal-path rule, JSON log, metrics), without libmilter's thread per connection and its C<->Python
callbacks: each read buffer is split into milter packets with struct, the events are handled inline,
and the replies of one buffer go out in one write. The store commit (ingest(): classify + the group
commit) runs in a small thread pool so the loop keeps serving other connections; the end-of-message
reply is sent only after it returns, so nothing is lost.

Protocol: milter version 6 as Postfix speaks it. On a unix socket the connect/helo/mail/rcpt/header/
end-of-headers events are negotiated as "no reply" (Postfix streams them); on TCP every event keeps
its reply so Postfix never has an unanswered packet in flight (see deploy/postfix/README.md, Nagle).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import decide, logjson
from .milter import (
    ERROR_REPLY,
    LISTEN_BACKLOG,
    SHUTDOWN_GRACE,
    TEMPFAIL_REPLY,
    Runtime,
    SocketSpec,
    _finish_unix_socket,
    _prepare_unix_socket,
    _unlink_socket,
    open_runtime,
)

MILTER_VERSION = 6
MAX_PACKET = 1 << 20  # Postfix sends body chunks of at most 64 KiB; anything far larger is not a milter peer
READ_SIZE = 128 * 1024  # one read: a 64 KiB body chunk and then some
STORE_THREADS = 4  # concurrent ingest() calls; GroupCommit turns them into shared transactions

# actions (SMFIF_*)
SMFIF_ADDHDRS = 0x01
SMFIF_DELRCPT = 0x08
# protocol (SMFIP_*)
SMFIP_NOUNKNOWN = 0x100
SMFIP_SKIP = 0x400
SMFIP_NR_CONN = 0x1000
SMFIP_NR_HELO = 0x2000
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_UNKN = 0x20000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_HDR = 0x80
NO_REPLY_EVENTS = SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_EOH

_U32 = struct.Struct("!I")
_OPTNEG = struct.Struct("!III")
_U16 = struct.Struct("!H")


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return _U32.pack(len(data) + 1) + cmd + data


CONTINUE = packet(b"c")
ACCEPT = packet(b"a")
DISCARD = packet(b"d")
TEMPFAIL = packet(b"t")
SKIP = packet(b"s")
_ASYNC = object()  # dispatch result: end of message is being committed, the reply comes later


def replycode(code: str, xcode: str, text: str) -> bytes:
    # libmilter's smfi_setreply + TEMPFAIL: the REPLYCODE packet replaces the plain TEMPFAIL
    return packet(b"y", f"{code} {xcode} {text.replace('%', '%%')}".encode() + b"\0")


def addheader(name: str, value: str) -> bytes:
    return packet(b"h", name.encode("ascii", "replace") + b"\0" + value.encode("utf-8", "replace") + b"\0")


def delrcpt(rcpt: str) -> bytes:
    return packet(b"-", rcpt.encode("utf-8", "surrogateescape") + b"\0")


def _str(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class Session(asyncio.BufferedProtocol):
    """One MTA connection; its messages one after the other.

    A BufferedProtocol: the loop reads into one shared scratch buffer (recv_into) instead of
    allocating asyncio's default 256 KiB bytes object per read, which cost more CPU than parsing
    a whole milter session; the bytes read are appended to this session's input at once.
    """

    def __init__(self, server: AioServer) -> None:
        self.server = server
        self.rt: Runtime = server.rt
        self.transport: asyncio.Transport | None = None
        self.inbuf = bytearray()
        self.busy = False  # an end of message is being committed; input waits in inbuf
        self.last = time.monotonic()
        self.protocol = 0
        self.actions = 0
        self.macro_qid = ""
        self.client_name = ""
        self.client_addr = ""
        self.internal_conn = False
        self.helo = ""
        self.active = False
        self.failed = False
        self._reset()

    # -- transport ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # replies of several packets (ADDHEADER..., ACCEPT) must not wait for the MTA's delayed ACK
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.sessions.discard(self)
        self.transport = None
        if not self.busy:  # a commit in progress finishes the message itself
            self._finish_message()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.last = time.monotonic()
        self.inbuf += self.server.scratch[:nbytes]
        if not self.busy:
            self._process()

    def _process(self) -> None:
        buf = self.inbuf
        n = len(buf)
        pos = 0
        out: list[bytes] = []
        while n - pos >= 5:
            (length,) = _U32.unpack_from(buf, pos)
            if length == 0 or length > MAX_PACKET:
                self._drop(f"bad packet length {length}")
                return
            end = pos + 4 + length
            if end > n:
                break
            cmd = buf[pos + 4]
            payload = bytes(buf[pos + 5 : end])
            pos = end
            reply = self._dispatch(cmd, payload)
            if self.transport is None:  # QUIT, or a protocol error closed the connection
                return
            if reply is None:
                continue
            if reply is _ASYNC:
                self.busy = True
                break
            out.append(reply)  # type: ignore[arg-type]
        del buf[:pos]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _drop(self, why: str) -> None:
        logjson.event(self.rt.logger, logging.WARNING, "protocol_error", why)
        if self.transport is not None:
            self.transport.abort()

    # -- events ------------------------------------------------------------------------------------

    def _dispatch(self, cmd: int, payload: bytes) -> bytes | object | None:
        nr_bit = _NR_BIT.get(cmd, 0)
        try:
            handler = _HANDLERS.get(cmd)
            if handler is None:
                self._drop(f"unknown milter command {chr(cmd)!r}")
                return None
            return handler(self, payload)
        except Exception:
            return self._failure(cmd, nr_bit)

    def _failure(self, cmd: int, nr_bit: int) -> bytes | None:
        """Like milter.guarded: never let an error through; TEMPFAIL (SMTP) / ACCEPT (internal path)."""
        rt = self.rt
        logjson.event(
            rt.logger,
            logging.ERROR,
            "callback_error",
            f"unexpected error handling milter command {chr(cmd)!r}",
            exc_info=True,
            queue_id=self.queue_id,
            internal=self.internal,
            reply="accept" if self.internal else "tempfail",
        )
        if cmd == ord("O"):
            self._drop("option negotiation failed")
            return None
        if cmd in (ord("A"), ord("Q"), ord("K"), ord("D")):  # events that never have a reply
            return None
        if self.protocol & nr_bit:
            self.failed = True
            return None
        self._finish_message()
        return self._default_reply()

    def _default_reply(self) -> bytes:
        return ACCEPT if self.internal else replycode(*ERROR_REPLY)

    def _go(self, nr_bit: int) -> bytes | None:
        return None if self.protocol & nr_bit else CONTINUE

    def on_optneg(self, payload: bytes) -> bytes:
        version, actions, proto = _OPTNEG.unpack_from(payload)
        self.actions = actions & (SMFIF_ADDHDRS | SMFIF_DELRCPT)
        want = SMFIP_NOUNKNOWN | SMFIP_SKIP
        if self.server.no_reply:
            want |= NO_REPLY_EVENTS
        self.protocol = proto & want
        return packet(b"O", _OPTNEG.pack(min(version, MILTER_VERSION), self.actions, self.protocol))

    def on_macro(self, payload: bytes) -> None:
        # only the queue id is used: "i" (or "{i}") in the macros of MAIL, DATA or end of message
        parts = payload[1:].split(b"\0")
        for k in range(0, len(parts) - 1, 2):
            if parts[k] in (b"i", b"{i}"):
                self.macro_qid = _str(parts[k + 1])
        return None

    def on_connect(self, payload: bytes) -> bytes | None:
        host, _, rest = payload.partition(b"\0")
        self.client_name = _str(host)
        self.client_addr = ""
        port = None
        if rest:
            family = rest[:1]
            if family in (b"4", b"6") and len(rest) >= 3:
                (port,) = _U16.unpack_from(rest, 1)
                self.client_addr = _str(rest[3:].split(b"\0", 1)[0])
            elif family == b"L":
                self.client_addr = _str(rest[3:].split(b"\0", 1)[0])
        # Postfix's non_smtpd path (pickup, its own bounces) reports client port 0.
        self.internal_conn = port == 0
        self.internal = self.internal_conn
        return self._go(SMFIP_NR_CONN)

    def on_helo(self, payload: bytes) -> bytes | None:
        self.helo = _str(payload.split(b"\0", 1)[0])
        return self._go(SMFIP_NR_HELO)

    def on_mail(self, payload: bytes) -> bytes | None:
        self._finish_message()  # a previous message on this connection that ended without eom/abort
        self._reset()
        self._begin_message()
        self.t0 = time.perf_counter()
        args = payload.split(b"\0")
        raw = _str(args[0])
        self.envelope_from = decide.bare(raw)
        self.null_sender = self.envelope_from == ""
        # smtpd passes <addr> and <>; the non_smtpd path passes addr and "" (no angle brackets).
        self.internal = self.internal_conn or not raw.strip().startswith("<")
        for param in args[1:]:  # the client's SIZE= is the only size we learn when the body is capped
            if param[:5].upper() == b"SIZE=" and param[5:].isdigit():
                self.declared_size = int(param[5:])
        return self._go(SMFIP_NR_MAIL)

    def on_rcpt(self, payload: bytes) -> bytes | None:
        to = _str(payload.split(b"\0", 1)[0])
        match = self.rt.matcher.match(decide.bare(to))
        if match is not None:
            self.matched.append((to, match))
        else:
            self.others.append(to)
        return self._go(SMFIP_NR_RCPT)

    def on_data(self, payload: bytes) -> bytes:
        rt = self.rt
        if self.failed or (rt.draining and not self.internal):
            # an earlier no-reply event failed, or we are shutting down: like a milter that is down
            # with milter_default_action = tempfail; never tempfail the internal path.
            self.failed = False
            self._finish_message()
            return ACCEPT if self.internal else TEMPFAIL
        self.examine = bool(self.matched) or (self.null_sender and rt.settings.match_null_sender)
        if not self.examine:
            # ordinary mail: accept now, so headers and body never reach us
            if rt.logger.isEnabledFor(logging.DEBUG):
                logjson.event(
                    rt.logger,
                    logging.DEBUG,
                    "skipped",
                    queue_id=self.macro_qid,
                    envelope_from=self.envelope_from,
                    recipients=len(self.others),
                )
            self._finish_message()
            return ACCEPT
        self.queue_id = self.macro_qid
        return CONTINUE

    def on_header(self, payload: bytes) -> bytes | None:
        name, _, rest = payload.partition(b"\0")
        value = rest[:-1] if rest.endswith(b"\0") else rest
        # folded values arrive with bare LF (Postfix) or CRLF: store CRLF like the wire format
        line = name + b": " + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
        self.size += len(line)
        self._append(line)
        if not self.message_id and name.lower() == b"message-id":
            self.message_id = decide.one_line(value.decode("utf-8", "replace"), 998)
        return self._go(SMFIP_NR_HDR)

    def on_eoh(self, payload: bytes) -> bytes | None:
        self.size += 2
        self._append(b"\r\n")
        return self._go(SMFIP_NR_EOH)

    def on_body(self, payload: bytes) -> bytes:
        self.size += len(payload)
        self._append(payload)
        if self.truncated and self.protocol & SMFIP_SKIP:
            return SKIP  # enough to classify; the MTA goes straight to end of message
        return CONTINUE

    def _append(self, data: bytes) -> None:
        room = self.rt.settings.body_cap - len(self.buf)
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self.buf += data

    def on_abort(self, payload: bytes) -> None:
        self._finish_message()
        self._reset()
        return None

    def on_quit(self, payload: bytes) -> None:
        self._finish_message()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        return None

    def on_quit_nc(self, payload: bytes) -> None:
        # the MTA reuses this connection for a new SMTP session: forget the old client
        self._finish_message()
        self._reset()
        self.client_name = self.client_addr = self.helo = self.macro_qid = ""
        self.internal_conn = False
        return None

    def on_unknown(self, payload: bytes) -> bytes | None:
        return self._go(SMFIP_NR_UNKN)

    # -- end of message ----------------------------------------------------------------------------

    def on_eom(self, payload: bytes) -> bytes | object:
        if payload:  # the last body chunk may come with end of message
            self.size += len(payload)
            self._append(payload)
        if self.failed:  # a header/eoh event failed: nothing trustworthy to record
            self.failed = False
            self._finish_message()
            return ACCEPT if self.internal else replycode(*ERROR_REPLY)
        if not self.examine:  # only reachable if the MTA ignored our ACCEPT at DATA
            self._finish_message()
            return ACCEPT
        from .ingest import Envelope, ingest

        t_eom = time.perf_counter()
        self.queue_id = self.macro_qid or self.queue_id
        raw = bytes(self.buf)
        self.buf = bytearray()
        env = Envelope(
            queue_id=self.queue_id,
            client_addr=self.client_addr,
            client_name=self.client_name,
            helo=self.helo,
            envelope_from=self.envelope_from,
            bounce_addresses=[m.address for _, m in self.matched],
            verp_recipients=[m.verp_recipient for _, m in self.matched if m.verp_recipient],
            message_id=self.message_id,  # "" (not None): the headers were already read
            size=max(self.size, self.declared_size) if self.truncated else self.size,
            # identifies a retry of a message without Message-ID (Postfix passes no Received: of its own)
            digest=hashlib.sha256(raw).hexdigest(),
        )
        rt = self.rt
        fut = asyncio.get_running_loop().run_in_executor(
            self.server.pool, ingest, raw, env, rt.settings, rt.writer, rt.classifier
        )
        fut.add_done_callback(lambda f: self._eom_done(f, t_eom))
        return _ASYNC

    def _eom_done(self, fut: asyncio.Future[Any], t_eom: float) -> None:
        try:
            reply = self._eom_reply(fut, t_eom)
        except Exception:
            reply = self._failure(ord("E"), 0) or b""
        self._finish_message()
        self.busy = False
        if self.transport is None:
            return
        self.transport.write(reply)
        if self.inbuf:
            self._process()

    def _eom_reply(self, fut: asyncio.Future[Any], t_eom: float) -> bytes:
        from .ingest import NotStored

        rt = self.rt
        settings = rt.settings
        stored = True
        store_error = ""
        store_ms = 0.0
        try:
            out = fut.result()
            result, action, processing_ms, store_ms = out.classification, out.action, out.classify_ms, out.store_ms
        except NotStored as exc:
            prepared = exc.prepared
            result, action, processing_ms = prepared.classification, prepared.action, prepared.classify_ms
            stored = False
            store_error = str(exc) or exc.__class__.__name__
        if rt.metrics is not None:
            rt.metrics.observe(result, action, time.perf_counter() - t_eom, stored=stored)
        if not stored:
            if not self.internal:
                self._log(result, "tempfail", t_eom, logging.ERROR, stored=False, store_error=store_error)
                return replycode(*TEMPFAIL_REPLY)
            # internal path: deferring would leave Postfix's own bounce stuck; deliver it untouched
            action = "accept"
        action, delete, discard_all = decide.discard_plan(action, [r for r, _ in self.matched], self.others)
        parts = [delrcpt(r) for r in delete] if self.actions & SMFIF_DELRCPT else []
        if not discard_all and settings.add_headers and self.actions & SMFIF_ADDHDRS:
            parts += [addheader(n, v) for n, v in decide.bounce_headers(result, settings.header_prefix)]
        parts.append(DISCARD if discard_all else ACCEPT)
        self._log(
            result,
            action,
            t_eom,
            logging.INFO if stored else logging.ERROR,
            stored=stored,
            store_error=store_error,
            classify_ms=round(processing_ms, 3),
            store_ms=round(store_ms, 3),
        )
        return b"".join(parts)

    def _log(self, result: Any, action: str, t_eom: float, level: int, **more: Any) -> None:
        decide.log_message(
            self.rt.logger,
            level,
            result,
            action,
            t_eom=t_eom,
            t0=self.t0,
            queue_id=self.queue_id,
            envelope_from=self.envelope_from,
            matches=[m for _, m in self.matched],
            message_id=self.message_id,
            size=self.size,
            truncated=self.truncated,
            internal=self.internal,
            **more,
        )

    # -- per-message state -------------------------------------------------------------------------

    def _reset(self) -> None:
        self.envelope_from = ""
        self.null_sender = False
        self.internal = self.internal_conn
        self.matched: list[tuple[str, Any]] = []  # (recipient as the MTA sent it, verp.Match)
        self.others: list[str] = []
        self.examine = False
        self.buf = bytearray()
        self.truncated = False
        self.size = 0
        self.declared_size = 0
        self.message_id = ""
        self.queue_id = ""
        self.t0 = 0.0

    def _begin_message(self) -> None:
        if not self.active:
            self.active = True
            self.rt.inflight.enter()

    def _finish_message(self) -> None:
        if self.active:
            self.active = False
            self.rt.inflight.leave()
        self.buf = bytearray()


_HANDLERS = {
    ord("O"): Session.on_optneg,
    ord("D"): Session.on_macro,
    ord("C"): Session.on_connect,
    ord("H"): Session.on_helo,
    ord("M"): Session.on_mail,
    ord("R"): Session.on_rcpt,
    ord("T"): Session.on_data,
    ord("L"): Session.on_header,
    ord("N"): Session.on_eoh,
    ord("B"): Session.on_body,
    ord("E"): Session.on_eom,
    ord("A"): Session.on_abort,
    ord("Q"): Session.on_quit,
    ord("K"): Session.on_quit_nc,
    ord("U"): Session.on_unknown,
}
_NR_BIT = {
    ord("C"): SMFIP_NR_CONN,
    ord("H"): SMFIP_NR_HELO,
    ord("M"): SMFIP_NR_MAIL,
    ord("R"): SMFIP_NR_RCPT,
    ord("L"): SMFIP_NR_HDR,
    ord("N"): SMFIP_NR_EOH,
    ord("U"): SMFIP_NR_UNKN,
}


class AioServer:
    """The listener, its sessions and the store thread pool."""

    def __init__(self, rt: Runtime, spec: SocketSpec) -> None:
        self.rt = rt
        self.spec = spec
        self.no_reply = spec.kind == "unix" and rt.no_reply
        self.sessions: set[Session] = set()
        self.scratch = memoryview(bytearray(READ_SIZE))  # read buffer of every session (one loop thread)
        self.pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="bm-store")
        self.server: asyncio.AbstractServer | None = None
        self.sock_ident: tuple[int, int] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        if spec.kind == "unix":
            _prepare_unix_socket(spec, self.rt.settings)
            with contextlib.suppress(FileNotFoundError):  # a stale socket of a previous run
                os.unlink(spec.path)
            self.server = await loop.create_unix_server(
                lambda: Session(self), spec.path, backlog=LISTEN_BACKLOG, start_serving=True
            )
            _finish_unix_socket(spec, self.rt.settings)
            st = os.stat(spec.path)
            self.sock_ident = (st.st_dev, st.st_ino)
        else:
            self.server = await loop.create_server(
                lambda: Session(self), spec.host, spec.port, backlog=LISTEN_BACKLOG, reuse_address=True
            )
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections idle longer than milter.timeout (libmilter's read timeout)."""
        timeout = float(getattr(self.rt.settings, "milter_timeout", 240) or 240)
        while True:
            await asyncio.sleep(min(5.0, timeout / 2))
            now = time.monotonic()
            for s in list(self.sessions):
                if not s.busy and now - s.last > timeout and s.transport is not None:
                    s.transport.close()

    async def drain(self, grace: float = SHUTDOWN_GRACE) -> tuple[int, bool]:
        """Stop accepting, let messages in progress reach their reply; returns (in flight at stop, drained)."""
        self.rt.draining = True
        if self.server is not None:
            self.server.close()
        if self.spec.kind == "unix":
            _unlink_socket(self.spec.path, self.sock_ident)
        busy = self.rt.inflight.count
        deadline = time.monotonic() + grace
        while self.rt.inflight.count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        idle = self.rt.inflight.count == 0
        if self._sweeper is not None:
            self._sweeper.cancel()
        for s in list(self.sessions):
            if s.transport is not None:
                s.transport.close()
        self.pool.shutdown(wait=True)
        return busy, idle


def serve(settings: Any) -> int:
    """Run the asyncio engine until SIGTERM/SIGINT; returns the exit status."""


    opened = open_runtime(settings)
    if isinstance(opened, int):
        return opened
    rt, spec = opened
    logger, store, metrics = rt.logger, rt.store, rt.metrics
    try:
        return asyncio.run(_main(rt, spec, logger))
    finally:
        with contextlib.suppress(Exception):
            store.close()
        if metrics is not None:
            with contextlib.suppress(Exception):
                metrics.stop()
        for handler in logger.handlers:
            with contextlib.suppress(Exception):
                handler.flush()


async def _main(rt: Runtime, spec: SocketSpec, logger: logging.Logger) -> int:
    loop = asyncio.get_running_loop()
    server = AioServer(rt, spec)
    try:
        await server.start()
    except (OSError, KeyError) as exc:
        logjson.event(logger, logging.ERROR, "start_failed", f"cannot listen on {rt.settings.socket}: {exc}")
        server.pool.shutdown(wait=False)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logjson.event(
        logger,
        logging.INFO,
        "start",
        socket=spec.libmilter,
        db=str(rt.settings.db),
        bounce_addresses=[str(getattr(b, "pattern", b)) for b in rt.settings.bounce_addresses],
        engine="asyncio",
        tcp_nodelay=spec.kind != "unix",
        pid=os.getpid(),
    )
    await stop.wait()
    t_stop = time.perf_counter()
    busy, idle = await server.drain()
    logjson.event(
        logger,
        logging.INFO,
        "stop",
        in_flight_at_stop=busy,
        drained=idle,
        shutdown_ms=round((time.perf_counter() - t_stop) * 1000, 1),
    )
    return 0
