"""Mimecast (*.mimecast.com): a filtering gateway in front of many organisations' mailboxes.

Mimecast's published "SMTP error codes" knowledge-base list (community.mimecast.com, "Mimecast
SMTP Error Codes"): reply code plus wording.
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="mimecast",
    hosts=("mimecast.com", "mimecast.co.za", "mimecast-offshore.com"),
    rules=(
        _R("blocked", "sender address blocked", reply="421"),
        _R("blocked", "recipient temporarily unavailable", reply="451"),
        _R("blocked", "ip temporarily blacklisted", reply="451"),
        _R("blocked", "internal resources are temporarily unavailable", reply="451"),
        _R("badreputation", "local ct ip reputation", reply="550"),
        _R("authfailure", "spf sender invalid", reply="550"),
        _R("authfailure", "dkim sender invalid", reply="550"),
        _R("authfailure", "dmarc sender invalid", reply="550"),
        _R("mesgtoobig", "maximum email size exceeded", reply="554"),
        _R("networkerror", "mail loop detected", reply="554"),
        _R("norelaying", "open relay not allowed", reply="451"),
        _R("notaccept", "account inbounds disabled", reply="451"),
        _R("onhold", "account outbounds disabled", reply="451"),
        _R("onhold", "hostname is not authorized", reply="451"),
        _R("onhold", "journal message past expiration", reply="550"),
        _R("policyviolation", "anti-spoofing policy", reply="550"),
        _R("policyviolation", "content examination policy", reply="550"),
        _R("policyviolation", "host network not allowed", reply="554"),
        _R("rejected", "envelope blocked", reply="550"),
        _R("rejected", "blocked senders", reply="550"),
        _R("rejected", "envelope rejected - block policy for envelope from address", reply="550"),
        _R("securityerror", "incorrect authentication data", reply="535"),
        _R("securityerror", "submitter failed to disabled", reply="550"),
        _R("securityerror", "this route requires", reply="553"),
        _R("securityerror", "configuration is invalid for this certificate", reply="554"),
        _R("systemerror", "unable to process connection at this time", reply="451"),
        _R("systemerror", "message ended early", reply="451"),
        _R("systemerror", "unable to process command", reply="451"),
        _R("systemerror", "unable to process an email at this time", reply="451"),
        _R("toomanyconn", "account service is temporarily unavailable", reply="451"),
        _R("toomanyconn", "too many recipients", reply="452"),
        _R("toomanyconn", "exceeding outbound thread limit", reply="550"),
        _R("userunknown", "invalid address", reply="501"),
        _R("userunknown", "user unknown", reply="503"),
        _R("userunknown", "invalid recipient", reply="550"),
        _R("virusdetected", "email rejected due to security policies", reply="554"),
    ),
)
