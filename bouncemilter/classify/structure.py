"""Read a big message by its MIME structure: keep every part's headers and the start of its body, skip the rest
of big bodies, and so find the parts that come after them.

A bounce is decided by its report part (message/delivery-status, message/feedback-report) and the headers of
the original. Usually they come first, but a DSN may carry a large attachment before its report part; a plain
cut at the scan window (1 MiB) then loses the report and the bounce names nobody. The `Skimmer` streams the
message once and keeps, within `budget` bytes:

- every header block (of the message, of each part, of an attached message);
- every boundary line, so the kept copy is still a well-formed MIME message;
- of each body: all of a report part (REPORT_TYPES) and of a non-multipart message, the first LEAF_KEEP bytes of
  a text or message part, nothing of any other part (attachments: images, archives, octet streams).

Skipped bodies are not split into lines: the skimmer jumps from one line that starts with "-" to the next
(bytes.find, C speed), so 50 MB of attachment costs a few milliseconds and no memory. `done` turns true once a
report part was read to its end and the part after it has begun: the milter then tells the MTA to skip the rest.
Pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

from .mime import MAX_HEADER_BYTES, MAX_SCAN, parse_content_type, parse_header_block

REPORT_TYPES = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/feedback-report",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    }
)
LEAF_KEEP = 64 * 1024  # bytes kept of a text or message part's body
PREAMBLE_KEEP = 4 * 1024  # of a multipart's preamble
MAX_LINE = 8 * 1024  # a longer line in a skipped body is not a boundary line (those are < 80 bytes)
MAX_BOUNDARIES = 16  # nesting of multiparts followed

_HEAD, _BODY = "head", "body"


class Skimmer:
    def __init__(self, budget: int = MAX_SCAN, leaf_keep: int = LEAF_KEEP) -> None:
        self.budget = budget
        self.leaf_keep = leaf_keep
        self.out = bytearray()
        self.seen = 0  # bytes fed
        self.report_done = False  # a report part was read to its end
        self.cut_report = False  # a report part was longer than what could be kept
        self._partial = b""  # the start of a line that the next feed completes (begins at a line start)
        self._bol = True  # the next byte fed starts a line
        self._state = _HEAD
        self._head = bytearray()
        self._boundaries: list[bytes] = []  # open multiparts, outermost first
        self._keep = 0  # bytes of the current body still to keep
        self._report = False  # the current body is a report part
        self._dropped = False  # bytes of the current body were not kept
        self._top = True  # the current entity is the message itself

    # -- public

    @property
    def done(self) -> bool:
        """Nothing after this point can change the result: stop reading (the MTA may SKIP the rest)."""
        if len(self.out) >= self.budget:
            return True
        return self.report_done and self._state == _BODY and not self._report

    @property
    def held(self) -> int:
        """Bytes held now (the kept copy and what waits for the end of its line): what a memory budget counts."""
        return len(self.out) + len(self._partial) + len(self._head)

    def feed(self, data: bytes) -> None:
        self.seen += len(data)
        if self._partial:
            data = self._partial + data
            self._partial = b""
        pos, n = 0, len(data)
        while pos < n:
            if not self._bol:  # the rest of a line too long to wait for
                nl = data.find(b"\n", pos)
                end = n if nl < 0 else nl + 1
                if self._state == _BODY and self._keep > 0:
                    self._body(data[pos:end])
                pos = end
                self._bol = nl >= 0
                continue
            if self._state == _BODY and self._keep <= 0:
                pos = self._skip(data, pos)
                if pos >= n:
                    return
                # a boundary line starts at pos: read it as a line below
            nl = data.find(b"\n", pos)
            if nl < 0:
                rest = data[pos:]
                if len(rest) <= MAX_LINE:
                    self._partial = rest
                else:  # a very long line: take what there is, the rest follows mid-line
                    if self._state == _BODY:
                        self._body(rest)
                    self._bol = False
                return
            self._line(data[pos : nl + 1])
            pos = nl + 1

    def result(self) -> bytes:
        """The kept copy (what was fed so far, plus an unfinished last line)."""
        tail = self._partial[: max(self.budget - len(self.out), 0)] if self._state != _BODY or self._keep > 0 else b""
        self._end_part(at_end=True)
        return bytes(self.out) + tail

    # -- lines

    def _line(self, line: bytes) -> None:
        level = self._boundary(line) if line[:2] == b"--" and self._boundaries else None
        if level is not None:
            index, closing = level
            self._end_part()
            del self._boundaries[index + 1 :]  # multiparts nested in this one that never closed
            self._emit(line)
            if closing:
                self._boundaries.pop()
                self._enter_body(keep=0, report=False)  # the epilogue
            else:
                self._state, self._head, self._top = _HEAD, bytearray(), False
            return
        if self._state == _HEAD:
            if len(self._head) < MAX_HEADER_BYTES:
                self._head += line
                self._emit(line)
            if line in (b"\n", b"\r\n"):
                self._start_body()
            return
        self._body(line)

    def _skip(self, data: bytes, pos: int) -> int:
        """Jump over a body not kept: from line start to line start, looking only at lines that begin with
        '-'. Returns the position of a boundary line (read next as a line), or len(data)."""
        n = len(data)
        while pos < n:
            if data[pos : pos + 1] == b"-":
                nl = data.find(b"\n", pos)
                if nl < 0:
                    tail = data[pos:]
                    if len(tail) <= MAX_LINE:
                        self._partial = tail
                    else:
                        self._bol = False
                    return n
                if self._boundary(data[pos : nl + 1]) is not None:
                    return pos
                pos = nl + 1
                continue
            nxt = data.find(b"\n-", pos)
            if nxt < 0:
                self._bol = data[n - 1 : n] == b"\n"
                return n
            pos = nxt + 1
        self._bol = True
        return n

    def _boundary(self, line: bytes) -> tuple[int, bool] | None:
        """(index in the stack, closing?) when `line` is a delimiter of an open multipart (innermost first)."""
        text = line.rstrip(b" \t\r\n")
        for index in range(len(self._boundaries) - 1, -1, -1):
            b = self._boundaries[index]
            if text == b:
                return index, False
            if text == b + b"--":
                return index, True
        return None

    # -- parts

    def _start_body(self) -> None:
        headers = parse_header_block(bytes(self._head).replace(b"\r\n", b"\n"))
        ctype, params = parse_content_type(headers.get("content-type"))
        encoded = headers.get("content-transfer-encoding").strip().lower() in ("base64", "quoted-printable")
        boundary = params.get("boundary", "")
        if ctype.startswith("multipart/") and boundary and len(self._boundaries) < MAX_BOUNDARIES:
            self._boundaries.append(b"--" + boundary.encode("utf-8", "replace"))
            self._enter_body(keep=PREAMBLE_KEEP, report=False)
        elif ctype in ("message/rfc822", "message/global") and not encoded:
            self._state, self._head, self._top = _HEAD, bytearray(), False  # the attached message's headers
        elif ctype in REPORT_TYPES or self._top:
            self._enter_body(keep=self.budget, report=ctype in REPORT_TYPES)
        elif ctype.startswith(("text/", "message/", "multipart/")):  # (a multipart without boundary is text)
            self._enter_body(keep=self.leaf_keep, report=False)
        else:
            self._enter_body(keep=0, report=False)  # an attachment: headers only
        self._top = False

    def _enter_body(self, keep: int, report: bool) -> None:
        self._state, self._keep, self._report, self._dropped = _BODY, keep, report, False

    def _body(self, data: bytes) -> None:
        take = data[: self._keep]
        self._keep -= len(take)
        kept = self._emit(take)
        if len(take) < len(data) or kept < len(take):
            self._dropped = True

    def _end_part(self, at_end: bool = False) -> None:
        if self._state == _BODY and self._report:
            if self._dropped or (at_end and self._keep <= 0):
                self.cut_report = True
            elif not at_end:
                self.report_done = True
            self._report = False

    def _emit(self, data: bytes) -> int:
        room = self.budget - len(self.out)
        if room <= 0:
            return 0
        if len(data) > room:
            data = data[:room]
        self.out += data
        return len(data)


SKIM_CHUNK = 256 * 1024


def skim(raw: bytes, budget: int = MAX_SCAN) -> bytes:
    """The kept copy of a whole message (see Skimmer): at most `budget` bytes. Stops reading once `done`
    (the usual big bounce: the report first, then a huge copy of the original)."""
    s = Skimmer(budget)
    for start in range(0, len(raw), SKIM_CHUNK):
        s.feed(raw[start : start + SKIM_CHUNK])
        if s.done:
            break
    return s.result()
