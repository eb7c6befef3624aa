"""NTT docomo (mfsmax.docomo.ne.jp): the carrier's fixed replies, and its status codes."""

from ._base import Provider, Rule


def _by_stage(status: str, reply: str, text: str, stage: str) -> str:
    # A bare "550 Unknown user" with no specific status: at RCPT the address is unknown; said at the
    # end of DATA it is the carrier refusing the sender (its own filter).
    if status in ("", "5.0.0"):
        return {"RCPT": "userunknown", "DATA": "rejected"}.get(stage, "")
    return ""


_R = Rule
PROVIDER = Provider(
    name="docomo",
    hosts=("mfsmax.docomo.ne.jp",),
    rules=(
        _R("userunknown", "", "5.1.1"),
        _R("userunknown", "", "5.0.911"),
        _R("filtered", "", "5.2.0"),
        _R("mailboxfull", "552 too much mail data"),
        _R("toomanyconn", "552 too many recipients"),
        _R("syntaxerror", "503 bad sequence of commands"),
        _R("syntaxerror", "504 command parameter not implemented"),
    ),
    by_stage=_by_stage,
)
