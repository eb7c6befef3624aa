"""requireptr: our sending IP has no (or a mismatched) reverse DNS name."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="requireptr",
    summary="our sending IP has no valid reverse DNS (PTR) name",
    status=("4.7.25", "5.7.25"),  # X.7.25 reverse DNS validation failed (RFC 8601)
    pseudo=("973",),
    phrases={
        "access denied. ip name lookup failed": "Sisimai list",
        "all mail servers must have a ptr record": "Sisimai list",
        "bad dns ptr resource record": "Sisimai list",
        "cannot find your hostname": "Postfix reject_unknown_client_hostname",
        "cannot resolve your address": "Sisimai list",
        "domain {w} mismatches client ip": "Sisimai list",
        "dns lookup failure: {w} try again later": "Sisimai list",
        "fix reverse dns for": "Sisimai list",
        "ips with missing ptr records": "Sisimai list",
        "no ptr record found": "Sisimai list",
        "please get a custom reverse dns name": "Sisimai list",
        "ptr record setup": "Gmail 550 5.7.25",
        "reverse dns failed": "Sisimai list",
        "reverse dns required": "Sisimai list",
        "reverse dns lookup for host {w} failed permanently": "Sisimai list",
        "sender ip reverse lookup rejected": "Sisimai list",
        "forbidden by invalid rdns record of your mail server": "Sisimai list",
        "service permits {d} unverifyable sending ips": "Sisimai list",
        "with no reverse dns": "Sisimai list",
        "the corresponding forward dns entry does not point to the sending ip": "Gmail 550 5.7.25",
        "this system will not accept messages from servers/devices with no reverse dns": "Sisimai list",
        "unresolvable relay host name": "Sisimai list",
        "we do not accept mail from hosts with dynamic ip or generic dns ptr-records": "Mail.ru",
        "must have a reverse dns record": "Exchange Online 5.7.25",
        "ip name lookup failed": "Sisimai list",
        "mismatches client ip": "Sisimai list",
        "rejected - no rdns": "Cox",
        "reverse dns for this ip failed": "GoDaddy IB108",
    },
)
