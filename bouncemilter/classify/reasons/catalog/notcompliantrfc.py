"""notcompliantrfc: the message breaks RFC 5322 (duplicate or missing header fields)."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="notcompliantrfc",
    summary="the message is not RFC 5322 compliant (header fields)",
    pseudo=("976",),
    phrases={
        "this message is not rfc 5322 compliant": "Gmail 550 5.7.1",
        "not rfc 5322 compliant": "Gmail",
        "rfc 5322 section 3.6": "Exchange Online 5.7.512",
        "multiple addresses in from: header": "Gmail",
        "there are multiple subject headers": "Gmail",
        "rfcmessagenoncompliant": "Gmail help topic ?p=RfcMessageNonCompliant",
        "is not rfc compliant": "generic wording",
        "message is not rfc": "generic wording",
        "headers are not rfc compliant": "Yahoo",
    },
)
