"""delivered: a success DSN (action delivered, relayed or expanded; status 2.x.x)."""

from ._base import ReasonTable

TABLE = ReasonTable(name="delivered", summary="a success report (kind delivered), not a failure")
