"""Free (free.fr; mx*.free.fr).

Free's answers to senders (its postmaster texts): rate limits and spam blocks by client IP.
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="free",
    hosts=("free.fr", "proxad.net"),
    domains=("free.fr", "freesbee.fr", "libertysurf.fr", "aliceadsl.fr"),
    rules=(
        _R("blocked", "too many spams from your ip"),
        _R("toomanyconn", "too many errors from your ip"),
        _R("toomanyconn", "too many connections"),
        _R("blocked", "rejected because the sending mta or the sender has not passed validation"),
        _R("userunknown", "user unknown"),
        _R("mailboxfull", "quota exceeded"),
    ),
)
