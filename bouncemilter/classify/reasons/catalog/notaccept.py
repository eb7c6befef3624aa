"""notaccept: the receiving domain accepts no mail at all (null MX, no mail host)."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="notaccept",
    summary="the domain accepts no mail at all: null MX, no mail host (hard with a 5xx or no code)",
    # X.3.2 system not accepting network messages, X.1.10 recipient address has null MX (RFC 7505),
    # X.7.27 sender address has null MX
    status=("4.3.2", "5.1.10", "5.3.2", "5.7.27"),
    pseudo=("932",),
    phrases={
        "does not accept mail (nullmx)": "Postfix (RFC 7505 null MX)",
        "host/domain does not accept mail": "Apple iCloud",
        "host does not accept mail": "Sendmail",
        "no mx record found for domain=": "Yahoo (Oath)",
        "no route for current request": "Sisimai NotAccept list",
        "smtp protocol returned a permanent error": "Sisimai NotAccept list",
        "no mx found": "OpenSMTPD ('No MX found for domain')",
        "no mx record": "generic wording",
        "doesn't receive email": "generic wording",
        "does not receive email": "generic wording",
        "indicated no smtp service": "Exim ('an MX or SRV record indicated no SMTP service')",
        "null mx": "Gmail, Google Workspace ('Null MX')",
        "nullmx": "Postfix",
        "does not accept mail": "generic wording",
        "couldn't find a mail exchanger": "qmail-remote",
        "could not find a mail exchanger": "generic wording",
        "not accepting network messages": "RFC 3463 X.3.2 text",
        "no smtp service": "Exim",
        "destination seem to reject all mails": "OpenSMTPD",
        "no host found for existing smtp connection": "Exim",
        "name server: .: host not found": "Sendmail (the domain's MX is '.', a null MX)",
    },
)
