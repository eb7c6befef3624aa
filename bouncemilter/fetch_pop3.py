"""POP3 for `bouncemilter.fetch`: one logged-in connection, a snapshot of the maildrop per session.

poplib from the standard library speaks the protocol; RETR is read here instead (poplib keeps a
whole message in memory and rejects lines over 2,048 bytes, which real mail has): at most `max_size` bytes
are kept, the rest is read off the wire and dropped. POP3 has no folders and no flags: after its rows are
committed a message is left or deleted, and deletions take effect at QUIT, so a connection lost before it
deletes nothing.
"""

from __future__ import annotations

import base64
import contextlib
import poplib
import threading
from collections.abc import Sequence
from typing import Any

from .fetch import (
    AFTER_DEFAULTS,
    Credentials,
    FetchError,
    MailboxURL,
    Options,
    Recorder,
    Stats,
    describe,
    in_batches,
    is_loopback,
    parse_after,
    server_text,
    tls_context,
    warn_once,
    xoauth2,
)

POP3_LINE_MAX = 65536  # a longer line is read in pieces


class Pop3Session:
    """One logged-in POP3 connection. POP3 has no folders and no flags: a message is left or deleted
    (deletions take effect at QUIT, so a connection lost before it deletes nothing)."""

    snapshot = True  # the maildrop a session sees does not change: new mail needs a new session

    def __init__(self, url: MailboxURL, creds: Credentials, opts: Options) -> None:
        self.url = url
        self.opts = opts
        self.conn: poplib.POP3 | None = None
        self._handled: set[str] = set()  # UIDLs acted on in this session
        self._connect(creds)
        for cat, (verb, folder) in opts.after.items():
            # the defaults (move) quietly mean "leave" over POP3; an action asked for on purpose gets a word
            if verb in ("seen", "move") and (verb, folder) != parse_after(AFTER_DEFAULTS[cat]):
                warn_once(
                    f"{url}: POP3 has no folders or flags: {cat} messages ({verb}) are left on the server "
                    "(use delete, or IMAP)"
                )

    def _connect(self, creds: Credentials) -> None:
        url, opts = self.url, self.opts
        try:
            if url.implicit_tls:
                conn: poplib.POP3 = poplib.POP3_SSL(url.host, url.port, context=tls_context(opts), timeout=opts.timeout)
            else:
                conn = poplib.POP3(url.host, url.port, timeout=opts.timeout)
                try:
                    caps = conn.capa()
                except poplib.error_proto:
                    caps = {}
                if "STLS" in caps:
                    conn.stls(tls_context(opts))
                elif not is_loopback(url.host):
                    conn.close()
                    raise FetchError(
                        f"{url.address} does not offer STLS: the password would cross the network in clear "
                        "(use pop3s:// if the server has it on another port)"
                    )
        except FetchError:
            raise
        except (OSError, poplib.error_proto) as exc:
            raise FetchError(describe(exc, url)) from None
        self.conn = conn
        try:
            if creds.token_file:
                resp = conn._shortcmd("AUTH XOAUTH2 " + base64.b64encode(xoauth2(url.user, creds.token())).decode())
                if not resp.startswith(b"+OK"):  # "+ challenge" (RFC 7628: an error): answer empty for the -ERR
                    conn._shortcmd("")
            else:
                assert creds.password is not None
                conn.user(url.user)
                conn.pass_(creds.password)
        except poplib.error_proto as exc:
            self.close(quit_=False)
            raise FetchError(f"login as {url.user} at {url.address} failed: {server_text(exc)}") from None
        except OSError as exc:
            self.close(quit_=False)
            raise FetchError(describe(exc, url)) from None

    def close(self, quit_: bool = True) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if quit_:
            with contextlib.suppress(Exception):
                conn.quit()  # the deletions of this session happen now
        with contextlib.suppress(Exception):
            conn.close()

    def finish(self) -> None:
        """QUIT: the server deletes the messages marked deleted; an error here means they stay (harmless)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, poplib.error_proto) as exc:
            raise FetchError(f"{self.url.address}: QUIT failed, nothing deleted: {server_text(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _multiline(self, command: str, cap: int) -> bytes:
        """A multi-line response (RETR/TOP), dot-unstuffed, keeping at most `cap` bytes (the rest is read and
        dropped, so the connection stays in step)."""
        conn = self.conn
        assert conn is not None
        conn._putcmd(command)
        conn._getresp()
        kept: list[bytes] = []
        size = 0
        at_line_start = True
        while True:
            line = conn.file.readline(POP3_LINE_MAX)
            if not line:
                raise EOFError("connection closed in the middle of a message")
            if at_line_start:
                if line in (b".\r\n", b".\n"):
                    break
                if line.startswith(b".."):
                    line = line[1:]
            at_line_start = line.endswith(b"\n")
            if size < cap:
                kept.append(line[: cap - size])
                size += len(kept[-1])
        return b"".join(kept)

    def pending(self) -> list[tuple[int, str, int]]:
        """(number, UIDL, size) of the messages not handled yet in this session."""
        conn = self.conn
        assert conn is not None
        _, lines, _ = conn.uidl()
        uidls = {}
        for line in lines:
            num, _, uid = line.decode("utf-8", "replace").partition(" ")
            uidls[int(num)] = uid.strip()
        _, lines, _ = conn.list()
        sizes = {int(a): int(b) for a, b in (ln.split()[:2] for ln in lines)}
        return [(n, uidls.get(n, ""), sizes.get(n, 0)) for n in sorted(sizes) if uidls.get(n, "") not in self._handled]

    def run_pass(
        self, recorder: Recorder, stats: Stats, progress: Any = None, stop: threading.Event | None = None
    ) -> None:
        msgs = self.pending()
        stats.listed += len(msgs)
        in_batches(msgs, self.opts.batch, lambda batch: self._batch(batch, recorder, stats), progress, stop)

    def _batch(self, batch: Sequence[tuple[int, str, int]], recorder: Recorder, stats: Stats) -> None:
        messages = []
        for num, _uid, size in batch:
            raw = self._multiline(f"RETR {num}", self.opts.max_size)
            if size > self.opts.max_size:
                stats.truncated += 1
            messages.append((num, raw, size))
        done = recorder.commit(messages, stats)
        conn = self.conn
        assert conn is not None
        for num, uid, _size in batch:
            verb, _ = self.opts.after[done[num]]
            if verb == "delete":
                conn.dele(num)
                stats.deleted += 1
            else:
                stats.left += 1
            self._handled.add(uid)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """POP3 cannot be told about new mail, and shows a snapshot per session: reconnect after `seconds`."""
        stop.wait(seconds)
        return False
