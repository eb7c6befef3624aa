"""syntaxerror: the server refused an SMTP command as malformed or out of sequence."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="syntaxerror",
    summary="the server refused an SMTP command as malformed or out of sequence",
    status=("5.5.2", "5.5.6"),  # X.5.2 syntax error; X.5.6 AUTH line too long (RFC 4954)
    pseudo=("902",),
    # RFC 5321 5xx/4xx 500-507: syntax errors, unknown commands, bad sequence, bad parameters
    reply=(
        "400",
        "401",
        "402",
        "403",
        "404",
        "405",
        "406",
        "407",
        "500",
        "501",
        "502",
        "503",
        "504",
        "505",
        "506",
        "507",
    ),
    phrases={
        "syntax error in parameters or arguments": "RFC 5321 501 text (Yahoo)",
        "bad sequence of commands": "RFC 5321 503 text (NTT docomo)",
        "command parameter not implemented": "RFC 5321 504 text",
        "bad address syntax": "Tencent QQ",
        "angle-brackets nested too deep": "Exim parser",
        'expected word or "<"': "Exim parser",
        "domain missing in source-routed address": "Exim parser",
        "malformed address:": "Exim parser",
    },
)
