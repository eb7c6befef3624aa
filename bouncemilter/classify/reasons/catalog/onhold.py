"""onhold: the bounce gives words but no decidable cause."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="onhold",
    summary="the report names an error but no cause the engine can decide",
    pseudo=("901",),
)
