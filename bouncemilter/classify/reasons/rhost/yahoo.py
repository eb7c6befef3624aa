"""Yahoo and AOL (Yahoo Inc.: *.yahoodns.net MX for yahoo.*, aol.com, aim.com).

Yahoo's published SMTP error codes (senders.yahooinc.com/smtp-error-codes) and the replies its
MX writes ("[TSS04]", "[BL21]", "[PH01]" tags, "dd ... delivery error" texts).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="yahoo",
    hosts=("yahoodns.net", "yahoo.com", "yahoo.net", "aol.com", "yahooinc.com"),
    domains=(
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.it",
        "yahoo.es",
        "yahoo.ca",
        "yahoo.com.br",
        "yahoo.com.ar",
        "yahoo.com.mx",
        "yahoo.in",
        "yahoo.co.in",
        "yahoo.com.au",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "aim.com",
        "aol.co.uk",
        "aol.fr",
        "aol.de",
    ),
    rules=(
        _R("userunknown", "this user doesn't have a ", source="554 delivery error: dd This user doesn't have a ..."),
        _R("userunknown", "requested mail action aborted, mailbox not found", source="552 1"),
        _R("suspend", "this mailbox is disabled", source="554 30 ... This mailbox is disabled (554.30)"),
        _R("suspend", " is no longer valid.", source="554 delivery error: dd x is no longer valid."),
        _R("authfailure", "yahoo requires all senders to authenticate", source="550 5.7.9"),
        _R("authfailure", "dmarc", source="554 5.7.9 ... DMARC policy"),
        _R(
            "badreputation",
            "temporarily deferred due to unexpected volume or user complaints",
            source="421 4.7.0 [TSS04]",
        ),
        _R("rejected", "unresolvable rfc.5321 from domain", source="451 from-domain does not resolve"),
        _R("blocked", "temporarily deferred due to user complaints", source="421 4.7.0 [TS01]"),
        _R("blocked", "will be permanently deferred", source="553 5.7.2 [TSS09] / 421 [TS03]"),
        _R("blocked", "because the ip is in spamhaus's list", source="553 5.7.1 [BL21]"),
        _R("blocked", "not accepted from ip addresses on spamhaus xbl", source="553 5.7.1 [BL23]"),
        _R("notcompliantrfc", "headers are not rfc compliant", source="554 [PH04]"),
        _R("policyviolation", "not accepted for policy reasons", source="554 5.7.9 / [PH01]"),
        _R("norelaying", "relaying denied for ", source="550 relaying denied for <x>"),
        _R("toomanyconn", "max message per connection reached", source="421"),
        _R("syntaxerror", "syntax error in parameters or arguments", source="501"),
        _R("notaccept", "no mx record found for domain=", source="Yahoo MTA (Oath)"),
        _R("mailboxfull", "over quota", source="552 ... over quota"),
    ),
)
