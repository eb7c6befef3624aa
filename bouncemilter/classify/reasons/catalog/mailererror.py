"""mailererror: a local delivery program (procmail, maildrop, a pipe) failed."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="mailererror",
    summary="a local delivery program (procmail, maildrop, a pipe) failed",
    pseudo=("939",),
    phrases={
        "procmail:": "procmail",
        "bin/procmail": "procmail path in a pipe command",
        "bin/maildrop": "maildrop path in a pipe command",
        "command failed: ": "Postfix pipe(8) / local(8)",
        "command died with status": "Postfix local(8)",
        "command output:": "Postfix local(8)",
        "mailer error": "Sendmail",
        "pipe to |/": "Exim pipe transport",
        "x-unix; {d}": "Sendmail/Postfix X-Unix diagnostic in text",
        "operating system error": "Sendmail ('451 4.0.0 Operating system error')",
        "exit {d}": "Sendmail prog mailer ('... exit 75')",
    },
)
