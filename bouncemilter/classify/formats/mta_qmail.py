"""qmail-send ("Hi. This is the qmail-send program at ...") and the two qmail-like formats that
Sisimai calls X2 ("Unable to deliver message to the following address(es).") and X4 ("Your mail
message to the following address(es) could not be delivered."): one "<address>:" line per failed
recipient, then what went wrong, then "--- Below this line is a copy of the message."."""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from ..reasons.vendor import TABLES as VENDOR
from ..stage import qmail_remote_stage
from .base import Detection
from .mta_common import cut, from_reply_code, make_row, report_text, unique

_QMAIL_RECEIVED = re.compile(r"^\(qmail \d+ invoked (?:for bounce|from network)\)")
_START = (
    "Hi. This is the qmail",
    "This is the qmail-send program",
    "Unable to deliver message to the following address",
    "Your mail message to the following address(es) could not be delivered",
    "I'm afraid I wasn't able to deliver your message to the following addresses",
)
_END = (
    "--- Below this line is a copy of the message",
    "--- Enclosed is a copy of the message",
    "--- Original message follows",
    "--- Below the next line is a copy of the message",
)
# "<x@y>:" with an "@" that has a character on each side: a lookahead, then a possessive run. Not
# "[^<>\s]+@[^<>\s]+", which backtracked over every "@" of an unclosed "<a@a@a@..." line (bench/fuzz_classify.py)
_RCPT = re.compile(r"^<(?=[^<>\s]*?[^<>\s]@[^<>\s])([^<>\s]++)>:\s*(.*)$")
_REMOTE = re.compile(
    r"(?:Connected to (\S+) but |^(\S+) (?:does not like recipient|failed on DATA command|failed after I sent)|"
    r"Giving up on (\S+?)\.?$|remote host (\S+) said:)",
    re.M,
)
_QMAIL_STATUS = re.compile(r"\(?#([245]\.\d{1,3}\.\d{1,3})\)?|\[#([245]\.\d{1,3}\.\d{1,3})\]")
_NOISE = re.compile(
    r"^/?(?:I'm not going to try again; this message has been in the queue too long\.?|Giving up on \S+)\s*$"
)


def detect(msg: Message) -> Detection | None:
    subject = msg.headers.get("subject").strip().lower()
    received = msg.headers.get_all("received")
    if not (
        subject.startswith(("failure notice", "delivery failure", "failure delivery", "permanent delivery failure"))
        or any(_QMAIL_RECEIVED.match(r.strip()) for r in received[:3])
    ):
        return None
    text = report_text(msg)
    starts = [i for i in (text.find(m) for m in _START) if i >= 0]
    if not starts:
        return None
    body = cut(text[min(starts) :], *_END)
    rows = unique(_read(body))
    if not rows:
        return None
    return Detection(rows, "qmail: " + text[min(starts) :].split("\n", 1)[0][:60])


def _read(body: str) -> list[RecipientResult]:
    blocks: list[tuple[str, list[str]]] = []
    for line in body.split("\n")[:2000]:
        m = _RCPT.match(line.strip())
        if m:
            blocks.append((m.group(1), [m.group(2)] if m.group(2) else []))
        elif blocks and line.strip():
            blocks[-1][1].append(line.strip())
    rows = []
    for addr, lines in blocks:
        block = "\n".join(lines)
        rows.append(_row(addr, block))
    return rows


def _row(addr: str, block: str) -> RecipientResult:
    remote = ""
    m = _REMOTE.search(block)
    if m:
        remote = next(g for g in m.groups() if g)
    status = ""
    s = _QMAIL_STATUS.search(block)
    if s:
        status = s.group(1) or s.group(2)
    said = block.find("Remote host said:")
    if said >= 0:
        lines = block[said + len("Remote host said:") :].split("\n")
        diagnostic = " ".join(ln for ln in lines if not _NOISE.match(ln))
    else:
        lines = [ln for ln in block.split("\n") if not _NOISE.match(ln)]
        diagnostic = " ".join(lines)
        inner = diagnostic.find(" said: ")
        if inner >= 0 and from_reply_code(diagnostic[inner + 7 :]):
            # qmail-remote-fallback: "...; remote host 192.0.2.1 said: 550 No such user . (#5.5.0)"
            diagnostic = diagnostic[inner + 7 :]
            diagnostic = diagnostic.split(" (Other MXes tried:")[0]
    diagnostic = _QMAIL_STATUS.sub("", diagnostic).strip().removesuffix(".").strip() if said < 0 else diagnostic
    stage = _stage(block)
    row = make_row(addr, diagnostic, remote_mta=remote, smtp_command=stage)
    if not row.status:
        row.status = status
    # qmail's own sentences name the cause; they wrap the remote reply, so the whole block is read.
    preset, phrase = VENDOR["qmail"].find(" ".join(block.split()), True, stage)
    if preset:
        quoted = phrase if phrase.startswith("stage:") else f'"{phrase}"'
        row.reason, row.reason_rule = preset, f"vendor:qmail/{quoted}"
    # qmail-send only bounces once it has given up, even when the last try was a 4xx.
    row.action = "failed"
    return row


def _stage(block: str) -> str:
    stage = qmail_remote_stage(block)
    if stage:
        return stage
    m = re.search(r"most progress was (RCPT|MAIL|DATA)", block)
    return m.group(1) if m else ""
