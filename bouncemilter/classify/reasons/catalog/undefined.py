"""undefined: the bounce gives no cause at all."""

from ._base import ReasonTable

TABLE = ReasonTable(name="undefined", summary="the report gives no cause at all", pseudo=("900",))
