"""Classic MTA bounce formats: Exim, qmail, Postfix, Sendmail, OpenSMTPD, dma, Courier, James, X1-X6.

Each detector lives in its own module (mta_*.py) and rejects a foreign message on a header or a
marker line before reading the body.
"""

from __future__ import annotations

from . import mta_exim, mta_misc, mta_postfix, mta_qmail, mta_sendmail
from .gate import Gate

DETECTORS: list = [
    ("postfix", mta_postfix.detect),
    ("sendmail", mta_sendmail.detect),
    ("exim", mta_exim.detect),
    ("qmail", mta_qmail.detect),
    ("dma", mta_misc.detect_dma),
    ("opensmtpd", mta_misc.detect_opensmtpd),
    ("courier", mta_misc.detect_courier),
    ("apache-james", mta_misc.detect_james),
    ("x1", mta_misc.detect_x1),
    ("x3", mta_misc.detect_x3),
    ("x6", mta_misc.detect_x6),
]

# What each detector's first check implies (see gate.py). sender_is_daemon (mta_common) is a From that is blank
# or names a mailer daemon, a postmaster, a mail delivery system or the null sender.
_DAEMON = Gate(from_has=("mailer-daemon", "postmaster", "mail delivery", "<>"), from_blank=True)
GATES: dict[str, Gate] = {
    "postfix": _DAEMON,
    "sendmail": Gate(from_has=("mail delivery subsystem",), check=mta_sendmail.sendmail_subject),
    # two of four: the From, the Subject, the Message-ID, X-Failed-Recipients
    "exim": Gate(from_has=("mail delivery system",), headers=("x-failed-recipients",), check=mta_exim.exim_headers),
    "qmail": Gate(
        subject_starts=("failure notice", "delivery failure", "failure delivery", "permanent delivery failure"),
        received_has=("(qmail ",),
    ),
    "dma": _DAEMON,
    "opensmtpd": Gate(from_has=_DAEMON.from_has, from_blank=True, subject_starts=("delivery status notification",)),
    "courier": Gate(
        from_has=("courier mail server at ",),
        subject_starts=("notice: mail delivery status.", "warning: delayed mail."),
        message_id_has=("<courier.",),
    ),
    "apache-james": Gate(
        subject_starts=("[bounce]",), message_id_has=(".javamail.",), received_has=("james smtp server",)
    ),
    "x1": Gate(subject_starts=("returned mail: ",)),
    "x3": Gate(subject_starts=("delivery status notification",)),
    "x6": Gate(subject_starts=("there was an error sending your mail",)),
}
