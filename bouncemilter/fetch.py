"""Fetch bounces from a hosted mailbox over IMAP or POP3 and record them like the milter does.

For senders whose return path ends in a mailbox they cannot put a milter in front of (Microsoft 365,
Google Workspace, a provider's IMAP). Each message goes through `ingest.ingest_many()` (classify, record,
suppression policy) with the envelope facts the mailbox kept (`ingest.mailbox_envelope`), so a fetched
message gets the same row and the same idempotency key as an imported one.

Order of work per batch of messages, which is what makes a crash harmless:
  1. read the batch (IMAP: headers first, then the bodies of the messages the store does not have yet),
  2. commit its rows (one transaction),
  3. only then act on the server: leave, mark seen, move to a folder or delete, per kind (`AFTER_DEFAULTS`).
A crash between 2 and 3 leaves the messages where they were; the next run finds their rows by their
idempotency key, stores nothing twice, and acts on them then.

The standard library's imaplib and poplib speak the protocols: they are maintained with Python, need no
dependency, and what they lack (IDLE, MOVE results, modified UTF-7, a byte-capped RETR) is small and
written here. A session holds one connection per mailbox, fetches in UID-range batches, and never fetches
more than `max_size` bytes of a message (BODY.PEEK[]<0.N>: the classifier reads the report, not the
attachments; POP3 reads the rest of a big message off the wire and drops it).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import ipaddress
import os
import poplib
import re
import socket
import sqlite3
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from . import ingest
from .classify import Classification
from .store import Store, StoreError, dedup_key

FETCH_ACTION = "fetched"  # `messages.action` of fetched rows (the milter's are accept/discard, import's "imported")
BATCH = 200  # messages per UID range / per store transaction
MAX_SIZE = 1048576  # bytes of a message fetched (the milter's body cap: the classifier needs no more)
TIMEOUT = 60.0  # seconds a server may stay silent during a command
IDLE_RENEW = 29 * 60  # RFC 2177: re-issue IDLE before the server's 30-minute inactivity timeout
POP3_LINE_MAX = 65536  # a longer line is read in pieces (poplib's own limit, 2048, rejects real-world mail)

SCHEMES: dict[str, tuple[str, bool, int]] = {  # scheme -> (protocol, TLS from the first byte, default port)
    "imap": ("imap", False, 143),
    "imaps": ("imap", True, 993),
    "pop3": ("pop3", False, 110),
    "pop3s": ("pop3", True, 995),
}

# What happens on the server to a message once its rows are committed, per category (`category()`).
CATEGORIES: tuple[str, ...] = ("hard", "soft", "delay", "complaint", "auto_reply", "delivered", "unrecognised")
AFTER_DEFAULTS: dict[str, str] = {
    "hard": "move:Bounces/Hard",
    "soft": "move:Bounces/Soft",
    "delay": "move:Bounces/Soft",  # a delay warning is a soft, passing failure
    "complaint": "move:Bounces/Complaints",
    "auto_reply": "move:Bounces/Unrecognised",  # not a failure of the address: out of the way, kept for a look
    "delivered": "move:Bounces/Unrecognised",
    "unrecognised": "move:Bounces/Unrecognised",
}
# The headers that make the idempotency key (ingest.mailbox_envelope); fetched first so that a message the
# store already has is not downloaded again.
KEY_HEADERS = "MESSAGE-ID RETURN-PATH X-ORIGINAL-TO DELIVERED-TO TO CC"


class FetchError(Exception):
    """A one-line problem with the mailbox or the server (connection, TLS, login, folder, lost connection)."""


class FetchStoreError(FetchError):
    """The store failed; every batch before it is committed and acted on."""


# --------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MailboxURL:
    scheme: str
    user: str
    host: str
    port: int
    folder: str  # IMAP: '/'-separated as given (translated to the server's separator); POP3: ""

    @property
    def protocol(self) -> str:
        return SCHEMES[self.scheme][0]

    @property
    def implicit_tls(self) -> bool:
        return SCHEMES[self.scheme][1]

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:  # never carries a secret: there is none in it
        folder = f"/{self.folder}" if self.folder else ""
        return f"{self.scheme}://{self.user}@{self.address}{folder}"


def parse_url(text: str) -> MailboxURL:
    """imap[s]://user@host[:port]/FOLDER or pop3[s]://user@host[:port]; ValueError with the reason.

    The user may be an e-mail address, with its '@' as is or as %40. A password in the URL is refused:
    it would show in `ps`, shell history and logs.
    """
    parts = urlsplit(text.strip())
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"{text!r}: the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    scheme = parts.scheme.lower()
    if "@" not in parts.netloc:
        raise ValueError(f"{text!r}: no user (imap://user@host/FOLDER)")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if ":" in userinfo:
        raise ValueError(
            f"{scheme}://{unquote(userinfo.partition(':')[0])}:***@{hostport}: a password in the URL is not "
            "accepted (it shows in ps and logs); use --password-file or --password-env"
        )
    user = unquote(userinfo)
    try:
        host = parts.hostname or ""
        port = parts.port or SCHEMES[scheme][2]
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if not user or not host:
        raise ValueError(f"{text!r}: user and host are required (imap://user@host/FOLDER)")
    folder = unquote(parts.path.lstrip("/"))
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r}: no query or fragment allowed (a folder with '?' or '#' is written %3F, %23)")
    if SCHEMES[scheme][0] == "imap":
        folder = folder.rstrip("/") or "INBOX"
    elif folder and folder.upper() != "INBOX":
        raise ValueError(f"{text!r}: POP3 has no folders (only the inbox)")
    else:
        folder = ""
    return MailboxURL(scheme, user, host, port, folder)


def parse_after(value: str) -> tuple[str, str]:
    """'leave' | 'seen' | 'delete' | 'move:FOLDER' -> (verb, folder); ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r}: must be a string")
    verb, sep, folder = value.strip().partition(":")
    verb = verb.strip().lower()
    if verb in ("leave", "seen", "delete") and not sep:
        return verb, ""
    if verb == "move" and folder.strip():
        return verb, folder.strip().strip("/")
    raise ValueError(f"{value!r}: must be leave, seen, delete or move:FOLDER (e.g. move:Bounces/Hard)")


def after_map(overrides: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The per-category actions: AFTER_DEFAULTS with `overrides` applied; ValueError names the category."""
    out = {}
    given = dict(overrides or {})
    for name in given:
        if name not in CATEGORIES:
            raise ValueError(f"{name}: unknown category (known: {', '.join(CATEGORIES)})")
    for name in CATEGORIES:
        try:
            out[name] = parse_after(given.get(name, AFTER_DEFAULTS[name]))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return out


@dataclass
class Credentials:
    """A password, or an OAuth2 bearer token re-read from its file at every login (a refresher rewrites it)."""

    password: str | None = None
    token_file: str | None = None

    def token(self) -> str:
        assert self.token_file is not None
        return read_secret(self.token_file, "OAuth2 token file")


def read_secret(path: str, what: str = "password file") -> str:
    """The first line of a secret file, without its line ending; FetchError when missing or empty."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(65536)
            mode = os.fstat(fh.fileno()).st_mode
    except OSError as exc:
        raise FetchError(f"{what} {path}: {exc.strerror or exc}") from None
    secret = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    if not secret:
        raise FetchError(f"{what} {path}: empty")
    if mode & stat.S_IROTH:
        _warn_once(f"{what} {path} is readable by every user of this machine (chmod 600)")
    return secret


def credentials(
    password_file: str | None = None, password_env: str | None = None, token_file: str | None = None
) -> Credentials:
    """Exactly one source of the secret; the password is read now (a token at every login)."""
    given = [n for n, v in (("--password-file", password_file), ("--password-env", password_env),
                            ("--oauth2-token-file", token_file)) if v]  # fmt: skip
    if len(given) != 1:
        raise FetchError(
            "give exactly one of --password-file FILE, --password-env VAR or --oauth2-token-file FILE"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if token_file:
        creds = Credentials(token_file=token_file)
        creds.token()  # a missing file is a start-up error, not a failure at the first login
        return creds
    if password_file:
        return Credentials(password=read_secret(password_file))
    assert password_env
    value = os.environ.get(password_env)
    if not value:
        raise FetchError(f"environment variable {password_env} is not set or empty")
    return Credentials(password=value)


@dataclass
class Options:
    after: dict[str, tuple[str, str]] = field(default_factory=after_map)
    batch: int = BATCH
    max_size: int = MAX_SIZE
    timeout: float = TIMEOUT
    ca_file: str | None = None
    insecure: bool = False  # tests only: no certificate or host name check


_warned: set[str] = set()
warn: Callable[[str], None] = lambda msg: None  # noqa: E731  (the CLI and the service set where warnings go)


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warn(msg)


# ----------------------------------------------------------------------------------------------- the outcome


def category(result: Classification) -> str:
    """Which of CATEGORIES a classified message belongs to (decides what happens to it on the server)."""
    if result.error or result.kind == "not_bounce":
        return "unrecognised"
    if result.kind == "bounce":
        return "hard" if any(r.hard for r in result.recipients) else "soft"
    return result.kind if result.kind in CATEGORIES else "unrecognised"


def _stored_category(kind: str, error: str, hard: int) -> str:
    if error or kind == "not_bounce":
        return "unrecognised"
    if kind == "bounce":
        return "hard" if hard else "soft"
    return kind if kind in CATEGORIES else "unrecognised"


@dataclass
class Stats:
    listed: int = 0  # messages found in the folder for this pass
    new: int = 0  # rows inserted
    already: int = 0  # messages the store had already
    truncated: int = 0  # messages larger than max_size (only their start was read)
    kinds: dict[str, int] = field(default_factory=dict)  # new rows per kind
    moved: dict[str, int] = field(default_factory=dict)  # folder -> messages moved there
    seen: int = 0
    deleted: int = 0
    left: int = 0

    def add(self, other: Stats) -> None:
        for name in ("listed", "new", "already", "truncated", "seen", "deleted", "left"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.kinds, other.kinds), (self.moved, other.moved)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "new": self.new,
            "already_stored": self.already,
            "truncated": self.truncated,
            "kinds": dict(sorted(self.kinds.items())),
            "moved": dict(sorted(self.moved.items())),
            "marked_seen": self.seen,
            "deleted": self.deleted,
            "left": self.left,
        }


class _StoredRows:
    """What the store already has: idempotency key -> row, and a row's category (a reader connection)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        return self._conn

    def categories(self, keys: Sequence[str]) -> dict[str, str]:
        """key -> category of the stored row, for the keys the store has."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        sql = (
            "SELECT m.dedup_key, m.kind, m.error, COALESCE(MAX(r.hard), 0) FROM messages m "
            f"LEFT JOIN recipients r ON r.message_id = m.id WHERE m.dedup_key IN ({marks}) GROUP BY m.id"
        )
        try:
            return {k: _stored_category(kind, err, hard) for k, kind, err, hard in self._db().execute(sql, list(keys))}
        except sqlite3.Error as exc:
            raise FetchStoreError(f"{self.path}: cannot read the store: {exc}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _key_of(raw: bytes, matcher: Any) -> str | None:
    """The idempotency key a message will be stored under (ingest.build_meta's), or None if the headers
    alone cannot tell (no Message-ID: the key is a digest of the whole message)."""
    env = ingest.mailbox_envelope(raw, matcher)
    if not env.message_id:
        return None
    return dedup_key(ingest.build_meta(raw, env))


class Recorder:
    """Commits a batch of fetched messages through ingest_many and says what each one is."""

    def __init__(self, store: Store, settings: Any, matcher: Any) -> None:
        self.store = store
        self.settings = settings
        self.matcher = matcher
        self.rows = _StoredRows(store.path, store.timeout)

    def known(self, headers: Mapping[Any, bytes]) -> dict[Any, str]:
        """ref -> category for the messages (given by their key headers) that the store already has."""
        keys = {ref: _key_of(raw, self.matcher) for ref, raw in headers.items()}
        found = self.rows.categories([k for k in set(keys.values()) if k])
        return {ref: found[k] for ref, k in keys.items() if k in found}

    def commit(self, messages: Sequence[tuple[Any, bytes, int]], stats: Stats) -> dict[Any, str]:
        """Record (ref, raw, full size) messages in one transaction; ref -> category once committed."""
        if not messages:
            return {}

        def items() -> Iterable[tuple[bytes, ingest.Envelope]]:
            for _ref, raw, size in messages:
                env = ingest.mailbox_envelope(raw, self.matcher)
                yield raw, ingest.Envelope(**{**env.__dict__, "size": size})

        try:
            outcomes = list(
                ingest.ingest_many(items(), self.settings, self.store, len(messages) + 1, action=FETCH_ACTION)
            )
        except StoreError as exc:
            raise FetchStoreError(f"store failed: {exc}") from None
        out: dict[Any, str] = {}
        unknown: dict[Any, int] = {}
        for (ref, _raw, _size), outcome in zip(messages, outcomes, strict=True):
            if outcome.inserted and outcome.classification is not None:
                stats.new += 1
                kind = outcome.classification.kind
                stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
                out[ref] = category(outcome.classification)
            else:
                stats.already += 1
                if outcome.classification is not None:
                    out[ref] = category(outcome.classification)
                else:
                    unknown[ref] = outcome.row_id
        if unknown:  # already stored (the same message twice in the mailbox, or the milter had it)
            out.update(self._by_row(unknown))
        return out

    def _by_row(self, refs: Mapping[Any, int]) -> dict[Any, str]:
        ids = sorted(set(refs.values()))
        sql = (
            "SELECT m.id, m.kind, m.error, COALESCE(MAX(r.hard), 0) FROM messages m LEFT JOIN recipients r "
            f"ON r.message_id = m.id WHERE m.id IN ({','.join('?' * len(ids))}) GROUP BY m.id"
        )
        try:
            cats = {i: _stored_category(k, e, h) for i, k, e, h in self.rows._db().execute(sql, ids)}
        except sqlite3.Error as exc:
            raise FetchStoreError(f"{self.store.path}: cannot read the store: {exc}") from None
        return {ref: cats.get(row, "unrecognised") for ref, row in refs.items()}

    def close(self) -> None:
        self.rows.close()


# ------------------------------------------------------------------------------------------------ connections


def tls_context(opts: Options) -> ssl.SSLContext:
    if opts.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=opts.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(f"--ca-file {opts.ca_file}: {getattr(exc, 'strerror', None) or exc}") from None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(exc: BaseException, url: MailboxURL) -> str:
    """One line for a connection-level failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {url.address} not trusted: {exc.verify_message or exc.reason} "
            "(a private CA: --ca-file FILE)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {url.address} failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {url.host}: {exc.strerror}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"{url.address} did not answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url.address}: connection refused"
    if isinstance(exc, OSError):
        return f"{url.address}: {exc.strerror or exc}"
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{url.address}: {' '.join(str(text).split()) or exc.__class__.__name__}"


def _xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


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
                conn.authenticate("XOAUTH2", lambda _challenge: _xoauth2(url.user, token))
            else:
                assert creds.password is not None
                conn.login(url.user, creds.password)
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise FetchError(describe(exc, url)) from None
        except imaplib.IMAP4.error as exc:
            self.close()
            raise FetchError(f"login as {url.user} at {url.address} failed: {_server_text(exc)}") from None
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
                f"{_server_text(data)}"
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
            raise FetchError(f"{self.url.address}: SEARCH failed: {_server_text(data)}")
        uids = sorted({int(u) for chunk in data if chunk for u in chunk.split()})
        return [u for u in uids if u > self.last_uid]  # "n:*" always includes the highest UID

    def run_pass(
        self, recorder: Recorder, stats: Stats, progress: Any = None, stop: threading.Event | None = None
    ) -> None:
        uids = self.pending()
        stats.listed += len(uids)
        if progress is not None:
            progress.add_total(len(uids))
        for start in range(0, len(uids), self.opts.batch):
            if stop is not None and stop.is_set():
                return
            batch = uids[start : start + self.opts.batch]
            self._batch(batch, recorder, stats)
            self.last_uid = batch[-1]
            if progress is not None:
                progress.advance(len(batch))

    def _fetch(self, uids: Sequence[int], items: str) -> dict[int, tuple[bytes, int]]:
        conn = self.conn
        assert conn is not None
        typ, data = conn.uid("FETCH", uid_sets(uids), items)
        if typ != "OK":
            raise FetchError(f"{self.url.address}: FETCH failed: {_server_text(data)}")
        return parse_fetch(data)

    def _batch(self, uids: Sequence[int], recorder: Recorder, stats: Stats) -> None:
        heads = self._fetch(uids, f"(UID BODY.PEEK[HEADER.FIELDS ({KEY_HEADERS})])")
        known = recorder.known({uid: head for uid, (head, _) in heads.items()})
        stats.already += len(known)
        todo = [uid for uid in uids if uid in heads and uid not in known]
        messages: list[tuple[int, bytes, int]] = []
        if todo:
            cap = self.opts.max_size
            for uid, (raw, size) in sorted(self._fetch(todo, f"(UID RFC822.SIZE BODY.PEEK[]<0.{cap}>)").items()):
                if size > cap:
                    stats.truncated += 1
                messages.append((uid, raw, size if size >= 0 else len(raw)))
        done = recorder.commit(messages, stats)  # committed: from here on the server may be changed
        self._act({**known, **done}, stats)

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
            raise FetchError(f"{self.url.address}: UID {args[0]} failed: {_server_text(data)}")

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
                raise FetchError(f"{self.url.address}: cannot create folder {folder!r}: {_server_text(data)}")
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


def _server_text(value: Any) -> str:
    """The server's words from an imaplib/poplib error or response data, on one line."""
    if isinstance(value, BaseException):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, list | tuple):
        value = b" ".join(v for v in value if isinstance(v, bytes)) if value else b""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).split())
    return text.removeprefix("-ERR ") or "no reason given"


# ------------------------------------------------------------------------------------------------------ POP3


class Pop3Session:
    """One logged-in POP3 connection. POP3 has no folders and no flags: a message is left or deleted
    (deletions take effect at QUIT, so a connection lost before it deletes nothing)."""

    def __init__(self, url: MailboxURL, creds: Credentials, opts: Options) -> None:
        self.url = url
        self.opts = opts
        self.conn: poplib.POP3 | None = None
        self._handled: set[str] = set()  # UIDLs acted on in this session
        self._connect(creds)
        for cat, (verb, folder) in opts.after.items():
            # the defaults (move) quietly mean "leave" over POP3; an action asked for on purpose gets a word
            if verb in ("seen", "move") and (verb, folder) != parse_after(AFTER_DEFAULTS[cat]):
                _warn_once(
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
                resp = conn._shortcmd("AUTH XOAUTH2 " + base64.b64encode(_xoauth2(url.user, creds.token())).decode())
                if resp.startswith(b"+"):  # an error challenge: answer empty to get the final -ERR
                    conn._shortcmd("")
            else:
                assert creds.password is not None
                conn.user(url.user)
                conn.pass_(creds.password)
        except poplib.error_proto as exc:
            self.close(quit_=False)
            raise FetchError(f"login as {url.user} at {url.address} failed: {_server_text(exc)}") from None
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
            raise FetchError(f"{self.url.address}: QUIT failed, nothing deleted: {_server_text(exc)}") from None
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
        if progress is not None:
            progress.add_total(len(msgs))
        for start in range(0, len(msgs), self.opts.batch):
            if stop is not None and stop.is_set():
                return
            batch = msgs[start : start + self.opts.batch]
            self._batch(batch, recorder, stats)
            if progress is not None:
                progress.advance(len(batch))

    def _batch(self, batch: Sequence[tuple[int, str, int]], recorder: Recorder, stats: Stats) -> None:
        heads: dict[int, bytes] = {}
        for num, _uid, _size in batch:
            try:
                heads[num] = self._multiline(f"TOP {num} 0", 1 << 20)
            except poplib.error_proto:
                break  # TOP is optional in POP3: without it every message is downloaded
        known = recorder.known(heads)
        stats.already += len(known)
        messages = []
        for num, _uid, size in batch:
            if num not in known:
                raw = self._multiline(f"RETR {num}", self.opts.max_size)
                if size > self.opts.max_size:
                    stats.truncated += 1
                messages.append((num, raw, size))
        done = recorder.commit(messages, stats)
        conn = self.conn
        assert conn is not None
        for num, uid, _size in batch:
            verb, _ = self.opts.after[{**known, **done}[num]]
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


Session = ImapSession | Pop3Session


def connect(url: MailboxURL, creds: Credentials, opts: Options) -> Session:
    return ImapSession(url, creds, opts) if url.protocol == "imap" else Pop3Session(url, creds, opts)


def fetch_once(
    url: MailboxURL,
    creds: Credentials,
    opts: Options,
    recorder: Recorder,
    progress: Any = None,
    stop: threading.Event | None = None,
) -> Stats:
    """Connect, record and act on every message of the folder, disconnect. FetchError on any failure;
    whatever was committed and acted on before it stays so (run again to continue)."""
    stats = Stats()
    session = connect(url, creds, opts)
    try:
        session.run_pass(recorder, stats, progress, stop)
        if isinstance(session, Pop3Session):
            session.finish()
    except FetchError:
        raise
    except (OSError, EOFError, imaplib.IMAP4.abort, imaplib.IMAP4.error, poplib.error_proto) as exc:
        done = stats.new + stats.already
        raise FetchError(f"connection lost after {done} message(s): {describe(exc, url)}") from None
    finally:
        session.close()
    return stats


@dataclass
class Watcher:
    """`fetch --watch` and the [fetch] service: a pass, then wait for new mail (IMAP IDLE; POP3 polls every
    `interval` seconds), forever; a failure reconnects after a growing pause (`backoff`, up to `backoff_max`).
    `on_pass` and `on_error` are told what happened (the log)."""

    url: MailboxURL
    creds: Credentials
    opts: Options
    recorder: Recorder
    interval: float = 300.0  # POP3 poll interval; IMAP without IDLE: NOOP every this many seconds
    backoff: float = 1.0
    backoff_max: float = 300.0
    on_pass: Callable[[Stats], None] = lambda stats: None
    on_error: Callable[[str, float], None] = lambda msg, retry_in: None
    on_idle: Callable[[], None] = lambda: None
    fail_fast: bool = False  # the command line: a first connection that fails is an error, not a retry

    def run(self, stop: threading.Event) -> None:
        delay = self.backoff
        connected = False
        while not stop.is_set():
            session: Session | None = None
            try:
                session = connect(self.url, self.creds, self.opts)
                connected = True
                delay = self.backoff  # connected and logged in: the next failure starts the pauses again
                while not stop.is_set():
                    stats = Stats()
                    session.run_pass(self.recorder, stats, stop=stop)
                    if isinstance(session, Pop3Session):
                        session.finish()  # POP3 shows a snapshot: deletions happen and new mail appears only anew
                        self.on_pass(stats)
                        session = None
                        stop.wait(self.interval)
                        break
                    self.on_pass(stats)
                    self.on_idle()
                    session.wait(self.interval, stop)
            except FetchError as exc:
                if self.fail_fast and not connected:
                    raise  # a wrong password, certificate or folder at start: say so now, not in a retry loop
                self._pause(str(exc), delay, stop)
                delay = min(delay * 2, self.backoff_max)
            except (OSError, EOFError, imaplib.IMAP4.abort, imaplib.IMAP4.error, poplib.error_proto) as exc:
                self._pause(f"connection lost: {describe(exc, self.url)}", delay, stop)
                delay = min(delay * 2, self.backoff_max)
            finally:
                if session is not None:
                    session.close()

    def _pause(self, msg: str, delay: float, stop: threading.Event) -> None:
        self.on_error(msg, delay)
        stop.wait(delay)


# ------------------------------------------------------------------------------------ beside the milter (`run`)


def options_from(settings: Any, **overrides: Any) -> Options:
    """Options from the [fetch] settings; `overrides` (command-line values, None = not given) win."""
    values: dict[str, Any] = {
        "after": after_map(settings.fetch_after),
        "batch": settings.fetch_batch_size,
        "max_size": settings.fetch_max_size,
        "timeout": settings.fetch_timeout,
        "ca_file": settings.fetch_ca_file or None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Options(**values)


def start_service(settings: Any, store: Store, logger: Any) -> Callable[[], None]:
    """Watch the [fetch] mailbox on a thread of its own, sharing the milter's store; returns stop().

    A configuration problem (URL, unreadable password file) raises FetchError at once; a server problem is
    logged and retried with backoff, so the milter keeps running while the mailbox is unreachable.
    """
    import logging

    from . import logjson
    from .verp import BounceMatcher

    global warn
    url = parse_url(settings.fetch_url)
    creds = credentials(
        settings.fetch_password_file or None,
        settings.fetch_password_env or None,
        settings.fetch_oauth2_token_file or None,
    )
    warn = lambda msg: logjson.event(logger, logging.WARNING, "fetch_warning", msg, mailbox=str(url))  # noqa: E731
    matcher = BounceMatcher(settings.bounce_addresses, settings.verp_separator, settings.verp_encoding)
    recorder = Recorder(store, settings, matcher)

    def on_pass(stats: Stats) -> None:
        if stats.listed:
            logjson.event(logger, logging.INFO, "fetch", mailbox=str(url), **stats.as_dict())

    def on_error(msg: str, retry_in: float) -> None:
        logjson.event(logger, logging.ERROR, "fetch_error", msg, mailbox=str(url), retry_in_s=retry_in)

    watcher = Watcher(
        url, creds, options_from(settings), recorder, interval=settings.fetch_interval, on_pass=on_pass,
        on_error=on_error,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), name="fetch", daemon=True)
    thread.start()
    logjson.event(logger, logging.INFO, "fetch_start", mailbox=str(url))

    def stop_service() -> None:
        stop.set()
        thread.join(10.0)  # a batch in progress commits and acts first; IDLE notices within a second
        recorder.close()

    return stop_service
