"""vacation: an out-of-office auto-reply (kind auto_reply), or a bounce row quoting one."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="vacation",
    summary="an out-of-office or other auto-reply, not a failure",
    phrases={
        "i am away on vacation": "vacation(1) style auto-replies",
        "i am away until": "vacation(1) style auto-replies",
        "i am out of the office": "Exchange / Outlook out-of-office",
        "i will be traveling for work on": "vacation(1) style auto-replies",
    },
)
