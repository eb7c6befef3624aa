"""The generic reader for bounces in no known format (stub)."""

from __future__ import annotations

from ..mime import Message
from .base import Detection


def looks_like_bounce(msg: Message) -> bool:
    return False


def detect(msg: Message) -> Detection | None:
    return None


def diagnostic_for(text: str, recipient: str) -> str:
    return ""
