"""speeding: we sent too fast; the receiving site is rate-limiting us."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="speeding",
    summary="we sent too much too fast; the receiving site is rate-limiting us",
    pseudo=("977",),
    phrases={
        "please try again slower": "Sisimai Speeding list",
        "receiving mail at a rate that prevents additional messages": "Gmail 450 4.2.1",
        "receiving mail too quickly": "Gmail 450 4.2.1",
        "has sent to too many recipients this hour": "GoDaddy IB607",
        "rate limited": "generic wording",
        "has sent too many messages this hour": "GoDaddy IB504",
        "too fast": "generic wording",
    },
)
