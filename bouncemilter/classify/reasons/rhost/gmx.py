"""United Internet: GMX, web.de, 1&1 / IONOS (mx*.gmx.net, mx-ha*.web.de, *.kundenserver.de).

The error messages United Internet publishes for senders (postmaster.gmx.net/en/error-messages,
postmaster.web.de/en/error-messages, postmaster.1and1.com/en/error-messages).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="gmx",
    hosts=(
        "gmx.net",
        "gmx.de",
        "gmx.com",
        "web.de",
        "kundenserver.de",
        "ionos.com",
        "ionos.de",
        "1and1.com",
        "1und1.de",
        "mail.com",
    ),
    domains=("gmx.net", "gmx.de", "gmx.at", "gmx.ch", "gmx.com", "web.de", "mail.com", "email.de"),
    rules=(
        _R("userunknown", "requested action not taken: mailbox unavailable", "", "550"),
        _R("userunknown", "mailbox unavailable", "5.1.1"),
        _R("mailboxfull", "exceeded storage allocation", "", "552"),
        _R("mailboxfull", "mailbox quota exceeded"),
        _R("mesgtoobig", "mail size limit exceeded", source="1&1: 'Mail size limit exceeded'"),
        _R("expired", "delivery retry timeout exceeded", source="GMX: its own retry limit"),
        _R("requireptr", "invalid dns ptr resource record"),
        _R("requireptr", "no dns ptr resource record"),
        _R("blocked", "ip address is black listed"),
        _R("blocked", "reject due to policy restrictions", source="554 (reputation of the sending IP)"),
        _R("rejected", "sender address is not allowed"),
        _R("rejected", "invalid sender"),
        _R("toomanyconn", "too many connections"),
        _R("spamdetected", "message is in violation of local policy"),
    ),
)
