"""Reason taxonomy and mapping: (status, reply code, diagnostic text, action, remote MTA) -> reason, hard.

The reason is decided from the status code, the SMTP reply code and the remote server's words together, in the
spirit of Sisimai's algorithm (its reason names are our taxonomy):

1. delivered / relayed, Sisimai-style internal codes (x.0.9NN), and rules for a few big providers keyed by the
   remote MTA host name (their own error-code tables, e.g. Orange "OFR_416", GoDaddy "IB607").
2. An ordered list of reasons where each one fires when the status code names it OR the text matches its phrases.
   Text therefore beats a generic or unrelated code ("mailbox full" under 5.0.0 is mailboxfull), while a specific
   code still beats vague text. "user unknown" text is `filtered` when the server said it after DATA or under a
   "mailbox status" code (5.2.x), as Sisimai does: the address may exist, a filter refused it.
3. The remaining reasons by text only, then the status table, then fallbacks (x.6 -> contenterror,
   x.7 -> securityerror, 50x -> syntaxerror, delayed -> expired, some text -> onhold, else undefined).

Each reason's phrases are compiled into ONE case-insensitive regex (a character trie: no nested quantifiers, so no
catastrophic backtracking); all of them are joined into one scanner with a named group per reason so the text is
read once.

Patterns informed by Sisimai (https://libsisimai.org, BSD-2-Clause, Copyright (C) 2014-2024 azumakuniyuki):
the reason names, the status code table, the phrase lists in Sisimai::Reason::*, and the per-provider tables in
Sisimai::Rhost::*. This is an independent Python implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable

REASONS: tuple[str, ...] = (
    "userunknown",
    "hostunknown",
    "mailboxfull",
    "filtered",
    "rejected",
    "blocked",
    "spamdetected",
    "policyviolation",
    "expired",
    "suspend",
    "norelaying",
    "systemerror",
    "networkerror",
    "toomanyconn",
    "mesgtoobig",
    "exceedlimit",
    "securityerror",
    "virusdetected",
    "authfailure",
    "badreputation",
    "requireptr",
    "notcompliantrfc",
    "syntaxerror",
    "hasmoved",
    "notaccept",
    "systemfull",
    "speeding",
    "contenterror",
    "mailererror",
    "onhold",
    "undefined",
    "vacation",
    "feedback",
    "delivered",
)
HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved"})

# Longest diagnostic we scan: real server replies are short; bounded so a hostile bounce costs bounded time.
_MAX_TEXT = 2000

# Phrase syntax (all lower case): literal text, plus three tokens:
#   {w} one word (run of non-spaces), {d} a number, {a} any short gap (up to 60 characters).
# Phrases are general wordings MTAs use; never a fragment of one sample.
_PHRASES: dict[str, tuple[str, ...]] = {
    "mailererror": (
        "procmail:",
        "bin/procmail",
        "bin/maildrop",
        "command failed: ",
        "command died with status",
        "command output:",
        "mailer error",
        "pipe to |/",
        "x-unix; {d}",
        "operating system error",
    ),
    "mailboxfull": (
        "account disabled temporarly for exceeding receiving limits",
        "account is exceeding their quota",
        "account is over quota",
        "account is temporarily over quota",
        "boite du destinataire pleine",
        "delivery failed: over quota",
        "disc quota exceeded",
        "disk quota exceeded",
        "does not have enough space",
        "exceeded storage allocation",
        "exceeding its mailbox quota",
        "full mailbox",
        "is over disk quota",
        "is over quota temporarily",
        "mail file size exceeds the maximum size allowed for mail delivery",
        "mail quota exceeded",
        "mailbox exceeded the local limit",
        "mailbox full",
        "mailbox has exceeded",
        "mailbox is full",
        "mailbox over quota",
        "mailbox quota usage exceeded",
        "mailbox size limit exceeded",
        "maildir over quota",
        "maildir delivery failed: userdisk quota ",
        "maildir delivery failed: domaindisk quota ",
        "mailfolder is full",
        "not enough storage space",
        "not enough disk space",
        "over the allowed quota",
        "over quota",
        "quota exceeded",
        "quota violation for",
        "recipient reached disk quota",
        "mailbox would exceed maximum allowed storage",
        "the user's space has been used up",
        "too much mail data",
        "user has exceeded quota",
        "user has too many messages on the server",
        "user is over quota",
        "user is over the quota",
        "user over quota",
        "inbox is full",
        "inbox is out of storage space",
        "exceeds allowed size",
        "mailbox exceeds",
        "out of storage space",
        "storage quota exceeded",
        "insufficient storage",
        "exceeded the local limit",
        "is full and cannot accept",
        "the number of messages in recipient's mailbox exceeded",
    ),
    "mesgtoobig": (
        "exceeded maximum inbound message size",
        "line limit exceeded",
        "max message size exceeded",
        "message file too big",
        "message length exceeds administrative limit",
        "message size exceeds fixed limit",
        "message size exceeds maximum value",
        "message too big",
        "message too large for this ",
        "size limit",
        "taille limite du message atteinte",
        "recipsizelimit",
        "message is too large",
        "message size exceeds",
        "maximum email size exceeded",
        "message exceeds maximum size",
    ),
    "exceedlimit": (
        "message header size exceeds limit",
        "message too large",
        "message size exceeds fixed maximum message size",
    ),
    "suspend": (
        " is currently suspended",
        " temporary locked",
        "temporarily locked",
        "boite du destinataire archivee",
        "email account that you tried to reach is disabled",
        "has been suspended",
        "invalid/inactive user",
        "is a deactivated mailbox",
        "mailbox currently suspended",
        "mailbox is frozen",
        "recipient rejected: temporarily inactive",
        "recipient suspend the service",
        "this account has been disabled or discontinued",
        "this mailbox is disabled",
        "user suspended",
        "vdelivermail: account is locked",
        "account is disabled",
        "account is locked",
        "account has been disabled",
        "disabled recipient",
        "recipient account is blocked",
        "le compte du destinataire est bloque",
        "mailbox is disabled",
        "mailbox disabled",
        "account disabled",
        "user account is expired",
        "account inactive",
        "inactive account",
        "mailbox is inactive",
    ),
    "hasmoved": (" has been replaced by ", "no longer on server", "has moved to", "not our customer"),
    "norelaying": (
        "as a relay",
        "insecure mail relay",
        "is not permitted to relay through this server without authentication",
        "mail server requires authentication when attempting to send to a non-local e-mail address",
        "not a gateway",
        "not allowed to relay through this machine",
        "not an open relay, so get lost",
        "not local host",
        "relay access denied",
        "relay denied",
        "relaying mail to ",
        "relay not permitted",
        "relaying denied",
        "that domain isn't in my list of allowed rcpthost",
        "this system is not configured to relay",
        "unable to relay",
        "we don't handle mail for",
        "relay not allowed",
        "no relaying",
        "relaying not allowed",
        "open relay not allowed",
        "mail relay denied",
        "relay prohibited",
        "email address is not verified",
    ),
    "authfailure": (
        "dmarc policy",
        "does not pass dmarc",
        "fails dmarc",
        "dmarc verification",
        "dmarc check failed",
        "dmarc sender invalid",
        "spf record with a hard fail",
        "fails to pass spf",
        "fail to pass spf",
        "spf check: fail",
        "spf check failed",
        "spf (sender policy framework) domain authentication fail",
        "sender policy framework violation",
        "sender policy framework (spf) fail",
        "bad spf records for",
        "please inspect your spf settings",
        "is not allowed to send from <{w} per it's spf record",
        "is not allowed to send mail. {w}_401",
        "spf validation failed",
        "spf sender invalid",
        "dkim sender invalid",
        "fails to pass authentication checks",
        "does not have authentication information",
        "sender is unauthenticated",
        "requires all senders to authenticate",
        "spf.pobox.com/why",
        "spf fail",
        "spf failure",
        "dkim validation failed",
        "dkim signature failed",
        "dkim failed",
    ),
    "userunknown": (
        "#5.1.1 bad address",
        "550 address invalid",
        "5.1.0 address rejected.",
        "account {w} does not exist at the organization",
        "address does not exist",
        "address not present in directory",
        "address unknown",
        "address couldn't be found",
        "address could not be found",
        "address not found",
        "archived recipient",
        "bad recipient",
        "bad-recipient",
        "bad_recipient",
        "can't accept user",
        "destination addresses were unknown",
        "destination server rejected recipients",
        "email address does not exist",
        "email address could not be found",
        "invalid address",
        "invalid mailbox",
        "invalid recipient",
        "is not a known user",
        "is not a valid mailbox",
        "is not an active address at this host",
        "mailbox {w} does not exist",
        "mailbox does not exist",
        "mailbox invalid",
        "mailbox is inactive",
        "mailbox is unavailable",
        "mailbox not present",
        "mailbox not found",
        "mailbox unavailable",
        "nessun utente simile in questo indirizzo",
        "no account by that name here",
        "no existe dicha persona",
        "no existe ese usuario ",
        "no mail box available for this user",
        "no mailbox by that name is currently available",
        "no mailbox found",
        "no mailbox here by that name",
        "no matches to nameserver query",
        "no such address here",
        "no such mailbox",
        "no such person at this address",
        "no such recipient",
        "no such user",
        "no valid recipients, bye",
        "non-existent user",
        "nonexistent user",
        "non existent user",
        "not a valid recipient",
        "not a valid user here",
        "not a local address",
        "not email addresses",
        "rcpt <{w} does not exist",
        "recipient {w} was not found in",
        "recipient address rejected: invalid user",
        "recipient address rejected: invalid-recipient",
        "recipient address rejected: user {w} does not exist",
        "recipient address rejected: user unknown",
        "recipient address rejected: unknown user",
        "recipient address rejected: access denied",
        "recipient does not exist",
        "recipient is not local",
        "recipient not exist",
        "recipient not found",
        "recipient not ok",
        "recipient refuses to accept your mail",
        "recipient unknown",
        "recipient address does not exist",
        "requested action not taken: mailbox unavailable",
        "resolver.adr.recipnotfound",
        "resolver.adr.recipientnotfound",
        "resolver.adr.exrecipnotfound",
        "sorry, user unknown",
        "sorry, badrcptto",
        "sorry, your envelope recipient has been denied",
        "that domain or user isn't in my list of allowed rcpthosts",
        "email account that you tried to reach does not exist",
        "the following recipients was undeliverable",
        "user's email name is not found",
        "there is no one at this address",
        "this address no longer accepts mail",
        "this email address is wrong or no longer valid",
        "this recipient is in my badrecipientto list",
        "this recipient is not in my validrcptto list",
        "this spectator does not exist",
        "this user doesn't have a {w} account",
        "unknown e-mail address",
        "unknown email address",
        "unknown local part",
        "unknown local-part",
        "unknown mailbox",
        "unknown recipient",
        "unknown user",
        "unknown or illegal alias",
        "user {w} was not found",
        "user {w} does not exist",
        "user does not exist",
        "user missing home directory",
        "user not active",
        "user not exist",
        "user not found",
        "user not known",
        "user unknown",
        "user doesn't exist",
        "utilisateur inconnu",
        "vdeliver: invalid or unknown virtual user",
        "your envelope recipient is in my badrcptto list",
        "not listed in domino directory",
        "invalid final delivery userid",
        "no valid recipients for this",
        "destinataire invalide",
        "unknown address",
        "no such account",
        "account does not exist",
        "does not exist here",
        "recipient rejected",
        "not listed in public name & address book",
        "mailbox name not allowed",
        "recipient no longer exists",
    ),
    "filtered": (
        "because the recipient is only accepting mail from specific email addresses",
        "bounced address",
        "due to extended inactivity new mail is not currently being accepted for this mailbox",
        "has restricted sms e-mail",
        "is not accepting any mail",
        "message rejected due to user rules",
        "not found recipient account",
        "refused due to recipient preferences",
        "resolver.rst.notauthorized",
        "this account is protected by",
        "user reject",
        "refuse to receive mail",
        "you have been blocked by the recipient",
        "mail is rejected by recipients",
    ),
    "requireptr": (
        "access denied. ip name lookup failed",
        "all mail servers must have a ptr record",
        "bad dns ptr resource record",
        "cannot find your hostname",
        "cannot resolve your address",
        "client host rejected: cannot find your hostname",
        "domain {w} mismatches client ip",
        "dns lookup failure: {w} try again later",
        "fix reverse dns for",
        "ips with missing ptr records",
        "no ptr record found",
        "please get a custom reverse dns name",
        "ptr record setup",
        "reverse dns failed",
        "reverse dns required",
        "reverse dns lookup for host {w} failed permanently",
        "sender ip reverse lookup rejected",
        "forbidden by invalid rdns record of your mail server",
        "service permits {d} unverifyable sending ips",
        "the ip address sending this message does not have a ptr record",
        "with no reverse dns",
        "unresolvable relay host name",
        "we do not accept mail from hosts with dynamic ip or generic dns ptr-records",
        "missing reverse dns",
        "reverse dns validation failed",
        "must have a reverse dns record",
        "no reverse dns",
        "reverse dns entry",
        "invalid rdns",
        "rdns lookup failed",
        "no ptr record",
        "does not have a ptr record",
        "ptr record required",
        "reverse lookup failed",
        "dns ptr record",
        "ip name lookup failed",
        "mismatches client ip",
        "ptr lookup failed",
        "rejected - no rdns",
    ),
    "notcompliantrfc": (
        "this message is not rfc 5322 compliant",
        "not rfc 5322 compliant",
        "rfc 5322 section 3.6",
        "multiple addresses in from: header",
        "there are multiple subject headers",
        "duplicate header",
        "rfcmessagenoncompliant",
        "is not rfc compliant",
        "message is not rfc",
    ),
    "badreputation": (
        "has been temporarily rate limited due to ip reputation",
        "ip/domain reputation problems",
        "likely suspicious due to the very low reputation",
        "very low reputation",
        "temporarily deferred due to unexpected volume or user complaints",
        "the sending mta's poor reputation",
        "poor email reputation score",
        "poor reputation",
        "bad reputation",
        "low reputation",
        "local ct ip reputation",
        "reputation of the sending",
    ),
    "rejected": (
        "access denied (in reply to mail from command)",
        "access denied (sender blacklisted)",
        "address rejected",
        "administrative prohibition",
        "batv failed to verify",
        "batv validation failure",
        "backscatter protection detected an invalid or expired email address",
        "because the sender isn't on the recipient's list of senders to accept mail from",
        "bogus mail from",
        "connections not accepted from servers without a valid sender domain",
        "denied [bouncedeny]",
        "denied by secumail valid-address-filter",
        "delivery not authorized, message refused",
        "does not exist e2110",
        "domain of sender address ",
        "email address is on senderfilterconfig list",
        "emetteur invalide",
        "empty envelope senders not allowed",
        "envelope blocked",
        "error: no third-party dsns",
        "from: domain is invalid. please provide a valid from:",
        "fully qualified email address required",
        "invalid domain, see <url:",
        "invalid sender",
        "is not a registered gateway user",
        "mail from not owned by user",
        "null sender is not allowed",
        "recipient addresses rejected : access denied",
        "recipient not accepted. (batv: no tag",
        "returned mail not accepted here",
        "rfc 1035 violation: recursive cname records for",
        "rule imposed mailbox access for",
        "sender address has been blacklisted",
        "sender email address rejected",
        "sender is in my black list",
        "sender is spammer",
        "sender not pre-approved",
        "sender rejected",
        "sender domain is empty",
        "sender verify failed",
        "syntax error: empty email address",
        "the message has been rejected by batv defense",
        "this server does not accept mail from",
        "transaction failed unsigned dsn for",
        "unroutable sender address",
        "you are not allowed to post to this mailing list",
        "you are sending to/from an address that has been blacklisted",
        "your access to submit messages to this e-mail system has been rejected",
        "sender address rejected",
        "sender was rejected",
        "no such domain at this location",
        "not a member of this",
        "may not exist, or you may not have permission",
        "sender denied",
        "unknown sender",
        "sender not allowed",
        "sender blocked",
        "sender address blocked",
        "blocked senders",
        "send mail as",
        "sender domain must exist",
        "sender address is not valid",
        "invalid from address",
    ),
    "hostunknown": (
        "domain does not exist",
        "domain is not reachable",
        "domain must exist",
        "host or domain name not found",
        "host unknown",
        "host unreachable",
        "mail domain mentioned in email address is unknown",
        "name or service not known",
        "no such domain",
        "unknown domain",
        "recipient domain must exist",
        "the account or domain may not exist",
        "unknown host",
        "unroutable address",
        "unrouteable address",
        "553 {w} does not exist",
        "couldn't find any host named",
        "illegal host/domain name",
        "domain not found",
        "host not found",
        "we weren't able to find the recipient domain",
        "domain name not found",
        "no such host",
        "bad destination system address",
    ),
    "spamdetected": (
        "the mail server detected your message as spam",
        "reject, id={w} - spam",
        "appears to be unsolicited",
        "blacklisted url in message",
        "block for spam",
        "blocked by policy: no spam please",
        "blocked by spamassassin",
        "blocked for abuse. see http://att.net/blocks",
        "bulk email",
        "considered unsolicited bulk e-mail",
        "content filter rejection",
        "denied due to spam list",
        "high probability of spam",
        "likely unsolicited mail",
        "mail content denied",
        "may consider spam",
        "message considered as spam or virus",
        "message contains spam or virus",
        "message content rejected",
        "message detected as spam",
        "message filtered",
        "message is being rejected as it seems to be a spam",
        "message looks like spam",
        "message refused by mailmarshal spamprofiler",
        "message refused by trustwave seg spamprofiler",
        "message rejected as spam",
        "message rejected because of unacceptable content",
        "message rejected due to suspected spam content",
        "our email server thinks this email is spam",
        "our filters rate at and above {d} percent probability of being spam",
        "our system has detected that this message is",
        "probable spam",
        "reject bulk.advertising",
        "rejected: spamassassin score ",
        "rejected due to spam",
        "rejecting banned content",
        "rejecting mail content",
        "related to content with spam-like characteristics",
        "sending address not accepted due to spam filter",
        "spam blocked",
        "spam check",
        "spam content matched",
        "spam detected",
        "spam email",
        "spam not accepted",
        "spam refused",
        "spam rejection",
        "spam message rejected",
        "spam reporting address",
        "spam score ",
        "spambouncer identified spam",
        "spamming not allowed",
        "too much spam.",
        "detected as spam",
        "has been rejected by spam filtering engine",
        "rejected due to classification as bulk mail",
        "looked like spam",
        "cannot be forwarded because it was detected as spam",
        "is classified as spam",
        "appears to be spam",
        "identified as spam",
        "scored as spam",
        "spam points",
        "classified as spam",
        "rejected by recurrent pattern detection system",
        "spam message not queued",
        "we dont accept spam",
        "you're using a mass mailer",
        "appears similar to spam",
        "breaches local uribl policy",
        "had spam-like ",
        "is considered spam",
        "is probably spam",
        "triggered a spam block",
        "may contain the spam contents",
        "failed several antispam checks",
        "content, ube",
        "spam classification",
        "suspected spam",
        "spam is embedded in the email",
        "- spam",
        "as spam",
        "is spam",
        "considered spam",
    ),
    "speeding": (
        "please try again slower",
        "receiving mail at a rate that prevents additional messages",
        "receiving mail too quickly",
        "has sent to too many recipients this hour",
        "rate limited",
        "has sent too many messages this hour",
        "sending rate exceeded",
        "rate limit exceeded",
        "too fast",
    ),
    "toomanyconn": (
        "all available ips are at maximum connection limit",
        "connection rate limit exceeded",
        "exceeds per-domain connection limit for",
        "has exceeded the max emails per hour ",
        "throttling failure: daily message quota exceeded",
        "throttling failure: maximum sending rate exceeded",
        "too many connections",
        "too many concurrent smtp connections",
        "too many errors from your ip",
        "too many recipients",
        "too many smtp sessions for this host",
        "trop de connexions, ",
        "we have already made numerous attempts to deliver this message",
        "connection frequency limited",
        "ip frequency limited",
        "domain frequency limited",
        "sender frequency limited",
        "too many sessions",
        "too many messages in this connection",
        "concurrent connections",
        "exceeded the maximum number of connections",
    ),
    "blocked": (
        " said: 550 blocked",
        ":blocked)",
        "access from ip address {w} blocked",
        "bad sender ip address",
        "banned sending ip",
        "blacklisted by",
        "blocked - see http",
        "refused - see http",
        "blocked using ",
        "can't determine purported responsible address",
        "client host {w} blocked using",
        "abus detecte gu_eib_0",
        "may not be mail exchanger",
        "was not authenticated",
        "confirm this mail server",
        "connection dropped",
        "connection refused by",
        "connection reset by peer",
        "was dropped by remote host",
        "not accepted from ip addresses on spamhaus",
        "because the ip is in spamhaus's list",
        "currently sending spam see: ",
        "dynamic/zombied/spam ips blocked",
        "email blocked by ",
        "error: no valid recipients from ",
        "esmtp not accepting connections",
        "extreme bad ip profile",
        "go away",
        "helo command rejected:",
        "refused to talk to me: {d} blocked",
        "host network not allowed",
        "hosts with dynamic ip",
        "spamcop.net/bl",
        "invalid ip for sending mail of domain",
        "is blocked by earthlink",
        "is in a black list",
        "is in an {w}rbl on ",
        "is not allowed to send mail from",
        "mail server at {w} is blocked",
        "mail from {w} refused:",
        "rejected based on blacklist",
        "message was rejected for possible spam/virus content",
        "temporarily deferred due to user complaints",
        "no access from mail server",
        "not currently accepting mail from your ip",
        "part of their network is on our block list",
        "please use the smtp server of your isp",
        "rejected because the sending mta or the sender has not passed validation",
        "rejecting open proxy",
        "sender ip address rejected",
        "server access forbidden by your ip ",
        "listed as abusive",
        "service not available, closing transmission channel",
        "smtp error from remote mail server after initial connection:",
        "sorry, that domain isn't in my list of allowed rcpthosts",
        "your remotehost looks suspiciously like spammer",
        "the email {w} is blacklisted",
        "the domain {w} is blacklisted",
        "the ip {w} is blacklisted",
        "to submit messages to this e-mail system has been rejected",
        "too many spams from your ip",
        "too many unwanted messages have been sent from the following ip address",
        "was blocked by ",
        "we do not accept mail from dynamic ips",
        "you are not allowed to connect",
        "you are sending spam",
        "your email address has been blacklisted",
        "your network is temporary blacklisted",
        "abuseat.org",
        "your server requires confirmation",
        "client host rejected",
        "ip address blacklisted",
        "blacklisted ip",
        "ip blacklisted",
        "ip is blacklisted",
        "listed on spamhaus",
        "listed in spamhaus",
        "spamhaus.org",
        "blocked by ldap",
        "blocked for spam",
        "blocked ip",
        "ip blocked",
        "ip address blocked",
        "ip address is blocked",
        "ip is blocked",
        "client host blocked",
        "adresse ip source bloquee",
        "dnsbl",
        "rbl reject",
        "blocklist",
        "blacklist",
        "block list",
        "your ip",
        "ip has a poor reputation",
        "suspected spam ip",
        "my name was rejected",
        "invalid helo",
        "bad helo",
        "helo/ehlo argument is invalid",
    ),
    "virusdetected": (
        "it has a potentially executable attachment",
        "the message was rejected because it contains prohibited virus or spam content",
        "this form of attachment has been used by recent viruses or other malware",
        "virus detected",
        "your message was infected with a virus",
        "virus infected",
        "infected with a virus",
        "contains a virus",
        "virus found",
        "email rejected due to security policies",
    ),
    "policyviolation": (
        "an illegal attachment on your message",
        "because the recipient is not accepting mail with ",
        "by non-member to a members-only list",
        "closed mailing list",
        "denied by policy",
        "email not accepted for policy reasons",
        "header are not accepted",
        "header error",
        "local policy violation",
        "message bounced due to organizational settings",
        "message given low priority",
        "message not accepted for policy reasons",
        "message rejected due to local policy",
        "rejected for policy reasons",
        "protocol violation",
        "is not subscribed to this group",
        "the message was rejected by organization policy",
        "its content presents a potential",
        "we do not accept messages containing images or other attachments",
        "allowable number of posts without solving a captcha",
        "policy violation",
        "anti-spoofing policy",
        "content examination policy",
        "policy that prohibited",
        "attachment extension is forbidden",
        "violates our policy",
        "violation of policy",
        "due to policy",
        "prohibited by policy",
    ),
    "securityerror": (
        "account not subscribed to ses",
        "authentication credentials invalid",
        "authentication failure",
        "authentication failed; server {w} said:",
        "authentication required",
        "authentication turned on in your email client",
        "authentification requise",
        "d'authentification invalide",
        "is a dead domain",
        "executable files are not allowed in compressed files",
        "insecure mail relay",
        "sorry, you don't authenticate or the domain isn't in my list of allowed rcpthosts",
        "sorry, you dont authenticate",
        "tls required but not supported",
        "unauthenticated senders not allowed",
        "is not authorized to perform ses:sendrawemail",
        "you are not authorized to send mail, authentication is required",
        "verification failure",
        "smtp authentication",
        "does not support tls",
        "tls required",
        "must issue a starttls",
        "requires encryption",
        "encryption required",
        "authrequired",
        "not authenticated",
        "authentication is required",
        "incorrect authentication data",
        "username and password not accepted",
        "invalid credentials",
    ),
    "systemerror": (
        "aliasing/forwarding loop broken",
        "can't create user output file",
        "could not load drd for domain",
        "internal error reading data",
        "internal server error: operation now in progress",
        "interrupted system call",
        "it encountered an error while being processed",
        "it would create a mail loop",
        "local configuration error",
        "local error in processing",
        "loop was found in the mail exchanger",
        "loops back to myself",
        "queue file write error",
        "mail system configuration error",
        "remote server is misconfigured",
        "server configuration error",
        "service currently unavailable",
        "system config error",
        "temporary local problem",
        "timeout waiting for input",
        "transaction failed",
        "internal system error",
        "internal server error",
        "system error",
        "temporary system problem",
        "system incorrectly configured",
        "server busy",
        "system is busy",
    ),
    "networkerror": (
        "could not connect and send the mail to",
        "dns records for the destination computer could not be found",
        "hop count exceeded",
        "host is unreachable",
        "host name lookup failure",
        "host not found, try again",
        "mail forwarding loop for ",
        "malformed name server reply",
        "malformed or unexpected name server reply",
        "maximum forwarding loop count exceeded",
        "message looping",
        "message probably in a routing loop",
        "no route to host",
        "too many hops",
        "unable to resolve route ",
        "unrouteable mail domain",
        "routing loop detected",
        "mail loop detected",
        "lost connection with",
        "dns error",
        "dns query failed",
        "dns lookup failed",
        "wasn't able to establish an smtp connection",
        "nxdomain",
        "exceeded {d} hops",
        "too many received: headers",
        "network is unreachable",
    ),
    "contenterror": (
        "header size exceeds maximum permitted",
        "improper use of 8-bit data in message header",
        "message header size, or recipient list, exceeds policy limit",
        "message mime complexity exceeds the policy maximum",
        "routing loop detected -- too many received: headers",
        "this message contain invalid mime headers",
        "this message contain improperly-formatted binary content",
        "this message contain text that uses unnecessary base64 encoding",
        "headers too large",
        "message is malformed",
        "malformed message",
        "invalid mime",
        "invalid characters",
        "8-bit data",
        "content rejected",
    ),
    "systemfull": (
        "mail system full",
        "requested mail action aborted: exceeded storage allocation",
        "insufficient disk space",
        "insufficient system resources",
        "system storage",
    ),
    "notaccept": (
        "does not accept mail (nullmx)",
        "host/domain does not accept mail",
        "host does not accept mail",
        "no mx record found for domain=",
        "no route for current request",
        "smtp protocol returned a permanent error",
        "no mx found",
        "no mx record",
        "doesn't receive email",
        "does not receive email",
        "indicated no smtp service",
        "null mx",
        "nullmx",
        "does not accept mail",
        "couldn't find a mail exchanger",
        "could not find a mail exchanger",
        "not accepting network messages",
        "no smtp service",
    ),
    "expired": (
        "connection timed out",
        "could not find a gateway for",
        "delivery attempts will continue to be",
        "delivery time expired",
        "failed to deliver to domain ",
        "giving up on",
        "have been failing for a long time",
        "has been delayed",
        "it has not been collected after",
        "message expired",
        "message timed out",
        "retry time not reached for any host after a long failure period",
        "server did not respond",
        "has been in the queue too long",
        "unable to deliver message after multiple retries",
        "was not reachable within the allowed queue period",
        "your message could not be delivered for more than",
        "retry timeout exceeded",
        "envelope expired",
        "delivery failed {d} attempts",
        "unable to deliver this message after",
        "did not accept our requests to connect",
        "host not reachable",
        "queue expired",
        "will be retried for",
        "unable to deliver in {d} minutes",
        "delivery timeout",
        "still undelivered after",
        "timed out",
    ),
}

# "address rejected" is the sender's problem unless these say the recipient (or the client IP) was refused.
_NOT_REJECTED = ("recipient address rejected", "5.1.0 address rejected", "sender ip address rejected")

# Reasons decided "by status code or by text", in Sisimai's first-pass order (mailererror added up front: a local
# delivery program failing outranks whatever status the MTA put on it).
_ORDER_FIRST: tuple[str, ...] = (
    "mailererror", "mailboxfull", "mesgtoobig", "exceedlimit", "suspend", "hasmoved", "norelaying", "authfailure",
    "userunknown", "filtered", "requireptr", "notcompliantrfc", "badreputation", "rejected", "notaccept",
    "hostunknown", "spamdetected", "speeding", "toomanyconn", "blocked",
)  # fmt: skip
# Reasons decided by text only, after the first pass found nothing.
_ORDER_SECOND: tuple[str, ...] = (
    "virusdetected", "policyviolation", "systemerror", "networkerror", "contenterror", "systemfull", "expired",
    "securityerror",
)  # fmt: skip
_RANK = {r: i for i, r in enumerate(_ORDER_FIRST + _ORDER_SECOND)}

# Reasons a user-unknown status gives up when the text says something more specific.
_USERUNKNOWN_VETO = frozenset(
    {
        "norelaying",
        "blocked",
        "mailboxfull",
        "hasmoved",
        "rejected",
        "notaccept",
        "requireptr",
        "authfailure",
        "badreputation",
        "suspend",
        "mailererror",
    }
)
# Status reasons too vague to stand against any text match.
_WEAK_STATUS = frozenset({"undefined", "onhold", "systemerror", "securityerror", "networkerror", "expired"})

_STATUS_TABLE: dict[str, str] = {
    "4.1.6": "hasmoved",
    "4.1.7": "rejected",
    "4.1.8": "rejected",
    "4.1.9": "systemerror",
    "4.2.1": "suspend",
    "4.2.2": "mailboxfull",
    "4.2.3": "exceedlimit",
    "4.2.4": "filtered",
    "4.3.1": "systemfull",
    "4.3.2": "notaccept",
    "4.3.3": "systemerror",
    "4.3.5": "systemerror",
    "4.4.1": "expired",
    "4.4.2": "networkerror",
    "4.4.4": "networkerror",
    "4.4.5": "systemfull",
    "4.4.6": "networkerror",
    "4.4.7": "expired",
    "4.5.3": "systemerror",
    "4.5.5": "systemerror",
    "4.6.0": "contenterror",
    "4.6.2": "contenterror",
    "4.6.5": "contenterror",
    "4.7.1": "blocked",
    "4.7.2": "blocked",
    "4.7.5": "securityerror",
    "4.7.6": "securityerror",
    "4.7.7": "securityerror",
    "4.7.12": "securityerror",
    "4.7.15": "securityerror",
    "4.7.16": "mesgtoobig",
    "4.7.24": "authfailure",
    "4.7.25": "requireptr",
    "4.7.26": "authfailure",
    "5.1.0": "userunknown",
    "5.1.1": "userunknown",
    "5.1.2": "hostunknown",
    "5.1.3": "userunknown",
    "5.1.4": "filtered",
    "5.1.6": "hasmoved",
    "5.1.7": "rejected",
    "5.1.8": "rejected",
    "5.1.9": "systemerror",
    "5.1.10": "userunknown",
    "5.2.0": "filtered",
    "5.2.1": "filtered",
    "5.2.2": "mailboxfull",
    "5.2.3": "exceedlimit",
    "5.2.4": "filtered",
    "5.3.0": "systemerror",
    "5.3.1": "systemfull",
    "5.3.2": "notaccept",
    "5.3.3": "systemerror",
    "5.3.4": "mesgtoobig",
    "5.3.5": "systemerror",
    "5.4.0": "networkerror",
    "5.4.3": "systemerror",
    "5.4.4": "hostunknown",
    "5.5.3": "toomanyconn",
    "5.5.4": "systemerror",
    "5.5.5": "systemerror",
    "5.5.6": "securityerror",
    "5.6.0": "contenterror",
    "5.6.1": "contenterror",
    "5.6.2": "contenterror",
    "5.6.3": "contenterror",
    "5.6.5": "contenterror",
    "5.6.6": "contenterror",
    "5.6.7": "contenterror",
    "5.6.8": "contenterror",
    "5.6.9": "contenterror",
    "5.7.0": "securityerror",
    "5.7.1": "securityerror",
    "5.7.2": "securityerror",
    "5.7.3": "securityerror",
    "5.7.4": "securityerror",
    "5.7.5": "securityerror",
    "5.7.6": "securityerror",
    "5.7.7": "securityerror",
    "5.7.8": "securityerror",
    "5.7.9": "securityerror",
    "5.7.10": "securityerror",
    "5.7.11": "securityerror",
    "5.7.13": "suspend",
    "5.7.14": "securityerror",
    "5.7.15": "securityerror",
    "5.7.16": "mesgtoobig",
    "5.7.17": "hasmoved",
    "5.7.18": "hasmoved",
    "5.7.19": "securityerror",
    "5.7.20": "authfailure",
    "5.7.21": "authfailure",
    "5.7.22": "authfailure",
    "5.7.23": "authfailure",
    "5.7.24": "authfailure",
    "5.7.25": "requireptr",
    "5.7.26": "authfailure",
    "5.7.27": "notaccept",
}
# Sisimai's own pseudo status codes (x.0.9NN), which some MTAs' bounces and upstream tools carry.
_PSEUDO_STATUS: dict[str, str] = {
    "900": "undefined",
    "901": "onhold",
    "902": "syntaxerror",
    "909": "norelaying",
    "910": "filtered",
    "911": "userunknown",
    "912": "hostunknown",
    "916": "hasmoved",
    "918": "rejected",
    "921": "suspend",
    "922": "mailboxfull",
    "923": "exceedlimit",
    "924": "filtered",
    "930": "systemerror",
    "931": "systemfull",
    "932": "notaccept",
    "934": "mesgtoobig",
    "939": "mailererror",
    "944": "networkerror",
    "945": "toomanyconn",
    "947": "expired",
    "960": "contenterror",
    "970": "securityerror",
    "971": "blocked",
    "972": "policyviolation",
    "973": "requireptr",
    "974": "authfailure",
    "975": "badreputation",
    "976": "notcompliantrfc",
    "977": "speeding",
    "980": "spamdetected",
    "981": "virusdetected",
}

_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


# -- phrase index ----------------------------------------------------------------------------------------------------
# Python's regex engine has no multi-pattern search: a 900-branch alternation costs ~20 ns per character per branch
# group, far over budget. So each phrase is indexed by one "anchor" word it contains; a diagnostic is split into its
# words once, and only phrases whose anchor occurs are checked (plain substring test, or a small regex for phrases
# with {w}/{d}/{a} tokens). All regexes are literal-prefixed, bounded and free of nested quantifiers.

_TOKENS = {"{w}": r"[^ ]{1,80}", "{d}": r"\d{1,12}", "{a}": r".{0,60}?"}
_TOKEN_SPLIT = re.compile(r"(\{[wda]\})")
_WORD = re.compile(r"[a-z0-9]+")
# bytes.translate table (fast, C): every byte that is not [a-z0-9] becomes a space; text is lower-cased first.
_WORD_TABLE = bytes(c if chr(c).isascii() and chr(c).isalnum() else 32 for c in range(256))


def _phrase_regex(phrase: str) -> re.Pattern[str] | None:
    if not _TOKEN_SPLIT.search(phrase):
        return None
    parts = [_TOKENS.get(piece, re.escape(piece)) for piece in _TOKEN_SPLIT.split(phrase) if piece]
    return re.compile("".join(parts))


def _anchor(phrase: str) -> str:
    """The phrase's most distinctive whole word: longest, preferring words not cut by the phrase's own ends."""
    literal = _TOKEN_SPLIT.sub(" ", phrase)
    best, best_key = "", (-1, -1)
    for m in _WORD.finditer(literal):
        word = m.group(0)
        bounded = m.start() > 0 and m.end() < len(literal)
        key = (1 if bounded and len(word) >= 4 else 0, len(word))
        if key > best_key and not word.isdigit():
            best, best_key = word, key
    return best


_Entry = tuple[str, str, "re.Pattern[str] | None"]
_INDEX: dict[str, list[_Entry]] = {}
_ALWAYS: list[_Entry] = []  # phrases with no usable anchor word: always tested (few, short)
for _reason, _phrases in _PHRASES.items():
    for _phrase in _phrases:
        _entry: _Entry = (_reason, _phrase, _phrase_regex(_phrase))
        _word = _anchor(_phrase)
        if not _word or _word == _phrase.strip():
            _ALWAYS.append(_entry)
        else:
            _INDEX.setdefault(_word, []).append(_entry)
_ANCHORS = frozenset(w.encode() for w in _INDEX)
_INDEX_B = {w.encode(): entries for w, entries in _INDEX.items()}


def _normalise(text: str) -> str:
    text = " ".join(text[:_MAX_TEXT].lower().split())
    if not text.isascii():
        text = text.replace("\u2019", "'").replace("\u2013", "-")
    return text


def _text_reasons(text: str) -> set[str]:
    """Every reason with at least one phrase in the (normalised) text."""
    found: set[str] = set()
    for reason, phrase, rx in _ALWAYS:
        if reason not in found and (phrase in text if rx is None else rx.search(text) is not None):
            found.add(reason)
    for word in _ANCHORS.intersection(text.encode("ascii", "replace").translate(_WORD_TABLE).split()):
        for reason, phrase, rx in _INDEX_B[word]:
            if reason not in found and (phrase in text if rx is None else rx.search(text) is not None):
                found.add(reason)
    if "rejected" in found and any(p in text for p in _NOT_REJECTED):
        found.discard("rejected")
    return found


# SMTP stage named in the text: Postfix "(in reply to RCPT TO command)", Exim "after RCPT TO:", qmail "does not
# like recipient", Yahoo "[RCPT_TO]"... The stage separates a missing mailbox from a filter refusing a message.
_STAGE_RCPT = (
    "rcpt to",
    "rcpt_to",
    "rcpt command",
    "after rcpt",
    "does not like recipient",
    "recipient address rejected",
    "rejected recipient",
)
_STAGE_DATA = ("end of data", "after data", "data command", "[data]", "message content")


def _stage(text: str) -> str:
    if any(p in text for p in _STAGE_RCPT):
        return "RCPT"
    if any(p in text for p in _STAGE_DATA):
        return "DATA"
    return ""


# -- provider rules keyed by the remote MTA ------------------------------------------------------------------------

_FRANCEPTT_CODES = {
    "101": "blocked",
    "102": "blocked",
    "103": "blocked",
    "104": "blocked",
    "105": "undefined",
    "107": "undefined",
    "108": "undefined",
    "109": "undefined",
    "201": "undefined",
    "305": "securityerror",
    "401": "authfailure",
    "402": "securityerror",
    "403": "rejected",
    "405": "rejected",
    "415": "rejected",
    "416": "userunknown",
    "417": "mailboxfull",
    "418": "userunknown",
    "420": "suspend",
    "421": "rejected",
    "423": "undefined",
    "424": "undefined",
    "426": "suspend",
    "505": "systemerror",
    "506": "spamdetected",
    "510": "blocked",
    "513": "undefined",
    "514": "mesgtoobig",
    "517": "policyviolation",
    "630": "policyviolation",
    "999": "blocked",
}
_FRANCEPTT_RX = re.compile(r"\b(?:lpn|lpnaaa|ofr|ouk)(?:_\d{3}|\d{3}[-_]\d{3})\b")

_GODADDY_CODES = {
    "IB007": "toomanyconn",
    "IB101": "expired",
    "IB103": "blocked",
    "IB104": "blocked",
    "IB105": "blocked",
    "IB106": "blocked",
    "IB108": "requireptr",
    "IB110": "blocked",
    "IB111": "blocked",
    "IB112": "blocked",
    "IB113": "blocked",
    "IB212": "spamdetected",
    "IB401": "securityerror",
    "IB501": "rejected",
    "IB502": "rejected",
    "IB504": "speeding",
    "IB506": "rejected",
    "IB508": "rejected",
    "IB510": "toomanyconn",
    "IB607": "speeding",
    "IB705": "virusdetected",
}
_GODADDY_RX = re.compile(r"\b(ib\d{3})\b")

_IUA_CODES = {
    "1": "norelaying",
    "2": "userunknown",
    "3": "suspend",
    "4": "mailboxfull",
    "5": "toomanyconn",
    "6": "norelaying",
    "7": "blocked",
    "8": "rejected",
    "9": "blocked",
    "10": "filtered",
}
_IUA_RX = re.compile(r"\.i\.ua/err/(\d{1,2})")

_COX_RX = re.compile(r"aup#([0-9a-z]{2,12})")
_COX_CODES = {
    "cxbl": "blocked",
    "cxthrt": "securityerror",
    "cxmj": "securityerror",
    "cxdns": "requireptr",
    "cxsndr": "rejected",
    "cxsmtp": "rejected",
    "cxcnct": "toomanyconn",
    "cxmxrt": "speeding",
    "cdrbl": "blocked",
}


def _francept(status: str, code: str, text: str) -> str:
    m = _FRANCEPTT_RX.search(text)
    return _FRANCEPTT_CODES.get(m.group(0)[-3:], "undefined") if m else ""


def _godaddy(status: str, code: str, text: str) -> str:
    m = _GODADDY_RX.search(text)
    return _GODADDY_CODES.get(m.group(1).upper(), "") if m else ""


def _iua(status: str, code: str, text: str) -> str:
    m = _IUA_RX.search(text)
    return _IUA_CODES.get(m.group(1), "") if m else ""


def _cox(status: str, code: str, text: str) -> str:
    m = _COX_RX.search(text)
    if not m:
        return ""
    tag = m.group(1)
    if tag.startswith(("ipbl", "rbl")):
        return "blocked"
    if tag.startswith("urlbl"):
        return "spamdetected"
    return _COX_CODES.get(tag, "")


def _kddi(status: str, code: str, text: str) -> str:
    # au/KDDI answer "550 : User unknown" from a content filter and "550 <addr>: User unknown" for a real miss.
    if "550 : user unknown" in text:
        return "filtered"
    if ">: user unknown" in text:
        return "userunknown"
    return ""


def _docomo(status: str, code: str, text: str) -> str:
    if status in ("5.1.1", "5.0.911"):
        return "userunknown"
    if status == "5.2.0":
        return "filtered"
    if "552 too much mail data" in text:
        return "mailboxfull"
    if "552 too many recipients" in text:
        return "toomanyconn"
    if "503 bad sequence of commands" in text or "504 command parameter not implemented" in text:
        return "syntaxerror"
    if status in ("5.0.0", ""):
        stage = _stage(text)
        # docomo answers a blocked sender at end of DATA with "Unknown user".
        return {"RCPT": "userunknown", "DATA": "rejected"}.get(stage, "")
    return ""


_MIMECAST_RULES: tuple[tuple[str, str, str], ...] = (
    ("554", "email rejected due to security policies", "virusdetected"),
    ("554", "host network not allowed", "policyviolation"),
    ("554", "maximum email size exceeded", "mesgtoobig"),
    ("554", "mail loop detected", "networkerror"),
    ("550", "anti-spoofing policy", "policyviolation"),
    ("550", "content examination policy", "policyviolation"),
    ("550", "envelope blocked", "rejected"),
    ("550", "blocked senders", "rejected"),
    ("550", "invalid recipient", "userunknown"),
    ("501", "invalid address", "userunknown"),
    ("451", "open relay not allowed", "norelaying"),
    ("451", "account inbounds disabled", "notaccept"),
    ("452", "too many recipients", "toomanyconn"),
)


def _mimecast(status: str, code: str, text: str) -> str:
    for reply, phrase, reason in _MIMECAST_RULES:
        if code == reply and phrase in text:
            return reason
    return ""


_TENCENT_RULES: tuple[tuple[str, str], ...] = (
    ("dmarc check failed", "authfailure"),
    ("spf check failed", "authfailure"),
    ("suspected spam ip", "blocked"),
    ("mail is rejected by recipients", "filtered"),
    ("message too large", "mesgtoobig"),
    ("mail content denied", "spamdetected"),
    ("spam is embedded in the email", "spamdetected"),
    ("suspected spam", "spamdetected"),
    ("bad address syntax", "syntaxerror"),
    ("connection denied", "toomanyconn"),
    ("frequency limited", "toomanyconn"),
    ("mailbox unavailable or access denied", "toomanyconn"),
    ("mailbox not found", "userunknown"),
)


def _tencent(status: str, code: str, text: str) -> str:
    for phrase, reason in _TENCENT_RULES:
        if phrase in text:
            return reason
    return ""


_MICROSOFT_RULES: tuple[tuple[str, str, str], ...] = (
    # (status prefix, phrase, reason): Exchange Online's enhanced codes are specific, the text confirms them.
    ("5.7.509", "dmarc", "authfailure"),
    ("5.7.23", "", "authfailure"),
    ("4.7.650", "", "badreputation"),
    ("5.7.25", "", "requireptr"),
    ("5.7.51", "", "blocked"),
    ("5.7.606", "", "blocked"),
    ("5.7.511", "", "blocked"),
    ("5.7.512", "", "notcompliantrfc"),
    ("5.4.1", "recipient address rejected: access denied", "userunknown"),
    ("5.1.10", "", "userunknown"),
    ("5.4.1", "relay access denied", "norelaying"),
    ("5.7.64", "", "norelaying"),
    ("5.7.504", "", "suspend"),
    ("5.7.505", "", "suspend"),
    ("5.2.121", "", "speeding"),
    ("5.2.122", "", "speeding"),
    ("5.7.508", "", "speeding"),
    ("5.4.312", "", "networkerror"),
    ("5.4.316", "", "expired"),
    ("5.4.300", "", "expired"),
    ("5.4.310", "", "norelaying"),
)


def _microsoft(status: str, code: str, text: str) -> str:
    for prefix, phrase, reason in _MICROSOFT_RULES:
        if status == prefix and (not phrase or phrase in text):
            return reason
    return ""


_RHOSTS: tuple[tuple[re.Pattern[str], Callable[[str, str, str], str]], ...] = (
    (re.compile(r"(?:^|\.)(?:laposte\.net|orange\.fr|wanadoo\.fr)$"), _francept),
    (re.compile(r"^(?:smtp|mailstore1)\.secureserver\.net$"), _godaddy),
    (re.compile(r"(?:^|\.)(?:prod|protection)\.outlook\.com$"), _microsoft),
    (re.compile(r"(?:^|\.)email\.ua$"), _iua),
    (re.compile(r"(?:^|\.)(?:cox\.net|charter\.net)$"), _cox),
    (re.compile(r"(?:^|\.)(?:ezweb\.ne\.jp|au\.com)$"), _kddi),
    (re.compile(r"(?:^|\.)mimecast\.com$"), _mimecast),
    (re.compile(r"mfsmax\.docomo\.ne\.jp$"), _docomo),
    (re.compile(r"(?:^|\.)mx\d*\.qq\.com$"), _tencent),
)


def _provider_reason(remote_mta: str, status: str, code: str, text: str) -> str:
    host = remote_mta.strip().strip("[]").rstrip(".").lower()
    if not host:
        return ""
    for host_rx, rule in _RHOSTS:
        if host_rx.search(host):
            return rule(status, code, text)
    return ""


# -- the mapping ---------------------------------------------------------------------------------------------------

_STATUS_RX = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def _status_reason(status: str) -> str:
    if status in _STATUS_TABLE:
        return _STATUS_TABLE[status]
    # x.0.9NN pseudo codes; anything else falls to its class below.
    if status[1:5] == ".0.9":
        return _PSEUDO_STATUS.get(status[4:], "")
    return ""


def _userunknown_text(status: str, status_reason: str, text: str) -> str:
    """'User unknown' wording: a missing mailbox at RCPT, a filter's refusal after DATA or with no stage."""
    stage = _stage(text)
    if stage == "RCPT":
        return "userunknown"
    if stage == "DATA":
        return "filtered"
    if status_reason == "filtered" or status.startswith("4"):
        # "<addr>... User Unknown" under 5.2.1 / 4.x.x is a recipient-stage answer.
        return "userunknown"
    if status in ("", "5.0.0"):
        # No code and no stage: Sisimai's default for this wording is a filter's refusal, not a missing mailbox.
        return "filtered"
    return "userunknown"


def find_reason(status: str, reply_code: str, diagnostic: str, action: str = "", remote_mta: str = "") -> str:
    status = status.strip()
    code = reply_code.strip()
    action = action.strip().lower()
    if status.startswith("2.") or action in _DELIVERED_ACTIONS:
        return "delivered"
    if not _STATUS_RX.match(status):
        status = ""
    text = _normalise(diagnostic) if diagnostic else ""

    pseudo = _PSEUDO_STATUS.get(status[4:], "") if status[1:5] == ".0.9" else ""
    if pseudo and pseudo not in ("undefined", "onhold"):
        return pseudo
    provider = _provider_reason(remote_mta, status, code, text)
    if provider:
        return provider

    by_status = _status_reason(status)
    by_text = _text_reasons(text) if text else set()

    # First pass: a reason named by the status code, or matched by the text, in fixed order.
    for reason in _ORDER_FIRST:
        if by_status == reason:
            if reason == "userunknown" and by_text & _USERUNKNOWN_VETO:
                continue
            if reason == "hostunknown" and "networkerror" in by_text:
                return "networkerror"
            if reason in ("filtered", "suspend") and status[2:3] == "2":
                # Mailbox-status codes (x.2.0, x.2.1) say little by themselves (Gmail rate limits use 4.2.1): let
                # specific text speak first; with none, the code stands in the second pass.
                if reason == "filtered" and "userunknown" in by_text:
                    return _userunknown_text(status, by_status, text)
                if by_text - {reason}:
                    continue
            return reason
        if reason in by_text:
            if reason == "userunknown":
                # A sender-address code (5.1.7, 5.1.8) under a generic "address not found" wrapper is the sender's.
                return "rejected" if by_status == "rejected" else _userunknown_text(status, by_status, text)
            if reason == "hostunknown" and "networkerror" in by_text and by_status != "hostunknown":
                # "host not found, try again", NXDOMAIN on a 4.x.x: a DNS failure, not a missing domain.
                return "networkerror"
            if reason == "exceedlimit" and by_status == "mesgtoobig":
                return "mesgtoobig"
            if reason == "mesgtoobig" and by_status == "exceedlimit" and "recipsizelimit" not in text:
                return "exceedlimit"
            return reason

    # Second pass: a specific status code stands; a vague one yields to the text.
    if by_status and by_status not in _WEAK_STATUS:
        return by_status
    for reason in _ORDER_SECOND:
        if reason in by_text:
            return reason
    if by_status:
        return by_status
    if status[1:3] == ".6":
        return "contenterror"
    if status[1:3] == ".7":
        return "securityerror"
    if code[:2] in ("50", "40") and code[2:3] in "01234567" and len(code) == 3:
        return "syntaxerror"
    if action in ("delayed", "expired") or (not action and status.startswith("4") and not text):
        return "expired"
    if text or pseudo == "onhold":
        return "onhold"
    return "undefined"


def is_hard(reason: str, status: str = "", reply_code: str = "") -> bool:
    """Hard only when the address is gone; policy, spam, reputation and DMARC refusals are never hard."""
    if reason in HARD_REASONS:
        return True
    if reason == "notaccept":
        # A domain that accepts no mail (null MX, no MX) is permanent unless a 4xx says otherwise;
        # reports that name no code at all state a final failure.
        status, reply_code = status.strip(), reply_code.strip()
        if not status and not reply_code:
            return True
        return status.startswith("5") or reply_code.startswith("5")
    return False
