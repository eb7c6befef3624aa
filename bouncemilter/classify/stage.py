"""The SMTP stage a remote server answered at, read from a bounce's structure.

The stage tells a missing mailbox (refused at RCPT) from a filter (refused after DATA) or a refused
sender (MAIL FROM). Detectors set `RecipientResult.smtp_command` from their format: a Sendmail
">>> RCPT To:" transcript line, qmail's "does not like recipient", Exim's "after RCPT TO:", a
vendor tag such as Yahoo's "[RCPT_TO]". `split` reads the one tag any MTA may leave in a
diagnostic, Postfix's "(in reply to RCPT TO command)" suffix, and removes it from the words.
"""

from __future__ import annotations

import re

STAGES = ("CONN", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "AUTH", "STARTTLS")

_NAMES = (
    ("rcpt", "RCPT"),
    ("mail", "MAIL"),
    ("end of data", "DATA"),
    ("end-of-data", "DATA"),
    ("data", "DATA"),
    ("helo", "HELO"),
    ("ehlo", "EHLO"),
    ("lhlo", "EHLO"),
    ("initial connection", "CONN"),
    ("greeting", "CONN"),
    ("connect", "CONN"),
    ("starttls", "STARTTLS"),
    ("auth", "AUTH"),
)
# Postfix smtp(8): "... (in reply to RCPT TO command)", "(in reply to end of DATA command)".
_IN_REPLY = re.compile(r"\(in reply to ([A-Za-z][A-Za-z \-]{0,30}?)(?: command)?\)\s*$")


def name(words: str) -> str:
    """'RCPT TO:<a@b>' / 'end of data' / 'MAIL FROM' / 'initial connection' -> RCPT, DATA, MAIL, CONN ("" if none)."""
    low = words.lower().strip()
    for key, stage in _NAMES:
        if low.startswith(key):
            return stage
    return ""


# Exchange / Office 365 wrap a remote server's refusal of the recipient (at RCPT) in this sentence:
# "550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 Unknown user x".
_EXCHANGE_RCPT = "unknown recipient or mailbox unavailable ->"


# A reply that echoes the command it answers in the protocol's own upper case ("550 RCPT <a@b>
# does not exist", SmarterMail; "RCPT TO:<a@b>"): the RCPT stage (split, below).


# qmail-remote.c names the stage in its own sentence, whichever program wraps its words into a bounce (qmail-send,
# a provider's own template, a list manager quoting it): "1.2.3.4 does not like recipient. Remote host said: ...".
QMAIL_REMOTE_STAGES = (
    ("does not like recipient", "RCPT"),
    ("but sender was rejected", "MAIL"),
    ("but my name was rejected", "HELO"),
    ("but greeting failed", "CONN"),
    ("failed on DATA command", "DATA"),
    ("failed after I sent the message", "DATA"),
)


def qmail_remote_stage(text: str) -> str:
    """The stage a qmail-remote sentence in `text` names ("" when none)."""
    for phrase, stage in QMAIL_REMOTE_STAGES:
        if phrase in text:
            return stage
    return ""


def split(diagnostic: str) -> tuple[str, str]:
    """(the diagnostic without Postfix's stage suffix, the stage) - ("", "") stays as it is."""
    if "(in reply to" not in diagnostic:
        if "RCPT" in diagnostic and ("RCPT <" in diagnostic or "RCPT TO:" in diagnostic):
            return diagnostic, "RCPT"
        if "->" in diagnostic and _EXCHANGE_RCPT in diagnostic:
            return diagnostic, "RCPT"
        return diagnostic, qmail_remote_stage(diagnostic)
    # The suffix is the last "(in reply to" (matched there only: no scan over the whole text).
    at = diagnostic.rfind("(in reply to")
    m = _IN_REPLY.match(diagnostic, at)
    if m is None:
        return diagnostic, ""
    return diagnostic[:at].rstrip(), name(m.group(1))
