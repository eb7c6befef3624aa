"""Classify one message and record it: the step the milter (per message) and `import` (in batches) share.

`ingest()` is what the milter's end of message does: classify (never raising), choose the action from the
[actions] settings, build the store's `MessageMeta` from the envelope facts, and `Store.record()` it (one
durable transaction). `ingest_many()` does the same for a stream of messages through `Store.record_many()`
(one transaction per batch), for imports. Both build the row with `build_meta()` and classify it the same
way, so a message gives the same row, the same idempotency key and the same suppression update whichever
way it arrives.

With signed return paths on, a `verdict.Verifier` (argument `verifier`) decides between classification and
the store whether the message proves it answers mail we sent (`MessageMeta.verified`).

`mailbox_envelope()` recovers the envelope facts from what a mailbox keeps of them (see its docstring):
an imported message of a mailbox the milter also saw gets the same key as the milter's row when the
mailbox kept the Message-ID, the Return-Path and the original recipient (X-Original-To).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from . import store as store_db
from .classify import Classification, classify, optout
from .classify.mime import crlf_to_lf
from .store import MessageMeta, Store, StoreError, dedup_key

HEADER_BLOCK_MAX = 256 * 1024  # a header block longer than this is read no further (hostile or broken input)
BATCH_SIZE = 500  # messages per transaction in ingest_many: ~1 fsync per 500 instead of per message
RECIPIENTS_PER_MESSAGE = 1000  # default of [limits] recipients_per_message, as Postfix's smtpd_recipient_limit
IMPORT_ACTION = "imported"  # `messages.action` of imported rows: the milter neither accepted nor discarded them

# Header fields a mailbox program rewrites as the message is read or moved (mutt, Dovecot, Thunderbird, UW
# mbox); they must not change the content digest, or reading the mailbox between two imports would duplicate rows.
MAILBOX_STATE_FIELDS = frozenset(
    {
        b"status",
        b"x-status",
        b"x-keywords",
        b"x-uid",
        b"x-imap",
        b"x-imapbase",
        b"content-length",
        b"lines",
        b"x-mozilla-status",
        b"x-mozilla-status2",
        b"x-mozilla-keys",
    }
)

_FIELD = re.compile(rb"^([!-9;-~]{1,100})[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.M)
_ANGLE = re.compile(r"<([^<>]*)>")
_ADDR = re.compile(r"[^\s<>,;:\"()\[\]@]+@[^\s<>,;:\"()\[\]@]+")
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


class Recorder(Protocol):
    """`Store`, or anything that commits like `Store.record()` (the milter's group commit)."""

    def record(self, meta: MessageMeta, result: Classification, action: str) -> tuple[int, bool]: ...


class NotStored(StoreError):
    """record() failed; `.prepared` still carries the classification and the action (the milter logs them)."""

    def __init__(self, message: str, prepared: Prepared) -> None:
        super().__init__(message)
        self.prepared = prepared


@dataclass
class Envelope:
    """What is known about a message besides its bytes. None means "read it from the message".

    Nothing changes an Envelope once built, but it is not a frozen dataclass: a frozen one's __init__ sets each
    field through object.__setattr__, 26,000 instructions for every message the milter records (3,000 now)."""

    queue_id: str = ""
    client_addr: str = ""
    client_name: str = ""
    helo: str = ""
    envelope_from: str = ""
    bounce_addresses: Sequence[str] = ()  # the recipients that matched a configured bounce address
    verp_recipients: Sequence[str] = ()  # their decoded VERP subscribers
    message_id: str | None = None  # None: the message's Message-ID header
    size: int | None = None  # None: len(raw) (the milter passes the full size of a message it truncated)
    received_at: str = ""  # ISO-8601 UTC; "" = now (the store fills it in)
    digest: str | None = None  # idempotency key without a Message-ID; None: content_digest(raw) when needed
    internal: bool = False  # Postfix's own (non_smtpd) path (the milter knows; see milter.internal_path)
    unsubscribe: bool = False  # a recipient is an [unsubscribe] address (classify.optout.for_unsubscribe_address)


@dataclass
class Prepared:
    classification: Classification
    action: str
    meta: MessageMeta
    classify_ms: float
    verify_ms: float = 0.0  # the verdict: token, signed original, sent log, DNS


@dataclass
class Outcome:
    classification: Classification | None  # None: ingest_many() found it already stored and did not classify it
    action: str  # "" when classification is None
    row_id: int
    inserted: bool  # False: the store already had this message (same idempotency key)
    classify_ms: float
    store_ms: float  # for ingest_many: the batch's commit time shared out evenly
    verified: bool | None = None  # MessageMeta.verified (None: not checked)
    verification: str = ""
    notes: dict[str, str] | None = None  # MessageMeta.recipient_notes (e.g. the DNS check)
    recipients_dropped: int = 0  # recipients past [limits] recipients_per_message (counted, not stored)


def classify_safely(raw: bytes, classifier: Callable[[bytes], Classification] = classify) -> Classification:
    try:
        return classifier(raw)
    except Exception as exc:  # classify() promises not to raise; a custom classifier might
        return Classification(kind="not_bounce", detector="error", error=f"{exc.__class__.__name__}: {exc}")


def action_for(result: Classification, settings: Any) -> str:
    """The configured [actions] entry for the kind; never act on a message the classifier failed on."""
    return "accept" if result.error else settings.actions.get(result.kind, "accept")


def build_meta(raw: bytes, env: Envelope) -> MessageMeta:
    """The store row's metadata before classification (processing_ms 0): all the idempotency key needs."""
    message_id = env.message_id
    if message_id is None:
        message_id = one_line(_first(header_fields(raw), b"message-id"), 998)
    digest = ""
    if not message_id:
        digest = env.digest if env.digest is not None else content_digest(raw)
    return MessageMeta(
        queue_id=env.queue_id,
        client_addr=env.client_addr,
        client_name=env.client_name,
        helo=env.helo,
        envelope_from=env.envelope_from,
        bounce_addresses=list(env.bounce_addresses),
        verp_recipients=[v for v in env.verp_recipients if v],
        message_id=message_id,
        size=len(raw) if env.size is None else env.size,
        processing_ms=0.0,
        received_at=env.received_at,
        digest=digest,
        internal=env.internal,
        body_digest=report_digest(raw) if message_id else "",
        unsubscribe=env.unsubscribe,
    )


def prepare(
    raw: bytes,
    env: Envelope,
    settings: Any,
    classifier: Callable[[bytes], Classification] = classify,
    action: str | None = None,
    verifier: Any = None,
) -> Prepared:
    """Classify and build the store row's metadata. `action` None: from the [actions] settings. No I/O
    without a `verifier` (which may read the sent log and ask DNS)."""
    return _classified(raw, build_meta(raw, env), settings, classifier, action, verifier)


def _classified(
    raw: bytes,
    meta: MessageMeta,
    settings: Any,
    classifier: Callable[[bytes], Classification],
    action: str | None,
    verifier: Any = None,
) -> Prepared:
    t0 = time.perf_counter()
    result = classify_safely(raw, classifier)
    if meta.unsubscribe:  # mail to an unsubscribe address: what is not a bounce or an auto-reply is an opt-out
        verps = set(meta.verp_recipients)
        subscriber = verps.pop() if len(verps) == 1 else ""
        result = optout.for_unsubscribe_address(result, raw, subscriber, meta.envelope_from)
    # a report naming thousands of recipients is stored with the first recipients_per_message (Postfix's own
    # smtpd_recipient_limit is 1000); the rest is counted on the row and in the log
    cap = getattr(settings, "limit_recipients_per_message", RECIPIENTS_PER_MESSAGE)
    if cap and len(result.recipients) > cap:
        meta.recipients_dropped = len(result.recipients) - cap
        del result.recipients[cap:]
    chosen = action if action is not None else action_for(result, settings)
    classify_ms = (time.perf_counter() - t0) * 1000
    meta.processing_ms = round(classify_ms, 3)
    verify_ms = 0.0
    if verifier is not None:
        t1 = time.perf_counter()
        verifier.apply(raw, result, meta, _when(meta.received_at))
        verify_ms = (time.perf_counter() - t1) * 1000
    return Prepared(result, chosen, meta, classify_ms, verify_ms)


def _when(received_at: str) -> datetime | None:
    """The time a token's age is judged at: when the message arrived (an import of old mail), else now."""
    if not received_at:
        return None
    try:
        return datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    except ValueError:
        return None


def ingest(
    raw: bytes,
    env: Envelope,
    settings: Any,
    store: Recorder,
    classifier: Callable[[bytes], Classification] = classify,
    action: str | None = None,
    verifier: Any = None,
) -> Outcome:
    """Classify and record one message durably (Store.record). Raises NotStored (a StoreError) if not committed."""
    p = prepare(raw, env, settings, classifier, action, verifier)
    t0 = time.perf_counter()
    try:
        row_id, inserted = store.record(p.meta, p.classification, p.action)
    except StoreError as exc:
        raise NotStored(str(exc) or exc.__class__.__name__, p) from exc
    store_ms = (time.perf_counter() - t0) * 1000
    m = p.meta
    return Outcome(
        p.classification,
        p.action,
        row_id,
        inserted,
        p.classify_ms,
        store_ms,
        m.verified,
        m.verification,
        m.recipient_notes,
        m.recipients_dropped,
    )


def ingest_many(
    items: Iterable[tuple[bytes, Envelope]],
    settings: Any,
    store: Store,
    batch_size: int = BATCH_SIZE,
    classifier: Callable[[bytes], Classification] = classify,
    action: str | None = None,
    verifier: Any = None,
) -> Iterator[Outcome]:
    """ingest() for a stream of messages, committing every `batch_size` messages in one transaction.

    A message whose idempotency key is already stored is not even classified (re-running an import over a
    mailbox that keeps growing costs little); its Outcome has `classification` None. Outcomes come out in
    input order, a batch at a time (after its commit). A StoreError stops the stream; every batch before it
    is committed (`exc.committed`), so running the same import again is safe.
    """
    pending: list[tuple[bytes, MessageMeta]] = []
    reader = _KeyReader(store.path, store.timeout)

    def commit() -> list[Outcome]:
        known = reader.lookup([dedup_key(meta) for _, meta in pending])
        todo = [
            (i, _classified(raw, meta, settings, classifier, action, verifier))
            for i, (raw, meta) in enumerate(pending)
            if dedup_key(meta) not in known
        ]
        out: list[Outcome | None] = [None] * len(pending)
        if todo:
            t0 = time.perf_counter()
            results = store.record_many([(p.meta, p.classification, p.action) for _, p in todo], len(todo))
            share = (time.perf_counter() - t0) * 1000 / len(todo)
            for (i, p), (row_id, inserted) in zip(todo, results, strict=True):
                out[i] = Outcome(
                    p.classification,
                    p.action,
                    row_id,
                    inserted,
                    p.classify_ms,
                    share,
                    p.meta.verified,
                    p.meta.verification,
                    p.meta.recipient_notes,
                    p.meta.recipients_dropped,
                )
        for i, (_, meta) in enumerate(pending):
            if out[i] is None:
                out[i] = Outcome(None, "", known[dedup_key(meta)], False, 0.0, 0.0)
        pending.clear()
        return [o for o in out if o is not None]

    committed = 0
    try:
        for raw, env in items:
            pending.append((raw, build_meta(raw, env)))
            if len(pending) >= batch_size:
                outcomes = commit()
                committed += len(outcomes)
                yield from outcomes
        if pending:
            yield from commit()
    except StoreError as exc:
        exc.committed = committed
        raise
    finally:
        reader.close()


class _KeyReader:
    """Which idempotency keys the store already has (a read connection: it never blocks the writer)."""

    CHUNK = 500  # bound on SQL variables per query

    def __init__(self, path: str, timeout: float) -> None:
        self._conn: sqlite3.Connection | None = None
        self.path = path
        self.timeout = timeout

    def lookup(self, keys: list[str | None]) -> dict[str, int]:
        wanted = list({k for k in keys if k is not None})
        if not wanted:
            return {}
        try:
            if self._conn is None:
                self._conn = store_db.connect(self.path, self.timeout)  # SQLite file or PostgreSQL URL
            found: dict[str, int] = {}
            for start in range(0, len(wanted), self.CHUNK):
                chunk = wanted[start : start + self.CHUNK]
                found.update((k, int(i)) for k, i in self._conn.execute(store_db.sql.stored_keys(len(chunk)), chunk))
            return found
        except (sqlite3.Error, store_db.NoDatabase):
            return {}  # only an optimisation: record_many() checks every key again anyway

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ------------------------------------------------------------------------------------- envelope facts of a mailbox


def mailbox_envelope(raw: bytes, matcher: Any, from_line: bytes = b"", now: datetime | None = None) -> Envelope:
    """The envelope facts a mailbox keeps of a delivered message.

    - envelope sender: the Return-Path the delivery agent wrote (``<>`` = null sender), else the sender of
      the mbox From_ line (``MAILER-DAEMON`` = null sender);
    - bounce addresses: the X-Original-To values (the recipient as the MTA received it, before aliases: what
      the milter matched) that `matcher` recognises, else the Delivered-To values, else To/Cc; their VERP
      subscribers decoded by the matcher;
    - received time: the topmost Received header's date (written by our own server at delivery, the time
      the milter would have recorded), else the Date header, else `now`; a date before 1990 or more than a
      day in the future is ignored;
    - queue id, client and HELO: unknown (empty);
    - Message-ID: the header's value, one line (as the milter records it); the digest is left to prepare().
    """
    fields = header_fields(raw)
    envelope_from = _return_path(fields, from_line)
    matches: list[Any] = []
    if matcher:
        for names in ((b"x-original-to",), (b"delivered-to",), (b"to", b"cc")):
            matches = _matched(fields, names, matcher)
            if matches:
                break
    return Envelope(
        envelope_from=envelope_from,
        bounce_addresses=[m.address for m in matches],
        verp_recipients=[m.verp_recipient for m in matches if m.verp_recipient],
        message_id=one_line(_first(fields, b"message-id"), 998),
        received_at=_received_at(fields, now or datetime.now(UTC)),
        unsubscribe=any(getattr(m, "unsubscribe", False) for m in matches),
    )


def header_fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-cased name, unfolded value) of the top header block, in order."""
    end = raw.find(b"\n\n", 0, HEADER_BLOCK_MAX)
    if end < 0:
        end = raw.find(b"\r\n\r\n", 0, HEADER_BLOCK_MAX)
    block = raw[: end if end >= 0 else HEADER_BLOCK_MAX]
    out: list[tuple[bytes, bytes]] = []
    for m in _FIELD.finditer(block):
        value = m.group(2)
        if b"\n" in value:
            value = re.sub(rb"\r?\n[ \t]", b" ", value)
        out.append((m.group(1).lower(), value.rstrip(b"\r")))
    return out


def _first(fields: list[tuple[bytes, bytes]], name: bytes) -> str:
    for n, v in fields:
        if n == name:
            return v.decode("utf-8", "replace")
    return ""


def one_line(value: str, limit: int) -> str:
    return " ".join(value.split())[:limit]


def content_digest(raw: bytes) -> str:
    """A hash of the message that ignores line endings, trailing newlines and mailbox status headers."""
    data = raw.replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    head, body = (data[:end], data[end:]) if end >= 0 else (data, b"")
    kept = [line for line in _field_chunks(head) if line.partition(b":")[0].strip().lower() not in MAILBOX_STATE_FIELDS]
    h = hashlib.sha256()
    h.update(b"\n".join(kept))
    h.update(body.rstrip(b"\n"))
    return h.hexdigest()


DIGEST_SPAN = 64 * 1024  # bytes of the normalised body the report digest covers
_MBOX_QUOTE = re.compile(rb"^>+(?=From )", re.M)


def report_digest(raw: bytes) -> str:
    """A digest of the report's content: its body, normalised, first DIGEST_SPAN bytes.

    Beside the Message-ID it tells a retry (the same report again) from a different report reusing the
    Message-ID. The body only: the header block is where every hop adds its Received: and a mailbox program its
    status fields, while a report's facts (recipients, status, diagnostic) are in the body. Normalised so that
    the milter (CRLF, as received) and `import` (LF, maybe mbox-quoted) agree on the same message: line ends,
    trailing white space, ">From " quoting and trailing blank lines do not count. The first 64 KiB: the milter
    buffers no more than body_cap of a message, and a report's facts come first.
    """
    limit = HEADER_BLOCK_MAX + 3 * DIGEST_SPAN
    start = _body_start(raw, limit)
    if start < 0:
        return hashlib.sha256(b"").hexdigest()
    end = min(len(raw), limit)
    # Only the first DIGEST_SPAN bytes count: normalise a window of the body (cut after a line end: every step is
    # line by line, so the window's result begins the whole body's), grown only when the window shrank below
    # DIGEST_SPAN (a body of blank lines). A 100 KB bounce cost 3.7 million instructions when all of it was
    # normalised and searched.
    n = start + DIGEST_SPAN + DIGEST_SPAN // 4
    while n < end:
        cut = raw.rfind(b"\n", start, n) + 1
        if cut > start:
            piece = _normalised(raw[start:cut]).lstrip(b"\n")
            if len(piece.rstrip(b"\n")) >= DIGEST_SPAN:
                return hashlib.sha256(piece[:DIGEST_SPAN]).hexdigest()
        n = start + 2 * (n - start)
    return hashlib.sha256(_normalised(raw[start:end]).strip(b"\n")[:DIGEST_SPAN]).hexdigest()


def _body_start(raw: bytes, limit: int) -> int:
    """Where the body begins in raw[:limit]: after the first empty line, whatever mix of CRLF and LF ("\n\n" or
    "\n\r\n"); -1 when there is none. (The one that comes first: "\n\n" is looked for only up to the other.)"""
    crlf = raw.find(b"\n\r\n", 0, limit)
    lf = raw.find(b"\n\n", 0, crlf + 1 if crlf >= 0 else limit)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def _normalised(body: bytes) -> bytes:
    """LF line ends, no ">From " quoting, no trailing blanks: each step only where it can change something (a
    bounce seldom has mbox quoting or trailing blanks: the regex alone cost 72,000 instructions on a 1.3 KB
    bounce, the line loop 22,000)."""
    body = crlf_to_lf(body)
    if b">From " in body:
        body = _MBOX_QUOTE.sub(b"", body)
    if _trailing_blank(body):
        body = b"\n".join(line.rstrip() for line in body.split(b"\n"))
    return body


_BLANKS = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")  # what bytes.rstrip() takes off, "\n" aside


def _trailing_blank(body: bytes) -> bool:
    """Would rstrip() change any line of `body`? (A one-byte search is a memchr: the two-byte one runs only
    for a blank that occurs at all.)"""
    if body[-1:] in _BLANKS:
        return True
    return any(blank in body and blank + b"\n" in body for blank in _BLANKS)


def _field_chunks(head: bytes) -> list[bytes]:
    """Header lines with their continuation lines attached, so a dropped field takes its folds with it."""
    out: list[bytes] = []
    for line in head.split(b"\n"):
        if out and line[:1] in (b" ", b"\t"):
            out[-1] += b"\n" + line
        else:
            out.append(line)
    return out


def _bare(value: str) -> str:
    m = _ANGLE.search(value)
    return (m.group(1) if m else value).strip()


def _return_path(fields: list[tuple[bytes, bytes]], from_line: bytes) -> str:
    for name, value in fields:
        if name == b"return-path":
            return _bare(value.decode("utf-8", "replace"))
    parts = from_line.split(None, 2)
    if len(parts) >= 2 and parts[0] == b"From":
        sender = _bare(parts[1].decode("utf-8", "replace"))
        return "" if sender.upper() == "MAILER-DAEMON" else sender
    return ""


def _matched(fields: list[tuple[bytes, bytes]], names: tuple[bytes, ...], matcher: Any) -> list[Any]:
    seen: dict[str, Any] = {}
    for name, value in fields:
        if name not in names:
            continue
        for addr in _ADDR.findall(value.decode("utf-8", "replace")):
            m = matcher.match(addr)
            if m is not None and m.address not in seen:
                seen[m.address] = m
    return list(seen.values())


def _received_at(fields: list[tuple[bytes, bytes]], now: datetime) -> str:
    latest = now + timedelta(days=1)
    candidates = []
    received = _first(fields, b"received")
    if ";" in received:
        candidates.append(received.rpartition(";")[2])
    candidates.append(_first(fields, b"date"))
    for text in candidates:
        when = _parse_date(text)
        if when is not None and _EARLIEST <= when <= latest:
            return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_date(text: str) -> datetime | None:
    text = " ".join(text.split())
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, zone unknown (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
