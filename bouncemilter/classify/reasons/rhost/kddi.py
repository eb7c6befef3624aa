"""KDDI au (ezweb.ne.jp, au.com): the carrier's content filter and its mailbox server say
"User unknown" in two shapes."""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="kddi",
    hosts=("ezweb.ne.jp", "au.com"),
    domains=("ezweb.ne.jp", "au.com"),
    rules=(
        _R("filtered", "550 : user unknown", source="the content filter: no address in the reply"),
        _R("userunknown", ">: user unknown", source="the mailbox server: '550 <addr>: User unknown'"),
    ),
)
