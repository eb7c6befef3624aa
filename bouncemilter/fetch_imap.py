"""IMAP for `bouncemilter.fetch`: one logged-in connection with the folder selected, read in UID batches.

imaplib from the standard library speaks the protocol; what it lacks before Python 3.14 is written here:
IDLE (RFC 2177), modified UTF-7 folder names, and parsing FETCH results by UID. Per batch: one FETCH of the
messages (BODY.PEEK[]<0.N>, capped), one commit, then STORE/MOVE/EXPUNGE grouped per action. PEEK never sets
\\Seen, so a message is marked seen only by an action, after its rows are committed.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .fetch import (
    Credentials,
    FetchError,
    MailboxURL,
    Options,
    Recorder,
    Stats,
    describe,
    in_batches,
    is_loopback,
    server_text,
    tls_context,
    xoauth2,
)

IDLE_RENEW = 29 * 60  # RFC 2177: re-issue IDLE before the server's 30-minute inactivity timeout


def imap_utf7(name: str) -> str:
    """RFC 3501 modified UTF-7 for a mailbox name (non-ASCII folder names)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.append("&" + data.decode() + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quote(name: str) -> str:
    return '"' + imap_utf7(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_sets(uids: Sequence[int]) -> str:
    """'1:5,7,9:12' for sorted UIDs."""
    parts: list[str] = []
    start = prev = None
    for uid in uids:
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_EXISTS = re.compile(rb"^\* \d+ (?:EXISTS|RECENT)\b")
_LIST_DELIM = re.compile(rb'^\([^)]*\) (?:"((?:[^"\\]|\\.)*)"|NIL) ')


def parse_fetch(data: list[Any]) -> dict[int, tuple[bytes, int]]:
    """uid -> (literal, RFC822.SIZE or -1) from imaplib's FETCH data (one literal per message requested)."""
    out: dict[int, tuple[bytes, int]] = {}
    current: list[Any] | None = None  # [head text, literal]

    def finish() -> None:
        if current is not None:
            text = current[0]
            m = _UID.search(text)
            if m:
                size = _SIZE.search(text)
                out[int(m.group(1))] = (current[1], int(size.group(1)) if size else -1)

    for item in data:
        if isinstance(item, tuple):
            finish()
            current = [item[0], item[1]]
        elif isinstance(item, bytes) and current is not None and item[:1] in (b")", b" "):
            current[0] += item  # the rest of this message's response, after its literal
        else:
            finish()  # an unsolicited response (another client changed flags) or a NIL body
            current = None
    finish()
    return out


class ImapSession:
    """One logged-in IMAP connection with the folder selected."""

    snapshot = False  # the folder is watched in place (IDLE) and passes continue above the last UID

    def __init__(self, url: MailboxURL, creds: Credentials, opts: Options) -> None:
        self.url = url
        self.opts = opts
        self.conn: imaplib.IMAP4 | None = None
        self.caps: set[str] = set()
        self.delimiter = "/"
        self.prefix = ""
        self.uidvalidity = 0
        self.last_uid = 0  # highest UID handled in this session (a message at or below it was acted on)
        self._folders: set[str] = set()
        self._connect(creds)

    # -- connection

    def _connect(self, creds: Credentials) -> None:
        url, opts = self.url, self.opts
        try:
            if url.implicit_tls:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    url.host, url.port, ssl_context=tls_context(opts), timeout=opts.timeout
                )
            else:
                conn = imaplib.IMAP4(url.host, url.port, timeout=opts.timeout)
                if "STARTTLS" in conn.capabilities:
                    conn.starttls(tls_context(opts))
                elif not is_loopback(url.host):
                    conn.shutdown()
                    raise FetchError(
                        f"{url.address} does not offer STARTTLS: the password would cross the network in clear "
                        f"(use imaps:// if the server has it on another port)"
                    )
        except FetchError:
            raise
        except (OSError, imaplib.IMAP4.error) as exc:
            raise FetchError(describe(exc, url)) from None
        self.conn = conn
        try:
            if creds.token_file:
                token = creds.token()
                conn.authenticate("XOAUTH2", lambda _challenge: xoauth2(url.user, token))
            else:
                assert creds.password is not None
                conn.login(url.user, creds.password)
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise FetchError(describe(exc, url)) from None
        except imaplib.IMAP4.error as exc:
            self.close()
            raise FetchError(f"login as {url.user} at {url.address} failed: {server_text(exc)}") from None
        except OSError as exc:
            self.close()
            raise FetchError(describe(exc, url)) from None
        try:
            self._discover()
            self._select()
        except (OSError, imaplib.IMAP4.abort) as exc:
            self.close()
            raise FetchError(describe(exc, url)) from None
        except FetchError:
            self.close()
            raise

    def _discover(self) -> None:
        conn = self.conn
        assert conn is not None
        typ, data = conn.capability()
        if typ == "OK" and data and data[0]:
            self.caps = {c.upper() for c in data[0].decode("ascii", "replace").split()}
        typ, data = conn.list('""', '""')
        if typ == "OK" and data and isinstance(data[0], bytes):
            m = _LIST_DELIM.match(data[0])
            if m and m.group(1):
                self.delimiter = m.group(1).decode().replace("\\\\", "\\")
        if "NAMESPACE" in self.caps:
            typ, data = conn.namespace()
            m = re.match(rb'^\(\("((?:[^"\\]|\\.)*)" ', data[0] or b"") if typ == "OK" and data else None
            if m:
                self.prefix = m.group(1).decode()

    def server_name(self, name: str) -> str:
        """A folder as configured ('/'-separated) -> as this server names it (separator, namespace prefix)."""
        if self.delimiter != "/":
            name = name.replace("/", self.delimiter)
        if self.prefix and name.upper() != "INBOX" and not name.startswith(self.prefix):
            name = self.prefix + name
        return name

    def _select(self) -> None:
        conn = self.conn
        assert conn is not None
        folder = self.server_name(self.url.folder)
        typ, data = conn.select(_quote(folder))
        if typ != "OK":
            raise FetchError(
                f"folder {self.url.folder!r} not found in {self.url.user}'s mailbox at {self.url.address}: "
                f"{server_text(data)}"
            )
        _, validity = conn.response("UIDVALIDITY")
        value = int(validity[0]) if validity and validity[0] else 0
        if value != self.uidvalidity:
            self.uidvalidity = value
            self.last_uid = 0  # the server renumbered the folder: every message is new to this session

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.logout()
        with contextlib.suppress(Exception):
            conn.shutdown()

    # -- a pass over the folder

    def pending(self) -> list[int]:
        """UIDs above the session's high-water mark that are not flagged deleted, in order."""
        conn = self.conn
        assert conn is not None
        typ, data = conn.uid("SEARCH", f"UID {self.last_uid + 1}:*", "NOT", "DELETED")
        if typ != "OK":
            raise FetchError(f"{self.url.address}: SEARCH failed: {server_text(data)}")
        uids = sorted({int(u) for chunk in data if chunk for u in chunk.split()})
        return [u for u in uids if u > self.last_uid]  # "n:*" always includes the highest UID

    def run_pass(
        self, recorder: Recorder, stats: Stats, progress: Any = None, stop: threading.Event | None = None
    ) -> None:
        uids = self.pending()
        stats.listed += len(uids)

        def handle(batch: Sequence[int]) -> None:
            self._batch(batch, recorder, stats)
            self.last_uid = batch[-1]

        in_batches(uids, self.opts.batch, handle, progress, stop)

    def _fetch(self, uids: Sequence[int], items: str) -> dict[int, tuple[bytes, int]]:
        conn = self.conn
        assert conn is not None
        typ, data = conn.uid("FETCH", uid_sets(uids), items)
        if typ != "OK":
            raise FetchError(f"{self.url.address}: FETCH failed: {server_text(data)}")
        return parse_fetch(data)

    def _batch(self, uids: Sequence[int], recorder: Recorder, stats: Stats) -> None:
        cap = self.opts.max_size
        messages: list[tuple[int, bytes, int]] = []
        for uid, (raw, size) in sorted(self._fetch(uids, f"(UID RFC822.SIZE BODY.PEEK[]<0.{cap}>)").items()):
            if size > cap:
                stats.truncated += 1
            messages.append((uid, raw, size if size >= 0 else len(raw)))
        done = recorder.commit(messages, stats)  # committed: from here on the server may be changed
        self._act(done, stats)

    def _act(self, categories: Mapping[int, str], stats: Stats) -> None:
        groups: dict[tuple[str, str], list[int]] = {}
        for uid, cat in categories.items():
            groups.setdefault(self.opts.after[cat], []).append(uid)
        for (verb, folder), uids in sorted(groups.items()):
            uids.sort()
            if verb == "leave":
                stats.left += len(uids)
            elif verb == "seen":
                self._store(uids, "+FLAGS.SILENT", r"(\Seen)")
                stats.seen += len(uids)
            elif verb == "delete":
                self._store(uids, "+FLAGS.SILENT", r"(\Deleted)")
                self._expunge(uids)
                stats.deleted += len(uids)
            else:
                self._move(uids, folder)
                stats.moved[folder] = stats.moved.get(folder, 0) + len(uids)

    def _command(self, *args: str) -> None:
        conn = self.conn
        assert conn is not None
        typ, data = conn.uid(*args)
        if typ != "OK":
            raise FetchError(f"{self.url.address}: UID {args[0]} failed: {server_text(data)}")

    def _store(self, uids: Sequence[int], how: str, flags: str) -> None:
        self._command("STORE", uid_sets(uids), how, flags)

    def _expunge(self, uids: Sequence[int]) -> None:
        conn = self.conn
        assert conn is not None
        if "UIDPLUS" in self.caps:
            self._command("EXPUNGE", uid_sets(uids))
        else:  # without UID EXPUNGE every \Deleted message of the folder goes, as in any mail client
            conn.expunge()

    def _ensure_folder(self, folder: str) -> str:
        name = self.server_name(folder)
        if name in self._folders:
            return name
        conn = self.conn
        assert conn is not None
        typ, data = conn.list('""', _quote(name))
        if typ != "OK" or not any(isinstance(d, bytes) and d for d in data):
            typ, data = conn.create(_quote(name))
            if typ != "OK":
                raise FetchError(f"{self.url.address}: cannot create folder {folder!r}: {server_text(data)}")
            conn.subscribe(_quote(name))  # so that mail clients show it
        self._folders.add(name)
        return name

    def _move(self, uids: Sequence[int], folder: str) -> None:
        name = self._ensure_folder(folder)
        self._store(uids, "+FLAGS.SILENT", r"(\Seen)")  # "mark seen and move": read in the target folder too
        if "MOVE" in self.caps:
            self._command("MOVE", uid_sets(uids), _quote(name))
        else:
            self._command("COPY", uid_sets(uids), _quote(name))
            self._store(uids, "+FLAGS.SILENT", r"(\Deleted)")
            self._expunge(uids)

    # -- waiting for new mail

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Wait for new mail up to `seconds` (IDLE if the server has it, else NOOP polls); True if some came.

        Returns early, False, when `stop` is set.
        """
        if "IDLE" in self.caps:
            return self._idle(min(seconds, IDLE_RENEW), stop)
        deadline = time.monotonic() + seconds
        while not stop.wait(min(1.0, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline:
                break
        conn = self.conn
        assert conn is not None
        conn.noop()
        return True

    def _idle(self, seconds: float, stop: threading.Event) -> bool:
        conn = self.conn
        assert conn is not None
        tag = conn._new_tag()  # imaplib (before Python 3.14) has no IDLE: spoken here over its connection
        conn.send(tag + b" IDLE\r\n")
        line = conn._get_line()
        while line.startswith(b"* "):  # untagged data sent before the continuation
            if _EXISTS.match(line):
                seconds = 0
            line = conn._get_line()
        if not line.startswith(b"+"):
            raise FetchError(f"{self.url.address}: IDLE refused: {line.decode('utf-8', 'replace')}")
        sock = conn.sock
        changed = seconds == 0
        deadline = time.monotonic() + seconds
        sock.settimeout(1.0)  # wake up every second to notice `stop`
        try:
            while not changed and not stop.is_set() and time.monotonic() < deadline:
                try:
                    line = conn._get_line()
                except TimeoutError:
                    continue
                if line.startswith(b"* BYE"):
                    raise imaplib.IMAP4.abort(line.decode("utf-8", "replace"))
                changed = bool(_EXISTS.match(line))
        finally:
            sock.settimeout(self.opts.timeout)
        conn.send(b"DONE\r\n")
        while True:
            line = conn._get_line()
            if line.startswith(tag):
                break
            if _EXISTS.match(line):
                changed = True
        if not line.split(None, 2)[1:2] == [b"OK"]:
            raise FetchError(f"{self.url.address}: IDLE ended with {line.decode('utf-8', 'replace')}")
        return changed
