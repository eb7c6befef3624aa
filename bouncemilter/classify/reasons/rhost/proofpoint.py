"""Proofpoint (*.pphosted.com, *.ppe-hosted.com): a filtering gateway in front of organisations.

Proofpoint's documented rejection texts (help.proofpoint.com "Email Protection rejection
messages", ipcheck.proofpoint.com for the IP reputation blocks).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="proofpoint",
    hosts=("pphosted.com", "ppe-hosted.com", "proofpoint.com", "ppops.net"),
    rules=(
        _R("blocked", "ipcheck.proofpoint.com"),
        _R("blocked", "support.proofpoint.com/dnsbl-lookup"),
        _R("blocked", "blocked - see https"),
        _R("badreputation", "poor reputation"),
        _R("spamdetected", "message blocked due to spam content"),
        _R("spamdetected", "spam content"),
        _R("virusdetected", "virus"),
        _R("authfailure", "dmarc"),
        _R("authfailure", "spf"),
        _R("policyviolation", "not accepted for policy reasons"),
        _R("policyviolation", "local policy"),
        _R("norelaying", "relaying denied"),
        _R("userunknown", "user unknown"),
        _R("userunknown", "no such user"),
        _R("mailboxfull", "quota exceeded"),
    ),
)
