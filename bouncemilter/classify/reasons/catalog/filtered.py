"""filtered: the recipient's own rules (or a filter in front of the mailbox) refused the message."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="filtered",
    summary="the recipient's filter or settings refused the message; 'user unknown' said after DATA",
    # X.2.0 other mailbox status, X.2.1 mailbox disabled, X.1.4 ambiguous, X.2.4 list expansion (RFC 3463)
    status=("4.2.4", "5.1.4", "5.2.0", "5.2.1", "5.2.4"),
    pseudo=("910", "924"),
    phrases={
        "because the recipient is only accepting mail from specific email addresses": "AOL (Phoenix)",
        "bounced address": "SendGrid ('a message to an address has previously been Bounced')",
        "due to extended inactivity new mail is not currently being accepted for this mailbox": "Sisimai list",
        "has restricted sms e-mail": "AT&T SMS gateway",
        "is not accepting any mail": "Sisimai Filtered list",
        "message rejected due to user rules": "Sisimai Filtered list",
        "not found recipient account": "Sisimai Filtered list",
        "refused due to recipient preferences": "Facebook",
        "resolver.rst.notauthorized": "MS Exchange NDR code (restricted recipient)",
        "this account is protected by": "Sisimai Filtered list (Boxbe/challenge gateways)",
        "user reject": "Sisimai Filtered list",
        "refuse to receive mail": "Willcom ('address recipient id refuse to receive mail')",
        "you have been blocked by the recipient": "Sisimai Filtered list",
        "mail is rejected by recipients": "Tencent QQ",
        "cannot route mail to user": "Lotus Domino",
    },
)
