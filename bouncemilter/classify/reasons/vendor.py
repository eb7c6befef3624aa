"""Vendor fixed-message tables: the sentences an MTA or a provider's bounce writer composes itself.

Such a sentence names its cause ("Sorry, no mailbox here by that name", "Domain does not
exist"), so it takes precedence over the generic phrases of catalog/. A table is chosen by the
detector that read the bounce (formats/) or, for providers whose bounces come in a standard format,
by the domain of the bounce's sender (Reporting-MTA / From). The reason found is a "preset": final
unless it is one of the weak reasons (reasons.WEAK), which the engine checks again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class VendorTable:
    name: str  # shown in reason_rule: "vendor:qmail/..."
    # (reason, phrase, where the MTA writes it); case-sensitive as the MTA writes it unless `fold`.
    messages: tuple[tuple[str, str, str], ...]
    # False: only for the MTA's own words (a row without a remote SMTP reply); True: also when a
    # remote reply is quoted (qmail's "does not like recipient." wraps the remote answer).
    remote_too: bool = False
    fold: bool = False  # compare lower-cased, white space folded
    # The reason a refusal at an SMTP stage names, when the format states the stage in its own
    # sentence (Exim "after initial connection", qmail "but my name was rejected").
    stage_presets: Mapping[str, str] = field(default_factory=dict)

    def find(self, diagnostic: str, remote_reply: bool, stage: str = "") -> tuple[str, str]:
        """(reason, the sentence or "stage:X" that named it), or ("", "")."""
        if stage in self.stage_presets:
            return self.stage_presets[stage], f"stage:{stage}"
        if remote_reply and not self.remote_too:
            return "", ""
        if self.fold:
            text = " ".join(diagnostic.lower().split())
            for reason, phrase, _where in self.messages:
                if phrase.lower() in text:
                    return reason, phrase
            return "", ""
        for reason, phrase, _where in self.messages:
            if phrase in diagnostic:
                return reason, phrase
        return "", ""


# After HELO/EHLO only our host is known: these formats name the stage, and a refusal there is a
# block. Exim says "after MAIL FROM" also for a refused sender, whose words decide (onhold is weak:
# the engine checks again). A refusal at the greeting is a block in every format (engine.FIRST).
_EXIM_STAGES = {"HELO": "blocked", "EHLO": "blocked", "MAIL": "onhold"}
_QMAIL_STAGES = {"HELO": "blocked", "EHLO": "blocked"}

_QMAIL = (
    # qmail-ldap (qmail-local, qmail-lspawn), in its own words
    ("suspend", "Mailaddress is administrativly disabled", "qmail-ldap: 5.2.1 (its spelling)"),
    ("suspend", "Mailaddress is administratively disabled", "qmail-ldap: 5.2.1"),
    ("userunknown", "Sorry, no mailbox here by that name", "qmail-local.c / qmail-ldap: 5.1.1"),
    ("exceedlimit", "The message exeeded the maximum size the user accepts", "qmail-ldap: 5.2.3"),
    ("systemerror", "Automatic homedir creator crashed", "qmail-ldap: 4.3.0"),
    ("systemerror", "Illegal value in LDAP attribute", "qmail-ldap: 5.3.5"),
    ("systemerror", "LDAP attribute is not given but mandatory", "qmail-ldap: 5.3.5"),
    ("systemerror", "Timeout while performing search on LDAP server", "qmail-ldap: 4.4.3"),
    ("systemerror", "Too many results returned but needs to be unique", "qmail-ldap: 5.3.5"),
    ("systemerror", "Permanent error while executing qmail-forward", "qmail-ldap: 5.4.4"),
    ("systemerror", "Temporary error in automatic homedir creation", "qmail-ldap: 4.3.0"),
    ("systemerror", "Temporary error while executing qmail-forward", "qmail-ldap: 4.4.4"),
    ("systemerror", "Temporary failure in LDAP lookup", "qmail-ldap: 4.4.3"),
    ("systemerror", "Unable to contact LDAP server", "qmail-ldap: 4.4.3"),
    ("systemerror", "Unable to login into LDAP server, bad credentials", "qmail-ldap: 4.4.3"),
    # qmail-local, qmail-remote, qmail-send
    ("userunknown", "no mailbox here by that name", "qmail-local.c: 'Sorry, no mailbox here by that name. (#5.1.1)'"),
    ("userunknown", "does not like recipient.", "qmail-remote.c: 'x does not like recipient.' (RCPT refused)"),
    ("mailboxfull", "disk quota exceeded", "error_str.c: EDQUOT"),
    ("mesgtoobig", "Message size exceeds fixed maximum message size:", "qmail-remote / databytes"),
    ("mesgtoobig", "message size exceeds my databytes limit", "qmail-smtpd.c: 552 (#5.3.4)"),
    ("hostunknown", "Sorry, I couldn't find any host ", "qmail-remote.c: (#4.1.2) / (#5.1.2)"),
    ("systemfull", "Requested action not taken: mailbox unavailable (not enough free space)", "qmail"),
    ("systemerror", "bad interpreter: No such file or directory", "qmail-local: a .qmail program"),
    ("networkerror", "Sorry, I wasn't able to establish an SMTP connection", "qmail-remote.c"),
    ("notaccept", "Sorry, I couldn't find a mail exchanger or IP address", "qmail-remote.c: no MX, no A"),
    ("networkerror", "Sorry. Although I'm listed as a best-preference MX or A for that host", "qmail-remote.c"),
    # qmail-send gave up: only when nothing above named the cause
    ("expired", "this message has been in the queue too long.", "qmail-send.c"),
)

TABLES: dict[str, VendorTable] = {
    # Exim deliver.c, route.c, transports/*.c, parser.c (its own messages; a remote reply is not one)
    "exim": VendorTable(
        "exim",
        (
            ("userunknown", "user not found", "route.c: getpwnam() found no such local user"),
            ("hostunknown", "all host address lookups failed permanently", "transports/smtp.c"),
            ("hostunknown", "all relevant MX records point to non-existent hosts", "routers/dnslookup.c"),
            ("hostunknown", "Unrouteable address", "route.c"),
            ("mailboxfull", "mailbox is full", "transports/appendfile.c"),
            ("mailboxfull", "error: quota exceed", "transports/appendfile.c"),
            ("notaccept", "an MX or SRV record indicated no SMTP service", "routers/dnslookup.c"),
            ("notaccept", "no host found for existing SMTP connection", "transports/smtp.c"),
            ("syntaxerror", "angle-brackets nested too deep", "parser.c"),
            ("syntaxerror", 'expected word or "<"', "parser.c"),
            ("syntaxerror", "domain missing in source-routed address", "parser.c"),
            ("syntaxerror", "malformed address:", "parser.c"),
            ("systemerror", "delivery to file forbidden", "deliver.c"),
            ("systemerror", "delivery to pipe forbidden", "deliver.c"),
            ("systemerror", "local delivery failed", "transports/pipe.c"),
            ("systemerror", "LMTP error after ", "transports/lmtp.c"),
            ("contenterror", 'Too many "Received" headers', "deliver.c: suspected mail loop"),
            ("expired", "retry timeout exceeded", "retry.c"),
            ("expired", "retry time not reached for any host after a long failure period", "transports/smtp.c"),
            ("expired", "all hosts have been failing for a long time and were last tried", "transports/smtp.c"),
            ("expired", "has been frozen", "deliver.c"),
            ("expired", "was frozen on arrival by ", "receive.c"),
        ),
        stage_presets=_EXIM_STAGES,
    ),
    "qmail": VendorTable("qmail", _QMAIL, remote_too=True, stage_presets=_QMAIL_STAGES),
    # OpenSMTPD smtpd/mta.c, smtpd/queue.c (relay->failstr, envelope error messages)
    "opensmtpd": VendorTable(
        "opensmtpd",
        (
            ("expired", "Envelope expired", "smtpd/queue.c"),
            ("hostunknown", "Invalid domain name", "smtpd/mta.c"),
            ("hostunknown", "Domain does not exist", "smtpd/mta.c"),
            ("notaccept", "Destination seem to reject all mails", "smtpd/mta.c"),
            ("networkerror", "Address family mismatch on destination MXs", "smtpd/mta.c"),
            ("networkerror", "All routes to destination blocked", "smtpd/mta.c"),
            ("networkerror", "bad DNS lookup error code", "smtpd/mta.c"),
            ("networkerror", "Could not retrieve source address", "smtpd/mta.c"),
            ("networkerror", "Loop detected", "smtpd/mta.c"),
            ("networkerror", "Network error on destination MXs", "smtpd/mta.c"),
            ("notaccept", "No MX found for domain", "smtpd/mta.c: the domain has no mail host"),
            ("notaccept", "No MX found for destination", "smtpd/mta.c: the domain has no mail host"),
            ("networkerror", "No valid route to remote MX", "smtpd/mta.c"),
            ("networkerror", "No valid route to destination", "smtpd/mta.c"),
            ("networkerror", "Temporary failure in MX lookup", "smtpd/mta.c"),
            ("securityerror", "Could not retrieve credentials", "smtpd/mta.c"),
        ),
    ),
    # Courier courier/module.esmtp/esmtpclient.c
    "courier": VendorTable(
        "courier",
        (
            ("hostunknown", "No such domain.", "esmtpclient.c: hard_error"),
            ("systemerror", "This domain's DNS violates RFC 1035.", "esmtpclient.c: hard_error"),
            ("networkerror", "DNS lookup failed.", "esmtpclient.c: soft_error"),
        ),
    ),
    # dma (DragonFly Mail Agent) net.c, dns.c, dma.c
    "dma": VendorTable(
        "dma",
        (
            ("hostunknown", "DNS lookup failure: host ", "dns.c"),
            ("expired", "could not deliver for the last ", "dma.c"),
        ),
        fold=True,
    ),
    # MXLogic (McAfee SaaS, Exim underneath): Exim's own messages
    "mxlogic": VendorTable(
        "mxlogic",
        (
            ("userunknown", "user not found", "Exim route.c"),
            ("hostunknown", "all host address lookups failed permanently", "Exim transports/smtp.c"),
            ("hostunknown", "all relevant MX records point to non-existent hosts", "Exim routers/dnslookup.c"),
            ("hostunknown", "Unrouteable address", "Exim route.c"),
            ("mailboxfull", "mailbox is full", "Exim appendfile.c"),
            ("mailboxfull", "error: quota exceed", "Exim appendfile.c"),
            ("notaccept", "an MX or SRV record indicated no SMTP service", "Exim routers/dnslookup.c"),
            ("notaccept", "no host found for existing SMTP connection", "Exim transports/smtp.c"),
            ("syntaxerror", "angle-brackets nested too deep", "Exim parser.c"),
            ("syntaxerror", 'expected word or "<"', "Exim parser.c"),
            ("syntaxerror", "domain missing in source-routed address", "Exim parser.c"),
            ("syntaxerror", "malformed address:", "Exim parser.c"),
            ("systemerror", "delivery to file forbidden", "Exim deliver.c"),
            ("systemerror", "delivery to pipe forbidden", "Exim deliver.c"),
            ("systemerror", "local delivery failed", "Exim transports/pipe.c"),
            ("systemerror", "LMTP error after ", "Exim transports/lmtp.c"),
            ("contenterror", 'Too many "Received" headers', "Exim deliver.c"),
            ("expired", "retry timeout exceeded", "Exim retry.c"),
            ("expired", "retry time not reached for any host after a long failure period", "Exim smtp.c"),
            ("expired", "all hosts have been failing for a long time and were last tried", "Exim smtp.c"),
            ("expired", "has been frozen", "Exim deliver.c"),
            ("expired", "was frozen on arrival by ", "Exim receive.c"),
        ),
        stage_presets=_EXIM_STAGES,
    ),
    # Lotus Notes / Domino: their own delivery-failure sentences (white space folded: Notes wraps
    # and double-spaces them)
    "notes": VendorTable(
        "notes",
        (
            ("userunknown", "user not listed in public name & address book", "Notes router"),
            ("userunknown", "ディレクトリのリストにありません", "Notes router (ja)"),
            ("networkerror", "message has exceeded maximum hop count", "Notes router"),
        ),
        remote_too=True,
        fold=True,
    ),
    "domino": VendorTable(
        "domino",
        (
            ("userunknown", "not listed in domino directory", "Domino router"),
            ("userunknown", "not listed in public name & address book", "Domino router"),
            ("userunknown", "non répertorié dans l'annuaire domino", "Domino router (fr)"),
            ("userunknown", "domino ディレクトリには見つかりません", "Domino router (ja)"),
            ("filtered", "cannot route mail to user", "Domino router"),
            ("systemerror", "several matches found in domino directory", "Domino router"),
        ),
        remote_too=True,
        fold=True,
    ),
    # Oracle (Sun) Communications Messaging Server
    "messagingserver": VendorTable(
        "messagingserver", (("hostunknown", "Illegal host/domain name found", "its 'Reason:' text"),)
    ),
    # Gmail's own sentences (no remote reply); its "(state N)" numbers are read by the detector
    "google": VendorTable(
        "google",
        (
            ("expired", "DNS Error: Could not contact DNS servers", "Gmail"),
            ("expired", "Delivery to the following recipient has been delayed", "Gmail"),
            ("expired", "The recipient server did not accept our requests to connect", "Gmail"),
            ("hostunknown", "DNS Error: Domain name not found", "Gmail"),
            ("hostunknown", "DNS Error: DNS server returned answer with no data", "Gmail"),
        ),
    ),
    # Google Workspace / Gmail bounces in RFC 3464 form (mailer-daemon@googlemail.com)
    "gsuite": VendorTable(
        "gsuite",
        (
            (
                "userunknown",
                "because the address couldn't be found. Check for typos or unnecessary spaces and try again.",
                "Google Workspace NDR prose",
            ),
            ("notaccept", "Null MX", "Google Workspace: the domain publishes a null MX"),
            ("networkerror", " had no relevant answers.", "Google Workspace: DNS answered nothing usable"),
            ("networkerror", " responded with code NXDOMAIN", "Google Workspace: DNS lookup"),
        ),
        remote_too=True,
    ),
    # AOL's outbound MTA (Postfix) writing about the destination domain
    "aol": VendorTable(
        "aol",
        (
            ("hostunknown", "Host or domain name not found", "AOL Postfix: the domain does not resolve"),
            ("notaccept", "type=MX: Malformed or unexpected name server reply", "AOL Postfix: no usable MX"),
        ),
    ),
    # Outlook.com's own NDR sentences
    "outlook": VendorTable(
        "outlook",
        (
            (
                "hostunknown",
                "The mail could not be delivered to the recipient because the domain is not reachable",
                "Outlook.com NDR",
            ),
            ("userunknown", "Requested action not taken: mailbox unavailable", "Outlook.com NDR"),
        ),
        remote_too=True,
    ),
    "verizon": VendorTable(
        "verizon",
        (
            ("userunknown", "Requested action not taken: no such user here", "vtext.com '550 - ...'"),
            ("userunknown", "No valid recipients for this MM", "vzwpix.com"),
        ),
        remote_too=True,
    ),
    "gmx": VendorTable(
        "gmx",
        (
            ("expired", "delivery retry timeout exceeded", "GMX: its retry limit"),
            ("mesgtoobig", "Mail size limit exceeded", "1&1 / IONOS"),
        ),
    ),
    "mailru": VendorTable("mailru", (), stage_presets=_EXIM_STAGES),
    "zoho": VendorTable("zoho", (("expired", "Host not reachable", "Zoho delay notice"),)),
    # Ipswitch IMail's summary line for each recipient (before the remote server's response)
    "imailserver": VendorTable(
        "imailserver",
        (
            ("hostunknown", "Unknown host", "IMail"),
            ("userunknown", "Unknown user", "IMail"),
            ("userunknown", "Invalid final delivery userid", "IMail"),
            ("mailboxfull", "User mailbox exceeds allowed size", "IMail"),
            ("virusdetected", "Requested action not taken: virus detected", "IMail"),
            ("expired", "Delivery failed ", "IMail: 'Delivery failed N attempts'"),
        ),
    ),
    # amavisd-new appends its verdict to the reply it relays ("554 5.7.0 Reject, id=... - SPAM")
    "amavis": VendorTable(
        "amavis",
        (
            ("spamdetected", " - spam", "amavisd: CC_SPAM 'id=%n - spam'"),
            ("virusdetected", " - infected", "amavisd: CC_VIRUS 'id=%n - INFECTED: %V'"),
            ("contenterror", " - bad header:", "amavisd: CC_BADH 'id=%n - BAD HEADER: ...'"),
            ("exceedlimit", " - message size exceeds recipient", "amavisd: CC_OVERSIZED"),
            ("systemerror", " - temporary mta failure on relaying", "amavisd: CC_MTA,1"),
            ("systemerror", " - rejected by next-hop mta on relaying", "amavisd: CC_MTA,2"),
            ("systemerror", " - unable to relay message back to mta", "amavisd: CC_MTA"),
        ),
        remote_too=True,
        fold=True,
    ),
    # Trend Micro InterScan MSS: its own sentence for a recipient the next hop refused
    "interscanmss": VendorTable(
        "interscanmss", (("userunknown", "Unable to deliver message to <", "InterScan MSS notification"),)
    ),
    # au / EZweb's fixed sentences (above the recipient list)
    "ezweb": VendorTable(
        "ezweb",
        (
            ("mailboxfull", "The user(s) account is temporarily over quota", "au EZweb"),
            ("suspend", "The user(s) account is disabled.", "au EZweb"),
            ("suspend", "The user(s) account is temporarily limited.", "au EZweb"),
            ("expired", "Your message was not delivered within ", "au EZweb"),
            ("onhold", "Each of the following recipients was rejected by a remote mail server", "au EZweb"),
        ),
        remote_too=True,
    ),
    # KDDI au one net's fixed sentences
    "kddi": VendorTable(
        "kddi",
        (
            ("mailboxfull", "As their mailbox is full", "au one net"),
            ("norelaying", "Due to the following SMTP relay error", "au one net"),
            ("hostunknown", "As the remote domain doesnt exist", "au one net (its spelling)"),
        ),
        remote_too=True,
    ),
    # Biglobe's canned explanations
    "biglobe": VendorTable(
        "biglobe",
        (
            ("mailboxfull", "mailbox exceeded the local limit", "Biglobe"),
            ("userunknown", "User unknown", "Biglobe"),
        ),
        remote_too=True,
    ),
}

# Providers whose bounces arrive in a standard format (Postfix text, RFC 3464): the table is
# chosen by the domain of the bounce's sender.
BY_REPORTER: dict[str, str] = {
    "aol.com": "aol",
    "outlook.com": "outlook",
    "hotmail.com": "outlook",
    "googlemail.com": "gsuite",
    "google.com": "gsuite",
}

# PowerMTA's X-PowerMTA-BounceCategory field (its bounce-category-patterns file): a structural tag.
POWERMTA_CATEGORIES: dict[str, str] = {
    "bad-domain": "hostunknown",
    "bad-mailbox": "userunknown",
    "inactive-mailbox": "suspend",
    "message-expired": "expired",
    "no-answer-from-host": "networkerror",
    "policy-related": "policyviolation",
    "quota-issues": "mailboxfull",
    "routing-errors": "systemerror",
    "spam-related": "spamdetected",
    "content-related": "contenterror",
    "protocol-errors": "syntaxerror",
    "relaying-issues": "norelaying",
    "virus-related": "virusdetected",
    "bad-connection": "networkerror",
    "invalid-sender": "rejected",
}


# Gmail's "(state N)" after a remote reply: the SMTP stage its client had reached, and the cause it
# implies (Sisimai's reading of Gmail's states).
GMAIL_STATES: dict[str, tuple[str, str]] = {
    "6": ("MAIL", "systemerror"),
    "8": ("AUTH", "systemerror"),
    "9": ("AUTH", "systemerror"),
    "12": ("AUTH", "norelaying"),
    "13": ("EHLO", "blocked"),
    "14": ("RCPT", "userunknown"),
    "15": ("DATA", "filtered"),
    "17": ("DATA", "filtered"),
    "18": ("DATA", "filtered"),
}
# Google's help topics linked from its NDRs ("support.google.com/mail/?p=<topic>").
GOOGLE_HELP_TOPICS: dict[str, str] = {"customfromdenied": "rejected"}

# Microsoft Exchange 2007+ NDR codes ("RESOLVER.ADR.RecipNotFound") and the Exchange 5.5-2003
# MSEXCH codes ("(000C05A6)"), as Exchange documents them.
EXCHANGE_CODES: dict[str, str] = {
    "SMTPSEND.DNS.NonExistentDomain": "hostunknown",
    "SMTPSEND.DNS.MxLoopback": "networkerror",
    "RESOLVER.ADR.BadPrimary": "systemerror",
    "RESOLVER.ADR.RecipNotFound": "userunknown",
    "RESOLVER.ADR.ExRecipNotFound": "userunknown",
    "RESOLVER.ADR.RecipLimit": "toomanyconn",
    "RESOLVER.ADR.InvalidInSmtp": "systemerror",
    "RESOLVER.ADR.Ambiguous": "systemerror",
    "RESOLVER.RST.AuthRequired": "securityerror",
    "RESOLVER.RST.NotAuthorized": "rejected",
    "RESOLVER.RST.RecipSizeLimit": "mesgtoobig",
    "QUEUE.Expired": "expired",
}
EXCHANGE2003_CODES: dict[str, str] = {
    "000B099C": "onhold",
    "000B09AA": "onhold",
    "000B09B6": "onhold",
    "000C05A6": "userunknown",
    "00010256": "systemerror",
    "000D06B5": "systemerror",
    "00120270": "networkerror",
    "00050311": "contenterror",
    "000502CC": "contenterror",
    "000B0981": "securityerror",
    "000C0595": "filtered",
}

# Facebook's published response codes (postmaster.facebook.com/response_codes).
FACEBOOK_CODES: dict[str, str] = {
    "RCP-P1": "userunknown", "INT-P1": "userunknown", "INT-P3": "userunknown", "INT-P4": "userunknown",
    "RCP-P2": "filtered", "RCP-P3": "filtered",
    "POL-P1": "blocked", "POL-P2": "blocked",
    "MSG-P1": "mesgtoobig", "INT-P2": "mesgtoobig",
    "MSG-P2": "contenterror", "MSG-P3": "contenterror", "POL-P6": "contenterror", "POL-P7": "contenterror",
    "POL-P3": "notaccept", "POL-P4": "notaccept", "POL-T1": "notaccept", "POL-T2": "notaccept",
    "POL-T3": "notaccept",
    "DNS-P1": "rejected", "DNS-P2": "rejected", "DNS-T1": "rejected", "DNS-P3": "rejected", "DNS-T2": "rejected",
    "CON-T1": "systemerror", "RCP-T1": "systemerror",
    "CON-T2": "toomanyconn", "CON-T3": "toomanyconn",
    "POL-P5": "virusdetected",
    "RCP-T4": "suspend",
}  # fmt: skip

# Amazon SES bounce notifications: the (bounceType, bounceSubType) pairs that state a cause.
SES_SUBTYPES: dict[tuple[str, str], str] = {
    ("permanent", "noemail"): "userunknown",
    ("transient", "mailboxfull"): "mailboxfull",
    ("transient", "messagetoolarge"): "mesgtoobig",
    ("transient", "contentrejected"): "contenterror",
    ("transient", "attachmentrejected"): "contenterror",
}
# SES inbound "Bounce" receipt-rule templates: the domain owner's rule chose the template, so the
# text says which rule fired rather than what a mailbox lookup found ("Mailbox does not exist"
# comes from a filtering rule), and "Temporary failure" holds the mail.
SES_RECEIVING_TEMPLATES: dict[str, str] = {
    "Mailbox does not exist": "filtered",
    "Mailbox full": "mailboxfull",
    "Message too large": "mesgtoobig",
    "Message content rejected": "contenterror",
    "Temporary failure": "onhold",
}


def preset(name: str, text: str, stage: str = "") -> tuple[str, str]:
    """(reason, reason_rule) from vendor `name`'s fixed sentences in `text` (a detector's own lines)."""
    reason, phrase = TABLES[name].find(text, False, stage)
    if not reason:
        return "", ""
    return reason, f"vendor:{name}/" + (phrase if phrase.startswith("stage:") else f'"{phrase}"')


_FROM_DOMAIN = re.compile(r"@([A-Za-z0-9.\-]{1,255})")


def reporter(from_header: str) -> str:
    """The BY_REPORTER domain a bounce's From names ("" for any other sender)."""
    low = from_header.lower()
    if "google" not in low and "aol.com" not in low and "outlook.com" not in low and "hotmail.com" not in low:
        return ""  # nearly every bounce: none of BY_REPORTER's providers
    m = _FROM_DOMAIN.search(low)
    if m is None:
        return ""
    domain = m.group(1).rstrip(".")
    return domain if domain in BY_REPORTER else ""


def table_for(detector: str, reporter: str) -> VendorTable | None:
    """The fixed-message table of the detector that read the bounce, else of the reporting domain."""
    found = TABLES.get(detector)
    if found is None and reporter:
        name = BY_REPORTER.get(reporter) or BY_REPORTER.get(reporter.partition(".")[2])
        found = TABLES.get(name) if name else None
    return found
