"""systemfull: the receiving mail system is out of disk or resources."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="systemfull",
    summary="the receiving mail system is out of disk space or resources",
    status=("4.3.1", "4.4.5", "5.3.1"),  # X.3.1 mail system full, X.4.5 mail system congestion
    pseudo=("931",),
    phrases={
        "mail system full": "RFC 3463 X.3.1 text",
        "insufficient disk space": "generic wording",
        "insufficient system resources": "Exchange Online 4.3.1, Postfix 452",
        "system storage": "generic wording",
    },
)
