"""bouncemilter: recognise, classify and record bounces in-line in the MTA."""

from .classify import Classification, OriginalMessage, RecipientResult, classify

__all__ = ["Classification", "OriginalMessage", "RecipientResult", "classify"]
__version__ = "0.1.0"
