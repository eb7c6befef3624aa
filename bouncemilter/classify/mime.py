"""A small, bounded, forgiving MIME reader.

The standard library's `email` parser builds a full object tree and is several times slower
than a bounce needs: a bounce is decided by its top headers, a short human-readable part, a
`message/delivery-status` part and the headers of the original message. This reader splits
exactly that much, never raises on malformed input, and looks at no more than `MAX_SCAN` bytes:
a bigger message is first skimmed by its MIME structure (`structure.skim`: headers and report
parts kept, big bodies skipped), so a report part after a 50 MB attachment is still found.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import KeysView
from dataclasses import dataclass, field
from functools import lru_cache

MAX_SCAN = 1024 * 1024  # bytes of the raw message that are looked at at all
MAX_HEADER_BYTES = 128 * 1024  # a header block longer than this is cut
MAX_PARTS = 64  # leaf parts collected before the walk stops
MAX_DEPTH = 6  # nesting of message/rfc822 (Part.depth)
MAX_NEST = 16  # nesting of containers of any kind (multipart and message/rfc822)
MAX_TEXT = 256 * 1024  # decoded characters kept per part

_HEADER_START = re.compile(rb"^[!-9;-~]+[ \t]*:")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ENCODED_GAP = re.compile(r"(\?=)\s+(=\?)")
_PARAM = re.compile(r';\s*([\w*.\-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)')
_CHARSET_ALIASES = {
    "unknown-8bit": "utf-8",
    "x-unknown": "utf-8",
    "unknown": "utf-8",
    "us-ascii": "utf-8",  # 8-bit bytes under a us-ascii label are common; utf-8 is the better guess
    "ascii": "utf-8",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "windows-874": "cp874",
    "utf8": "utf-8",
}


def normalise_newlines(data: bytes) -> bytes:
    """CRLF and lone CR become LF."""
    if b"\r" not in data:
        return data
    data = crlf_to_lf(data)
    return data.replace(b"\r", b"\n") if b"\r" in data else data


SPLIT_JOIN_MIN = 16 * 1024  # from this size CRLF -> LF is cheaper split and joined than replaced (crlf_to_lf)


def crlf_to_lf(data: bytes) -> bytes:
    """data.replace(b"\r\n", b"\n"). For a big message (a 100 KB bounce) split and join does the same in 15 % fewer
    instructions and 40 % less time (bytes.replace counts the occurrences first, then copies); below SPLIT_JOIN_MIN
    the list costs more than it saves."""
    if len(data) < SPLIT_JOIN_MIN:
        return data.replace(b"\r\n", b"\n")
    return b"\n".join(data.split(b"\r\n"))


def decode_bytes(data: bytes, charset: str = "") -> str:
    """Bytes to text with a declared charset, falling back to UTF-8 and then Latin-1."""
    cs = _canonical_charset(charset) if charset else ""
    if cs and cs != "utf-8":
        try:
            return data.decode(cs, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Latin-1 never fails and keeps ASCII intact, which is all the parsers rely on.
        return data.decode("latin-1")


@lru_cache(maxsize=256)  # the same few charset labels come back in every message
def _canonical_charset(charset: str) -> str:
    cs = charset.strip().strip('"').lower()
    if not cs:
        return ""
    if len(cs) > 40 or not cs.isascii():
        return ""
    cs = _CHARSET_ALIASES.get(cs, cs)
    try:
        return codecs.lookup(cs).name
    except (LookupError, ValueError):  # ValueError: a NUL inside the name
        return ""


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (=?charset?B|Q?...?=); anything malformed stays as it is."""
    if "=?" not in value:
        return value
    value = _ENCODED_GAP.sub(r"\1\2", value)

    def one(m: re.Match[str]) -> str:
        charset, enc, text = m.group(1), m.group(2).upper(), m.group(3)
        charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
        try:
            if enc == "B":
                raw = binascii.a2b_base64(text + "=" * (-len(text) % 4))
            else:
                raw = binascii.a2b_qp(text.replace("_", " ").encode("ascii", "replace"))
        except (binascii.Error, ValueError):
            return m.group(0)
        return decode_bytes(raw, charset)

    return _ENCODED_WORD.sub(one, value)


class Headers:
    """An ordered list of (name, value) pairs; names compare case-insensitively."""

    __slots__ = ("_decoded", "_index", "items")

    def __init__(self, items: list[tuple[str, str]], index: dict[str, list[str]] | None = None) -> None:
        self.items = items
        self._decoded: dict[str, str] = {}
        if index is None:
            index = {}
            for name, value in items:
                index.setdefault(name.lower(), []).append(value)
        self._index = index

    # Detectors ask for dozens of headers per message, nearly always by a lower-case name, and most of
    # them are absent: look the name up as given, and on a miss lower-case it only when it is not known
    # to be lower case already (a str method call costs several set lookups).
    def get(self, name: str, default: str = "") -> str:
        values = self._index.get(name)
        if values is None:
            if name in _LOWER_NAMES:
                return default
            values = self._index.get(_lower(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        values = self._index.get(name)
        if values is None:
            if name in _LOWER_NAMES:
                return []
            values = self._index.get(_lower(name), [])
        return values

    def __contains__(self, name: str) -> bool:
        if name in self._index:
            return True
        return name not in _LOWER_NAMES and _lower(name) in self._index

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> KeysView[str]:
        """The lower-cased names present (a set-like view: `names() & wanted` in C)."""
        return self._index.keys()

    def decoded(self, name: str) -> str:
        """The first value with encoded words decoded and whitespace folded (once: many detectors ask)."""
        value = self._decoded.get(name)
        if value is None:
            raw = self.get(name)
            value = self._decoded[name] = " ".join((decode_words(raw) if "=?" in raw else raw).split())
        return value


_LOWER_NAMES: set[str] = set()  # header names asked for that are lower case already (see Headers.get)
_LOWER_NAMES_MAX = 4096  # names come from the code, but a caller may ask by names a message carries


def _lower(name: str) -> str:
    low = name.lower()
    if low == name and len(_LOWER_NAMES) < _LOWER_NAMES_MAX:
        _LOWER_NAMES.add(name)
    return low


def parse_header_block(block: bytes) -> Headers:
    """Parse an unfolded-or-folded header block (LF line endings) into Headers.

    A short block is most often a MIME part's own ("Content-Type: text/plain; charset=us-ascii"), the same in
    every bounce an MTA writes: it is parsed once and its Headers shared (nothing changes a Headers once built)."""
    if len(block) <= SHARED_BLOCK_MAX:
        return _parse_shared(block)
    return _parse_header_block(block)


SHARED_BLOCK_MAX = 256  # bytes: part headers, not a message's own (those name a unique Message-ID)


@lru_cache(maxsize=512)
def _parse_shared(block: bytes) -> Headers:
    return _parse_header_block(block)


def _parse_header_block(block: bytes) -> Headers:
    """parse_header_block without the cache.

    A field is a line "name: value" (name: printable ASCII but space and ':', then optional blanks) and the
    continuation lines after it (starting with a space or tab), joined by one space; other lines are skipped."""
    block = block[:MAX_HEADER_BYTES]
    # One decode and a split for the whole block, then C string methods per line: header parsing is the largest
    # single cost of classifying an ordinary bounce (a regex reads every character: ~80 instructions each). Only a
    # block that is not UTF-8 is decoded per line (each line falls back to Latin-1 on its own).
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = "\n".join([decode_bytes(line) for line in block.split(b"\n")])
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    key = ""  # the lower-cased name of the field being read ("" after a line that is no field)
    folded: list[str] | None = None  # its pieces, when it has continuation lines
    value = ""
    for line in text.split("\n"):
        if line and line[0] in " \t":
            if key:
                if folded is None:
                    folded = [value]
                folded.append(line.strip())
            continue
        if folded is not None:
            _refold(items, index[key], folded)
            folded = None
        head, sep, rest = line.partition(":")
        name_key = _NAME_KEYS.get(head) if sep else None
        if name_key is None:
            name_key = _name_key(head) if sep else None
            if name_key is None:
                key = ""
                continue
        name, key = name_key
        value = rest.strip()
        items.append((name, value))
        if key in index:
            index[key].append(value)
        else:
            index[key] = [value]
    if folded is not None:
        _refold(items, index[key], folded)
    return Headers(items, index)


def _refold(items: list[tuple[str, str]], values: list[str], pieces: list[str]) -> None:
    """The last field read had continuation lines: its value is all its pieces, one space between them."""
    value = " ".join(pieces)
    items[-1] = (items[-1][0], value)
    values[-1] = value


# What goes before the ':' of a header line -> (name, lower-cased name), or None when that is no field name.
_NAME_KEYS: dict[str, tuple[str, str]] = {}
_NAME_KEYS_MAX = 4096  # names repeat from message to message; a hostile one cannot grow this without bound
_NAME_KEY_LEN = 64  # nor with long ones: a header name may be any length up to the line's
_FIELD_NAME = re.compile(r"([!-9;-~]+)[ \t]*")


def _name_key(head: str) -> tuple[str, str] | None:
    m = _FIELD_NAME.fullmatch(head)
    if m is None:
        return None
    name = m.group(1)
    found = (name, name.lower())
    if len(head) <= _NAME_KEY_LEN and len(_NAME_KEYS) < _NAME_KEYS_MAX:
        _NAME_KEYS[head] = found
    return found


def split_head_body(data: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line. A block that does not start with a header has no head."""
    if data.startswith(b"\n"):
        return b"", data[1:]
    # the first line starts like a field (no character of the pattern crosses a newline: the line need not be cut)
    if not _HEADER_START.match(data) and not data.startswith(b"From "):
        return b"", data
    idx = data.find(b"\n\n")
    if idx < 0:
        return data, b""
    return data[:idx], data[idx + 2 :]


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """'multipart/report; report-type=delivery-status; boundary="x"' -> (type, params)."""
    ctype, params = _parse_content_type(value)
    return ctype, dict(params)  # a copy: the cached result must not be changed by a caller


@lru_cache(maxsize=512)  # the same few Content-Type values come back in every message
def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    head, _, _rest = value.partition(";")
    ctype = head.strip().lower()
    if "/" not in ctype:
        ctype = "text/plain"
    params: dict[str, str] = {}
    for m in _PARAM.finditer(value):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1] if v.endswith('"') and len(v) > 1 else v[1:]
            v = v.replace('\\"', '"')
        params.setdefault(m.group(1).lower(), v)
    return ctype, params


@dataclass(slots=True)
class Part:
    """One leaf of the MIME tree (or the head of an embedded message)."""

    ctype: str
    params: dict[str, str]  # shared with the Content-Type cache (_parse_content_type): read only
    headers: Headers
    body: bytes  # transfer-encoded body as found, LF line endings
    depth: int  # 0 for the outer message's own parts, +1 inside each message/rfc822
    _text: str | None = field(default=None, repr=False)
    _cut: bool = field(default=False, repr=False)

    @property
    def charset(self) -> str:
        return self.params.get("charset", "")

    def decoded_bytes(self) -> bytes:
        cte = self.headers.get("content-transfer-encoding").strip().lower()
        body = self.body
        if cte == "base64":
            return _b64decode(body)
        if cte == "quoted-printable":
            try:
                return binascii.a2b_qp(body)
            except (binascii.Error, ValueError):
                return body
        return body

    @property
    def text(self) -> str:
        if self._text is None:
            # Cut before decoding: a character is at most 4 bytes in any charset that matters here.
            raw = self.decoded_bytes()
            full = decode_bytes(raw[: MAX_TEXT * 4], self.charset)
            self._cut = len(raw) > MAX_TEXT * 4 or len(full) > MAX_TEXT
            self._text = normalise_text(full[:MAX_TEXT])
        return self._text

    @property
    def cut(self) -> bool:
        """`text` is only the first MAX_TEXT characters of the part."""
        _ = self.text
        return self._cut


def normalise_text(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _b64decode(body: bytes) -> bytes:
    try:
        return binascii.a2b_base64(body)
    except (binascii.Error, ValueError):
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
        try:
            return binascii.a2b_base64(cleaned)
        except (binascii.Error, ValueError):
            return body


@dataclass(slots=True)
class Message:
    """The parsed outer message: its headers and its leaf parts in document order."""

    headers: Headers
    parts: list[Part]
    truncated: bool  # MAX_SCAN cut the message
    size: int
    _body: str | None = field(default=None, repr=False)
    # Derived values that several detectors compute from the same message (see memoised()).
    memo: dict[str, object] = field(default_factory=dict, repr=False)

    def find(self, *ctypes: str, max_depth: int = 99) -> Part | None:
        for part in self.parts:
            if part.ctype in ctypes and part.depth <= max_depth:
                return part
        return None

    def report_type(self) -> str:
        """The report-type of a multipart/report message, lower-cased ("" for anything else)."""
        ctype, params = self._content_type()
        if ctype == "multipart/report":
            return params.get("report-type", "").strip().lower()
        return ""

    @property
    def top_ctype(self) -> str:
        return self._content_type()[0]

    def _content_type(self) -> tuple[str, dict[str, str]]:
        cached = self.memo.get("content-type")
        if cached is None:
            cached = self.memo["content-type"] = parse_content_type(self.headers.get("content-type"))
        return cached  # type: ignore[return-value]

    def text_parts(self) -> list[Part]:
        """The outer message's own readable parts (not those of an attached original)."""
        return [p for p in self.parts if p.depth == 0 and p.ctype in ("text/plain", "text/html", "text/enriched")]

    def body_text(self) -> str:
        """The human-readable text of the report: plain parts, else HTML reduced to text."""
        if self._body is None:
            self._body = self._body_text()
        return self._body

    def _body_text(self) -> str:
        plain = [p.text for p in self.text_parts() if p.ctype == "text/plain"]
        if plain:
            return "\n".join(plain)
        html = [p.text for p in self.text_parts() if p.ctype == "text/html"]
        if html:
            return "\n".join(html_to_text(h) for h in html)
        return ""

    def original_headers(self) -> Headers | None:
        """Headers of the message that bounced, from message/rfc822 or *-headers parts."""
        if "original-headers" not in self.memo:
            self.memo["original-headers"] = self._original_headers()
        return self.memo["original-headers"]  # type: ignore[return-value]

    def _original_headers(self) -> Headers | None:
        for part in self.parts:
            if part.depth >= 1 and part.ctype == "x-embedded/headers":
                return part.headers
            if part.ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
                head, _ = split_head_body(normalise_newlines(part.decoded_bytes()).lstrip(b"\n"))
                return parse_header_block(head)
        return None


# No pattern may scan past the next "<": with `[^>]*` a text of many unclosed "<" costs
# quadratic time (a 1 MB part took minutes).
_TAG = re.compile(r"<[^<>]*>")
_BREAK = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|p|div|tr|li|h\d)[^<>]*>", re.I)
_HIDDEN_OPEN = re.compile(r"<(style|script|head)\b", re.I)
_ENTITIES = {"&nbsp;": " ", "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&#39;": "'"}
_ENTITY = re.compile("|".join(map(re.escape, _ENTITIES)))


def _drop_hidden(html: str) -> str:
    """Remove <style>, <script> and <head> elements in linear time (an unclosed one stays)."""
    if "<" not in html:
        return html
    lower = html.lower()
    out: list[str] = []
    pos = 0
    unclosed: set[str] = set()  # a close tag missing once is missing for every later opening too
    for m in _HIDDEN_OPEN.finditer(html):
        name = m.group(1).lower()
        if m.start() < pos or name in unclosed:
            continue
        end = lower.find("</" + name, m.end())
        if end < 0:
            unclosed.add(name)
            continue
        close = lower.find(">", end)
        out.append(html[pos : m.start()])
        out.append(" ")
        pos = len(html) if close < 0 else close + 1
    out.append(html[pos:])
    return "".join(out)


@lru_cache(maxsize=4)  # detectors reduce the same part more than once; a few entries bound memory
def html_to_text(html: str) -> str:
    html = _drop_hidden(html)
    html = _BREAK.sub("\n", html)
    text = _TAG.sub("", html)
    text = _ENTITY.sub(lambda m: _ENTITIES[m.group(0)], text)
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


def parse_message(raw: bytes) -> Message:
    """Parse at most MAX_SCAN bytes of `raw`; never raises for any input."""
    if not isinstance(raw, bytes):
        raw = _as_bytes(raw)
    size = len(raw)
    if size > MAX_SCAN:  # by its structure: a report part after a big attachment is still found
        from .structure import skim

        data = normalise_newlines(skim(raw, MAX_SCAN))
    else:
        data = normalise_newlines(raw)
    if data.startswith(b"From ") and b"\n" in data:  # an mbox "From " line
        data = data.split(b"\n", 1)[1]
    head, body = split_head_body(data)
    headers = parse_header_block(head)
    parts: list[Part] = []
    ctype, params = _parse_content_type(headers.get("content-type"))
    _walk(ctype, params, headers, body, 0, parts)
    return Message(headers, parts, size > MAX_SCAN, size)  # headers, parts, truncated, size


def _as_bytes(raw: object) -> bytes:
    """Callers should pass bytes; str, bytearray and memoryview are accepted, anything else is empty."""
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw)
    return b""


def _walk(
    ctype: str, params: dict[str, str], headers: Headers, body: bytes, depth: int, out: list[Part], nest: int = 0
) -> None:
    # `nest` counts every container level: multiparts do not raise `depth`, and without this
    # bound 1 MB of nested multiparts recursed past Python's limit.
    if len(out) >= MAX_PARTS:
        return
    if ctype.startswith("multipart/") and nest < MAX_NEST:
        children = _split_multipart(body, params.get("boundary", ""))
        if children is not None:
            default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for child in children:
                chead, cbody = split_head_body(child)
                cheaders = parse_header_block(chead)
                cvalue = cheaders.get("content-type")
                # The cached params themselves, not a copy (parse_content_type): a Part's params are read only.
                c_ctype, c_params = _parse_content_type(cvalue) if cvalue else (default, {})
                if c_ctype.startswith("multipart/") or c_ctype in _EMBEDDED:
                    _walk(c_ctype, c_params, cheaders, cbody, depth, out, nest + 1)
                else:  # a leaf: what the call would append, without the call
                    out.append(Part(c_ctype, c_params, cheaders, cbody, depth))
                if len(out) >= MAX_PARTS:
                    return
            return
        ctype = "text/plain"  # a multipart with no usable boundary: read it as text
    if ctype in _EMBEDDED and depth < MAX_DEPTH and nest < MAX_NEST:
        if _is_encoded(headers):
            inner_bytes = normalise_newlines(Part(ctype, params, headers, body, depth).decoded_bytes())
        else:
            inner_bytes = body
        ihead, ibody = split_head_body(inner_bytes.lstrip(b"\n"))
        iheaders = parse_header_block(ihead)
        # A marker part so callers find the original's headers in document order.
        out.append(Part("x-embedded/headers", {}, iheaders, b"", depth + 1))
        i_ctype, i_params = _parse_content_type(iheaders.get("content-type"))
        # The body of an attached message matters only when it is itself a report (a gateway
        # that wraps the DSN it received); the copy of a bounced original is never read, so
        # it is not split either - it is often the largest part of a bounce.
        if i_ctype in _REPORT_TYPES:
            _walk(i_ctype, i_params, iheaders, ibody, depth + 1, out, nest + 1)
        else:
            out.append(Part(i_ctype, i_params, iheaders, ibody, depth + 1))
        return
    out.append(Part(ctype, params, headers, body, depth))


_EMBEDDED = ("message/rfc822", "message/global", "message/partial")
_REPORT_TYPES = frozenset({"multipart/report", "message/delivery-status", "message/global-delivery-status"})


def _is_encoded(headers: Headers) -> bool:
    return headers.get("content-transfer-encoding").strip().lower() in ("base64", "quoted-printable")


_BOUNDARY_LINE = re.compile(rb"^--([^\s]{1,200})[ \t]*$", re.M)


def _split_multipart(body: bytes, boundary: str) -> list[bytes] | None:
    """Split a multipart body; guess the boundary when it is missing or wrong."""
    text = b"\n" + body
    pieces = text.split(b"\n--" + boundary.encode("utf-8", "replace")) if boundary else []
    if len(pieces) < 2:  # no delimiter line found (or no boundary)
        delim = _guess_boundary(body)
        if not delim:
            return None
        pieces = text.split(b"\n" + delim)
    children: list[bytes] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        _, nl, child = piece.partition(b"\n")
        if nl:
            children.append(child)
    return children or None


def _guess_boundary(body: bytes) -> bytes:
    seen: dict[bytes, int] = {}
    for m in _BOUNDARY_LINE.finditer(body):
        token = m.group(1)
        if token.endswith(b"--"):
            token = token[:-2]
        seen[token] = seen.get(token, 0) + 1
        if seen[token] >= 2:
            return b"--" + token
    return b""
