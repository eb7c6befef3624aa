"""The generic reader for bounces in no known format.

Most bounce texts, whatever the MTA, follow one of a few shapes: the failed address on a line
of its own under a heading ("The following addresses had permanent fatal errors"), the
address followed by the server's words (`<a@b>: host x said: 550 ...`, `a@b ... User
unknown`), or an `X-Failed-Recipients:` header. This reader looks for those shapes in the text
before the copy of the original message. It only runs on mail that looks like a bounce
(`looks_like_bounce`), so ordinary mail that happens to quote an address and an error code is
left alone.
"""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from ..text import ADDRESS, clean_address, find_addresses, find_reply_code, find_status, one_line
from .base import Detection

_BOUNCE_FROM = re.compile(
    r"mailer-?daemon|mail-daemon|postmaster|mail delivery|delivery (?:subsystem|system|notification|status)|"
    r"mail administrator|mail system|returned mail|\bbounce|\bmdaemon@",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|returning (?:message|mail) to sender|return(?:ed)? to sender|"
    r"delivery (?:status notification|failure|failed|notification|report|problem|error|has failed)|"
    r"failure notice|failed delivery|mail delivery failed|delivery to .{0,80} failed|"
    r"could not be delivered|not (?:be )?delivered|non[- ]?deliver|nondeliverable|mail failed|"
    r"message (?:not delivered|delivery failed|rejected|could not be delivered|blocked)|"
    r"unable to deliver|cannot be delivered|permanent (?:error|failure)|rejected:|"
    r"warning: (?:could not send|message (?:.{0,60} )?delayed)|delayed mail|delivery delayed|delivery warning|"
    r"not yet been delivered|"
    r"unzustellbar|nicht zugestellt|non remis|non distribuable|no entregado|non recapitato|"
    r"niet (?:afgeleverd|bezorgd)|onbestelbaar|não entregue|不達|配信(?:エラー|不能|失敗)|未達|送信エラー|"
    r"mail system error|mail error|error sending|delivery notification|user unknown|unknown user|no such user",
    re.I,
)
_REPLY_PREFIX = re.compile(r"^\s*(?:re|fwd?|aw|wg|tr|rv|sv|vs|antw|ref|r)\s*(?:\[\d+\]\s*)?:", re.I)
_NULL_RETURN_PATH = re.compile(r"^\s*<\s*>\s*$")

# Where the copy of the original message starts: nothing after it describes the failure.
_ORIGINAL_MARKER = re.compile(
    r"^[ \t\-=_*|>#]*(?:"
    r"original message|original mail|(?:a )?copy of (?:the|your) (?:original )?message|"
    r"below this line is a copy|this is a copy of|returned message|undelivered message|"
    r"message text follows|text of (?:the|your) message|(?:the )?headers? of (?:the|your) (?:original )?message|"
    r"original message (?:headers|follows)|unsent message|your message reads|message headers follow|"
    r"content-type: (?:message/rfc822|text/rfc822-headers)|received: from "
    r")",
    re.I | re.M,
)
# Headings under which the failed addresses are listed, one per line.
_LIST_HEADING = re.compile(
    r"(?:following (?:address|recipient)|failed (?:address|recipient)|permanent fatal error|"
    r"could not be delivered to|delivery (?:to|has) failed|undeliverable to|"
    r"unable to deliver (?:your )?message to|message was not delivered to|not delivered to|"
    r"delivery to the following|recipient\(s\)|invalid recipient|unknown recipient|"
    r"did not reach the following|addresses? failed|was rejected by|failed addresses|"
    r"(?:to|for) (?:this|the following) (?:e-?mail )?(?:address|recipient))",
    re.I,
)
# Words right before an address that name it as the one that failed, on the same line:
# "Undeliverable Address: a@b", "unable to deliver your message to a@b", "(Originally addressed to a@b)".
_INLINE_CUE = re.compile(
    r"(?:(?:could ?n[o']t|cannot|can't|unable to|failed to) (?:be )?deliver(?:ed)?(?: (?:your|the|this) "
    r"(?:message|mail|e-?mail))?(?: to)?|not (?:be )?delivered to|delivery (?:to|failed for)|"
    r"originally addressed to|undeliverable (?:address|recipient|to)|did not reach(?: the following)? recipients?|"
    r"(?:intended|failed|invalid|unknown|bad|original|final|rejected) (?:recipient|address)(?:es|s)?|"
    r"recipient address(?:es)?|unknown user|"
    # "Your message to a@b has reached our local address ..." (a university's own mail server),
    # "... addressed to email address :" (a hosted relay's failure notice, the address on the next line)
    r"your message to|addressed to(?: (?:the )?(?:e-?mail )?address)?)\s*[:=]?\s*[\"'<(\[]*$",
    re.I,
)
# What may stand before an address that is alone on its line under such a cue: bullets, quotes, brackets.
_LEAD = re.compile(r"^[\s\-*>\"'<(\[]*$")
# "<a@b>:" alone on a line: the qmail/Postfix shape, the reason follows on the next lines.
_ALONE_WITH_COLON = re.compile(r"^[ \t]*<[^<>\s]{1,254}>:[ \t]*$")
_ERROR_WORDS = re.compile(
    r"(?:unknown|not exist|no such|invalid|rejected|refused|denied|full|over ?quota|failed|failure|"
    r"unavailable|disabled|inactive|not found|unrouteable|unreachable|timed? ?out|expired|blocked|"
    r"spam|policy|too (?:large|big|many)|exceeded|not allowed|does not|cannot|could not|unable|"
    r"error|problem|suspended|deactivated|relay|wrong|no longer (?:valid|exists?|active|in use|available))",
    re.I,
)
# A warning that delivery is still being tried, in a report of no known format (Exim's and Sendmail's
# "Warning: message delayed" texts, Symantec's gateway "Delivery attempts will continue to be made for 5 day(s)",
# hosted "Delivery of email to this address has been postponed"): a delay, never a failure of the address.
_STILL_TRYING = re.compile(
    r"delivery attempts will continue|will continue to (?:try|attempt)|(?:has|have) not yet been delivered|"
    r"has been postponed|this is (?:just )?a warning|advisory[- ]only|no action is required on your part|"
    r"this warning may be repeated|(?:is|are) still (?:trying|being retried)|will (?:keep trying|retry)",
    re.I,
)
# ... unless it also says it gave up: then the attempts it speaks of are over.
_GAVE_UP = re.compile(r"(?:gave|given) up|permanent (?:error|failure)|fatal error|will not be retried", re.I)
_SKIP_LOCALPARTS = ("mailer-daemon", "postmaster", "mail-daemon", "nobody", "root", "noreply", "no-reply")
_MAX_TEXT = 16_384


def looks_like_bounce(msg: Message) -> bool:
    """Headers that only delivery reports carry: a cheap gate for the generic readers."""
    h = msg.headers
    if "x-failed-recipients" in h or msg.report_type() == "delivery-status":
        return True
    if _NULL_RETURN_PATH.match(h.get("return-path", "x")):
        return True
    if _BOUNCE_FROM.search(h.get("from")):
        return True
    subject = h.decoded("subject")
    # A person replying to or forwarding a bounce keeps its subject behind "Re:" or "Fwd:".
    if _REPLY_PREFIX.match(subject):
        return False
    return bool(_BOUNCE_SUBJECT.search(subject))


def unmistakable_bounce(msg: Message) -> str:
    """Evidence that `msg` is a delivery failure report even when no recipient can be read."""
    h = msg.headers
    if msg.report_type() == "delivery-status":
        return "Content-Type: multipart/report; report-type=delivery-status"
    if "x-failed-recipients" in h:
        return "X-Failed-Recipients header"
    if _BOUNCE_FROM.search(h.get("from")) and _BOUNCE_SUBJECT.search(h.decoded("subject")):
        return f"From: {one_line(h.decoded('from'), 60)} / Subject: {one_line(h.decoded('subject'), 60)}"
    return ""


def report_text(msg: Message) -> str:
    """The part of the readable text that describes the failure (before the original's copy)."""
    text = msg.body_text()[:_MAX_TEXT]
    m = _ORIGINAL_MARKER.search(text)
    return text[: m.start()] if m and m.start() > 0 else text


def _own_addresses(msg: Message) -> set[str]:
    own = set(find_addresses(msg.headers.get("from")))
    own.update(find_addresses(msg.headers.get("to")))
    own.update(find_addresses(msg.headers.get("reply-to")))
    return own


def _usable(addr: str, own: set[str]) -> bool:
    local = addr.split("@", 1)[0]
    return addr not in own and local not in _SKIP_LOCALPARTS


def detect(msg: Message) -> Detection | None:
    own = _own_addresses(msg)
    failed_header = [a for a in find_addresses(" ".join(msg.headers.get_all("x-failed-recipients"))) if a]
    text = report_text(msg)
    rows = _scan(text, own)
    if failed_header:
        by_addr = {r.recipient: r for r in rows}
        rows = [
            by_addr.get(a) or RecipientResult(recipient=a, diagnostic=diagnostic_for(text, a)) for a in failed_header
        ]
        return Detection(rows, f"X-Failed-Recipients: {', '.join(failed_header)[:120]}")
    if not rows:
        return None
    if still_trying(text):
        for row in rows:
            row.action = row.action or "delayed"
        return Detection(rows, "delayed address in a delivery warning's text", kind="delay")
    return Detection(rows, "failed address with an error in the bounce text")


def still_trying(text: str) -> bool:
    """Whether a report's text is a warning that delivery is still being tried."""
    return _STILL_TRYING.search(text) is not None and _GAVE_UP.search(text) is None


def _scan(text: str, own: set[str]) -> list[RecipientResult]:
    """Addresses that the text reports as failed, each with the words around it."""
    lines = text.split("\n")
    rows: dict[str, RecipientResult] = {}
    under_heading = False
    heading = ""
    for i, line in enumerate(lines):
        if not line.strip() or line.startswith(">"):  # quoted text is somebody else's report
            continue
        if _LIST_HEADING.search(line) and not ADDRESS.search(line):
            under_heading = True
            heading = line.strip()
            continue
        m = ADDRESS.search(line)
        if not m:
            continue
        addr = clean_address(m.group(0))
        if not addr or not _usable(addr, own) or addr in rows:
            continue
        rest = line[m.end() :].lstrip(">\"' ").lstrip(":.,;").strip()
        block = _block(lines, i, rest)
        cued = (
            _INLINE_CUE.search(line[max(0, m.start() - 80) : m.start()]) is not None
            or bool(_ALONE_WITH_COLON.match(line))
            or _cued_above(lines, i, line[: m.start()])
        )
        if cued or under_heading or _ERROR_WORDS.search(block) or find_reply_code(block) or find_status(block):
            # no words of its own: the report's words about it are the line that named it, or its heading
            words = block or _sentence_goes_on(lines, i) or _naming_words(lines, i, line, m.start()) or heading
            rows[addr] = _row(addr, words)
        if len(rows) >= 50:
            break
    return list(rows.values())


def _sentence_goes_on(lines: list[str], i: int) -> str:
    """The rest of a sentence the address stands in the middle of, past a blank line ("Delivery of email to this
    address / "a@b" / has been postponed due to a full mailbox."): a next line that starts in lower case."""
    for nxt in lines[i + 1 : i + 4]:
        text = nxt.strip()
        if text:
            return text if text[0].islower() and not ADDRESS.search(text) else ""
    return ""


def _naming_words(lines: list[str], i: int, line: str, start: int) -> str:
    """The words before the address on its line ("Did not reach the following recipient:"), else the line above
    when the address stands alone under it."""
    before = line[:start].strip(" \t<\"'([-*:")
    if before:
        return before
    return lines[i - 1].strip() if i and _cued_above(lines, i, line[:start]) else ""


def _cued_above(lines: list[str], i: int, lead: str) -> bool:
    """An address alone at the start of its line whose cue ends the line above ("Your message to:",
    "could not be delivered to", "addressed to email address :")."""
    if i == 0 or not _LEAD.match(lead):
        return False
    above = lines[i - 1].rstrip()
    return bool(above) and _INLINE_CUE.search(above[-80:]) is not None


def _block(lines: list[str], i: int, rest: str) -> str:
    """The rest of line i plus its indented or unbroken continuation lines."""
    parts = [rest] if rest else []
    for nxt in lines[i + 1 : i + 6]:
        if not nxt.strip() or ADDRESS.match(nxt.strip().lstrip("<")):
            break
        if not parts or nxt[:1] in (" ", "\t") or not rest:
            parts.append(nxt.strip())
        else:
            break
    return " ".join(parts)


def _row(addr: str, block: str) -> RecipientResult:
    diagnostic = one_line(block.strip("()[] "))
    return RecipientResult(
        recipient=addr,
        status=find_status(diagnostic),
        reply_code=find_reply_code(diagnostic),
        diagnostic=diagnostic,
    )


def diagnostic_for(text: str, recipient: str) -> str:
    """The words the text says about `recipient` (for DSNs that leave Diagnostic-Code out)."""
    if not recipient:
        return ""
    text = text[:_MAX_TEXT]
    m = _ORIGINAL_MARKER.search(text)
    if m and m.start() > 0:
        text = text[: m.start()]
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if recipient in line.lower():
            m2 = re.search(re.escape(recipient), line, re.I)
            rest = line[m2.end() :].lstrip(">\"' ").lstrip(":.,;").strip() if m2 else ""
            block = _block(lines, i, rest)
            if _ERROR_WORDS.search(block) or find_reply_code(block):
                return one_line(block.strip("()[] "))
    return ""
