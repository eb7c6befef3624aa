"""Apple iCloud Mail (mx0N.mail.icloud.com for icloud.com, me.com, mac.com).

Apple's "Postmaster information for iCloud Mail" (support.apple.com/en-us/102322, formerly
HT204137) and the replies iCloud's MX writes ("[CS01]", "[HME1]" tags).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="apple",
    hosts=("icloud.com", "me.com", "mac.com", "apple.com"),
    domains=("icloud.com", "me.com", "mac.com"),
    rules=(
        _R("authfailure", "'s dmarc policy", source="554 5.7.1 Your message was rejected due to x's DMARC policy"),
        _R("authfailure", "failing both spf and dkim authentication checks", source="554 5.7.1 [HME1]"),
        _R("blocked", "rejected due to having a domain present in the spamhaus", source="550 5.7.1 (DBL)"),
        _R("blocked", "rejected due to listing in spamhaus", source="550 5.7.1 (SBL)"),
        _R("blocked", "blocked - see https://support.proofpoint.com/dnsbl-lookup", source="550 5.7.0"),
        _R("blocked", "not accepting connections", source="554 x ESMTP not accepting connections"),
        _R("hasmoved", "recipient no longer on server", source="550 5.1.6"),
        _R("mailboxfull", "user is over quota", source="552 5.2.2"),
        _R("norelaying", "relay access denied", source="554 5.7.1"),
        _R("notaccept", "host/domain does not accept mail", source="iCloud null-MX answer"),
        _R("policyviolation", "due to local policy", source="550 5.7.1 [CS01]"),
        _R("requireptr", "no ptr record found.", source="550 5.7.1"),
        _R("speeding", "temporarily deferred due to unexpected volume", source="421 4.7.0 [TS01]"),
        _R("suspend", "user is inactive", source="550 5.2.1"),
        _R("userunknown", "inactive email address", source="550 5.1.1"),
        _R("userunknown", "user does not exist", source="550 5.1.1"),
        _R("userunknown", "unknown or illegal alias", source="550 5.1.1"),
    ),
)
