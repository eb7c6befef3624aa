"""virusdetected: the message carried a virus or malware."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="virusdetected",
    summary="a virus or malware scanner refused the message",
    pseudo=("981",),
    phrases={
        "it has a potentially executable attachment": "Sisimai VirusDetected list",
        "the message was rejected because it contains prohibited virus or spam content": "Sisimai list",
        "this form of attachment has been used by recent viruses or other malware": "Gmail",
        "virus detected": "IMail, ClamAV milters",
        "your message was infected with a virus": "Sisimai VirusDetected list",
        "virus infected": "GoDaddy IB705",
        "infected with a virus": "Sisimai VirusDetected list",
        "contains a virus": "generic anti-virus wording",
        "virus found": "generic anti-virus wording",
        "email rejected due to security policies": "Mimecast 554",
        "- infected": "amavisd-new verdict ('id=... - INFECTED: ...')",
    },
)
