"""exceedlimit: the message exceeds a per-recipient administrative limit."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="exceedlimit",
    summary="the message exceeds the recipient's administrative size limit",
    status=("4.2.3", "5.2.3"),  # X.2.3 message length exceeds administrative limit
    pseudo=("923",),
    phrases={
        "message header size exceeds limit": "Sisimai ExceedLimit list",
        "message too large": "Sisimai ExceedLimit list",
        "message exceeded the maximum size the user accepts": "qmail-ldap",
        "message exeeded the maximum size the user accepts": "qmail-ldap (its own spelling)",
        "message size exceeds recipient's size limit": "amavisd-new",
        "exceeded google's message size limits": "Gmail 552 5.2.3",
    },
)
