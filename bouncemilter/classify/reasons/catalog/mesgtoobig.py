"""mesgtoobig: the message is larger than the receiving system accepts."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="mesgtoobig",
    summary="the message is larger than the receiving system accepts",
    status=("4.7.16", "5.3.4", "5.7.16"),  # X.3.4 message too big for system
    pseudo=("934",),
    phrases={
        "exceeded maximum inbound message size": "Sisimai MesgTooBig list",
        "line limit exceeded": "Sisimai MesgTooBig list",
        "max message size exceeded": "Sisimai MesgTooBig list",
        "message file too big": "Sisimai MesgTooBig list",
        "message length exceeds administrative limit": "Sendmail",
        "message size exceeds fixed limit": "Postfix ('message size exceeds fixed limit')",
        "message size exceeds maximum value": "Sisimai MesgTooBig list",
        "message too big": "RFC 3463 X.3.4 text ('Message too big for system')",
        "message too large for this ": "Exchange ('message too large for this recipient')",
        "size limit": "generic wording ('size limit exceeded')",
        "taille limite du message atteinte": "Orange (fr)",
        "recipsizelimit": "MS Exchange RESOLVER.RST.RecipSizeLimit",
        "message is too large": "generic wording",
        "message size exceeds": "Sisimai MesgTooBig list",
        "maximum email size exceeded": "Mimecast 554",
        "message exceeds maximum size": "generic wording",
        "message size exceeds fixed maximum message size": "qmail / Exchange 5.3.4",
        "mail size limit exceeded": "1&1 / IONOS",
        "message size exceeds my databytes limit": "qmail-smtpd",
    },
)
