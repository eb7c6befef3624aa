"""Fetch bounces from a hosted mailbox over IMAP or POP3 and record them like the milter does.

For senders whose return path ends in a mailbox they cannot put a milter in front of (Microsoft 365,
Google Workspace, a provider's IMAP). Each message goes through `ingest.ingest_many()` (classify, record,
suppression policy) with the envelope facts the mailbox kept (`ingest.mailbox_envelope`), so a fetched
message gets the same row and the same idempotency key as an imported one.

Order of work per batch of messages, which is what makes a crash harmless:
  1. read the batch (at most max_size bytes of each message),
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

import imaplib
import ipaddress
import os
import poplib
import socket
import sqlite3
import ssl
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from . import ingest
from . import store as store_db
from .classify import Classification
from .store import Store, StoreError

FETCH_ACTION = "fetched"  # `messages.action` of fetched rows (the milter's are accept/discard, import's "imported")
BATCH = 200  # messages per UID range / per store transaction
MAX_SIZE = 1048576  # bytes of a message fetched (the milter's body cap: the classifier needs no more)
TIMEOUT = 60.0  # seconds a server may stay silent during a command

SCHEMES: dict[str, tuple[str, bool, int]] = {  # scheme -> (protocol, TLS from the first byte, default port)
    "imap": ("imap", False, 143),
    "imaps": ("imap", True, 993),
    "pop3": ("pop3", False, 110),
    "pop3s": ("pop3", True, 995),
}

# What happens on the server to a message once its rows are committed, per category (`category()`).
CATEGORIES: tuple[str, ...] = (
    "hard", "soft", "delay", "complaint", "opt_out", "auto_reply", "delivered", "unrecognised"
)  # fmt: skip
AFTER_DEFAULTS: dict[str, str] = {
    "hard": "move:Bounces/Hard",
    "soft": "move:Bounces/Soft",
    "delay": "move:Bounces/Soft",  # a delay warning is a soft, passing failure
    "complaint": "move:Bounces/Complaints",
    "opt_out": "move:Bounces/OptOuts",  # unsubscribe requests (issue #11): kept, the suppression is recorded
    "auto_reply": "move:Bounces/Unrecognised",  # not a failure of the address: out of the way, kept for a look
    "delivered": "move:Bounces/Unrecognised",
    "unrecognised": "move:Bounces/Unrecognised",
}


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
    from .regularfile import open_regular

    try:
        with open(open_regular(path), "rb") as fh:  # a FIFO is an error, not a fetch that hangs
            data = fh.read(65536)
            mode = os.fstat(fh.fileno()).st_mode
    except OSError as exc:
        raise FetchError(f"{what} {path}: {exc.strerror or exc}") from None
    secret = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    if not secret:
        raise FetchError(f"{what} {path}: empty")
    if mode & stat.S_IROTH:
        warn_once(f"{what} {path} is readable by every user of this machine (chmod 600)")
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


def warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warn(msg)


# ----------------------------------------------------------------------------------------------- the outcome


def in_batches(
    items: Sequence[Any],
    size: int,
    handle: Callable[[Sequence[Any]], None],
    progress: Any = None,
    stop: threading.Event | None = None,
) -> None:
    """Hand `items` to `handle` `size` at a time, the batch loop both protocols share: each batch is one store
    transaction, so a stop request is honoured between batches, never inside one."""
    if progress is not None:
        progress.add_total(len(items))
    for start in range(0, len(items), size):
        if stop is not None and stop.is_set():
            return
        batch = items[start : start + size]
        handle(batch)
        if progress is not None:
            progress.advance(len(batch))


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
    """The category of rows the store already has (a reader connection)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = store_db.connect(self.path, self.timeout)  # SQLite file or PostgreSQL URL
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Recorder:
    """Commits a batch of fetched messages through ingest_many and says what each one is."""

    def __init__(self, store: Store, settings: Any, matcher: Any, verifier: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.matcher = matcher
        # signed return paths (verdict.Verifier), or a function giving the current one (the milter's, which a
        # reload replaces): a fetched bounce is judged like one the milter receives
        self.verifier = verifier
        self.rows = _StoredRows(store.path, store.timeout)

    def commit(self, messages: Sequence[tuple[Any, bytes, int]], stats: Stats) -> dict[Any, str]:
        """Record (ref, raw, full size) messages in one transaction; ref -> category once committed."""
        if not messages:
            return {}

        def items() -> Iterable[tuple[bytes, ingest.Envelope]]:
            for _ref, raw, size in messages:
                env = ingest.mailbox_envelope(raw, self.matcher)
                yield raw, ingest.Envelope(**{**env.__dict__, "size": size})

        verifier = self.verifier() if callable(self.verifier) else self.verifier
        try:
            outcomes = list(
                ingest.ingest_many(
                    items(), self.settings, self.store, len(messages) + 1, action=FETCH_ACTION, verifier=verifier
                )
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
        sql = store_db.sql.stored_categories(len(ids))
        try:
            cats = {i: _stored_category(k, e, h) for i, k, e, h in self.rows._db().execute(sql, ids)}
        except sqlite3.Error as exc:
            raise FetchStoreError(f"{store_db.display_name(self.store.path)}: cannot read the store: {exc}") from None
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


def xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def server_text(value: Any) -> str:
    """The server's words from an imaplib/poplib error or response data, on one line."""
    if isinstance(value, BaseException):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, list | tuple):
        value = b" ".join(v for v in value if isinstance(v, bytes)) if value else b""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).split())
    return text.removeprefix("-ERR ") or "no reason given"


def connect(url: MailboxURL, creds: Credentials, opts: Options) -> Any:
    """A logged-in session (fetch_imap.ImapSession or fetch_pop3.Pop3Session); FetchError if not."""
    if url.protocol == "imap":
        from .fetch_imap import ImapSession

        return ImapSession(url, creds, opts)
    from .fetch_pop3 import Pop3Session

    return Pop3Session(url, creds, opts)


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
        if session.snapshot:
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
            session: Any = None
            try:
                session = connect(self.url, self.creds, self.opts)
                connected = True
                delay = self.backoff  # connected and logged in: the next failure starts the pauses again
                while not stop.is_set():
                    stats = Stats()
                    session.run_pass(self.recorder, stats, stop=stop)
                    if session.snapshot:
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


def start_service(settings: Any, store: Store, logger: Any, verifier: Any = None) -> Callable[[], None]:
    """Watch the [fetch] mailbox on a thread of its own, sharing the milter's store; returns stop().
    `verifier`: as for Recorder (the milter passes a function that gives its current verifier).

    A configuration problem (URL, unreadable password file) raises FetchError at once; a server problem is
    logged and retried with backoff, so the milter keeps running while the mailbox is unreachable.
    """
    import logging

    from . import logjson
    from .unsubscribe import build_matcher

    global warn
    url = parse_url(settings.fetch_url)
    creds = credentials(
        settings.fetch_password_file or None,
        settings.fetch_password_env or None,
        settings.fetch_oauth2_token_file or None,
    )
    warn = lambda msg: logjson.event(logger, logging.WARNING, "fetch_warning", msg, mailbox=str(url))  # noqa: E731
    matcher = build_matcher(settings)
    recorder = Recorder(store, settings, matcher, verifier)

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
