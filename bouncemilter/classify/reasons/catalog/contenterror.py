"""contenterror: the message's format or encoding was refused."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="contenterror",
    summary="the message's format, headers or encoding were refused",
    status=(
        "4.6.0",
        "4.6.2",
        "4.6.5",
        "5.6.0",
        "5.6.1",
        "5.6.2",
        "5.6.3",
        "5.6.5",
        "5.6.6",
        "5.6.7",
        "5.6.8",
        "5.6.9",
    ),
    pseudo=("960",),
    phrases={
        "header size exceeds maximum permitted": "Sisimai ContentError list",
        "improper use of 8-bit data in message header": "Sisimai ContentError list",
        "message header size, or recipient list, exceeds policy limit": "Sisimai ContentError list",
        "message mime complexity exceeds the policy maximum": "Sisimai ContentError list",
        "routing loop detected -- too many received: headers": "Sisimai ContentError list",
        "this message contain invalid mime headers": "Sisimai ContentError list",
        "this message contain improperly-formatted binary content": "Sisimai ContentError list",
        "this message contain text that uses unnecessary base64 encoding": "Sisimai ContentError list",
        "headers too large": "generic wording",
        "message is malformed": "Gmail 554 5.6.0",
        "malformed message": "generic wording",
        "invalid mime": "generic wording",
        "invalid characters": "Exchange Online 5.6.11",
        "8-bit data": "generic wording",
        "content rejected": "Amazon SES template",
        "duplicate header": "amavisd-new BAD HEADER ('duplicate header field')",
        'too many "received" headers': "Exim",
        "- bad header:": "amavisd-new verdict",
    },
)
