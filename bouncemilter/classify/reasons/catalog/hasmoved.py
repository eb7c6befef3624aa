"""hasmoved: the mailbox has moved and the server names no forwarding address."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="hasmoved",
    summary="the mailbox or domain has moved to a new owner or address (hard)",
    hard=True,
    # X.1.6 mailbox has moved; X.7.17/X.7.18 mailbox/domain owner has changed (RFC 7293)
    status=("4.1.6", "5.1.6", "5.7.17", "5.7.18"),
    pseudo=("916",),
    phrases={
        " has been replaced by ": "qmail / Sendmail user table ('x has been replaced by y')",
        "no longer on server": "Sisimai HasMoved list",
        "has moved to": "generic wording ('mailbox has moved to')",
        "not our customer": "Sisimai HasMoved list",
    },
)
