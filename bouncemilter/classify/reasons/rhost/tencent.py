"""Tencent QQ Mail (mx1/mx2/mx3.qq.com for qq.com, foxmail.com).

Tencent's help pages for senders (service.mail.qq.com/detail/...), linked from its replies.
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="tencent",
    hosts=("qq.com", "tencent.com", "foxmail.com"),
    domains=("qq.com", "foxmail.com", "vip.qq.com"),
    rules=(
        _R("authfailure", "dmarc check failed"),
        _R("authfailure", "spf check failed"),
        _R("blocked", "suspected spam ip"),
        _R("filtered", "mail is rejected by recipients"),
        _R("mesgtoobig", "message too large"),
        _R("spamdetected", "mail content denied"),
        _R("spamdetected", "spam is embedded in the email"),
        _R("spamdetected", "suspected spam"),
        _R("syntaxerror", "bad address syntax"),
        _R("toomanyconn", "connection denied"),
        _R("toomanyconn", "frequency limited"),
        _R("toomanyconn", "mailbox unavailable or access denied"),
        _R("suspend", "is a deactivated mailbox"),
        _R("userunknown", "mailbox not found"),
    ),
)
