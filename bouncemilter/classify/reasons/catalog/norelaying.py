"""norelaying: the server refused to relay for us (we are not its client)."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="norelaying",
    summary="the server refused to relay (misrouted mail or a misconfigured sender)",
    pseudo=("909",),
    phrases={
        "as a relay": "Sisimai NoRelaying list",
        "insecure mail relay": "Sisimai NoRelaying list",
        "is not permitted to relay through this server without authentication": "Sisimai list",
        "mail server requires authentication when attempting to send to a non-local e-mail address": "MailEnable",
        "not a gateway": "Sisimai NoRelaying list",
        "not allowed to relay through this machine": "Sisimai NoRelaying list",
        "not an open relay, so get lost": "Sisimai NoRelaying list",
        "not local host": "Sisimai NoRelaying list",
        "relay access denied": "Postfix ('Relay access denied')",
        "relay denied": "Sisimai NoRelaying list",
        "relaying mail to ": "Sisimai NoRelaying list",
        "relay not permitted": "Sisimai NoRelaying list",
        "relaying denied": "Sendmail ('Relaying denied')",
        "that domain isn't in my list of allowed rcpthost": "qmail-smtpd",
        "this system is not configured to relay": "Sisimai NoRelaying list",
        "unable to relay": "Exchange ('Unable to relay')",
        "we don't handle mail for": "Sisimai NoRelaying list",
        "relay not allowed": "generic wording",
        "no relaying": "generic wording",
        "relaying not allowed": "generic wording",
        "open relay not allowed": "Mimecast 451",
        "mail relay denied": "Gmail 550 5.7.0",
        "relay prohibited": "generic wording",
        "email address is not verified": "Amazon SES ('Message rejected: Email address is not verified')",
    },
)
