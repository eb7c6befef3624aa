"""hostunknown: the recipient's domain does not exist."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="hostunknown",
    summary="the recipient's domain does not exist or has no mail host (hard)",
    hard=True,
    # X.1.2 bad destination system address, X.4.4 unable to route (RFC 3463)
    status=("5.1.2", "5.4.4"),
    pseudo=("912",),
    phrases={
        "domain does not exist": "OpenSMTPD 'Domain does not exist', Yahoo",
        "domain is not reachable": "Outlook.com ('the domain is not reachable')",
        "domain must exist": "Postfix reject_unknown_recipient_domain",
        "host or domain name not found": "Postfix ('Host or domain name not found. Name service error')",
        "host unknown": "Sendmail ('550 Host unknown')",
        "host unreachable": "Sisimai HostUnknown list",
        "mail domain mentioned in email address is unknown": "Sisimai HostUnknown list",
        "name or service not known": "glibc resolver error echoed by MTAs",
        "no such domain": "Courier ('No such domain.'), many MTAs",
        "no such domain at this location": "EarthLink / hosted MX for an unknown domain",
        "unknown domain": "Postfix, Exim",
        "recipient domain must exist": "Postfix reject_unknown_recipient_domain",
        "recipient address rejected: unknown domain name": "Postfix",
        "the account or domain may not exist": "Sisimai HostUnknown list (Gmail prose)",
        "unknown host": "Sisimai HostUnknown list",
        "unroutable address": "Exim ('Unrouteable address' variant)",
        "unrouteable address": "Exim router",
        "553 {w} does not exist": "Sisimai HostUnknown list",
        "couldn't find any host named": "qmail-remote ('Sorry, I couldn't find any host named')",
        "couldn't find any host by that name": "qmail-remote",
        "illegal host/domain name": "Oracle/Sun Messaging Server",
        "we weren't able to find the recipient domain": "Gmail 553 5.1.2",
        "no such host": "Sisimai HostUnknown list",
        "bad destination system address": "RFC 3463 X.1.2 text",
        "all host address lookups failed permanently": "Exim",
        "all relevant mx records point to non-existent hosts": "Exim",
        "smtpsend.dns.nonexistentdomain": "MS Exchange NDR code",
        # de
        "domain existiert nicht": "German-language servers (de)",
        "unbekannte domain": "German-language servers (de)",
        # fr
        "domaine inconnu": "French-language servers (fr)",
        "domaine inexistant": "French-language servers (fr)",
        # es
        "dominio desconocido": "Spanish-language servers (es)",
        "el dominio no existe": "Spanish-language servers (es)",
        # it
        "dominio inesistente": "Italian-language servers (it)",
        # pt
        "domínio inexistente": "Portuguese-language servers (pt)",
        "domínio desconhecido": "Portuguese-language servers (pt)",
        # nl
        "domein bestaat niet": "Dutch-language servers (nl)",
        "onbekend domein": "Dutch-language servers (nl)",
        # pl
        "domena nie istnieje": "Polish-language servers (pl)",
        "nieznana domena": "Polish-language servers (pl)",
        # ru
        "домен не существует": "Russian-language servers (ru)",
        "неизвестный домен": "Russian-language servers (ru)",
        # ja
        "ドメインが存在しません": "Japanese-language servers (ja)",
        # zh
        "域名不存在": "Chinese-language servers (zh)",
    },
)
