"""badreputation: the receiving site throttled or refused us over our IP/domain reputation."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="badreputation",
    summary="our sending IP or domain has a poor reputation at the receiving site",
    pseudo=("975",),
    phrases={
        "has been temporarily rate limited due to ip reputation": "Exchange Online 4.7.650",
        "ip/domain reputation problems": "Yahoo",
        "likely suspicious due to the very low reputation": "Gmail 550 5.7.1",
        "very low reputation": "Gmail",
        "the sending mta's poor reputation": "Sisimai list",
        "poor email reputation score": "Sisimai list",
        "poor reputation": "generic reputation wording",
        "bad reputation": "generic reputation wording",
        "low reputation": "generic reputation wording",
        "local ct ip reputation": "Mimecast",
        "reputation of the sending": "generic reputation wording",
        "temporarily deferred due to unexpected volume or user complaints": "Yahoo / AOL [TSS04]",
    },
)
