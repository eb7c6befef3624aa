"""Trend Micro Email Security / Hosted Email Security (*.tmes.trendmicro.com, *.in.hes.trendmicro.*).

Trend Micro's documented Email Reputation Services replies (ers.trendmicro.com: "ERS-RBL",
"ERS-DUL", "ERS-QIL" tags) and its message-filter texts.
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="trendmicro",
    hosts=("trendmicro.com", "trendmicro.eu", "trendmicro.co.jp", "tmes.trendmicro.com"),
    rules=(
        _R("blocked", "ers-rbl"),
        _R("blocked", "ers-dul"),
        _R("blocked", "ers-qil"),
        _R("blocked", "ers.trendmicro.com"),
        _R("spamdetected", "spam"),
        _R("virusdetected", "virus"),
        _R("authfailure", "dmarc"),
        _R("userunknown", "user unknown"),
        _R("userunknown", "unable to deliver message to <"),
    ),
)
