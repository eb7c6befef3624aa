"""toomanyconn: too many connections, sessions or recipients at once."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="toomanyconn",
    summary="too many connections, sessions or recipients at once",
    status=("5.5.3",),  # X.5.3 too many recipients
    pseudo=("945",),
    phrases={
        "all available ips are at maximum connection limit": "SendGrid",
        "connection rate limit exceeded": "Sisimai TooManyConn list",
        "exceeds per-domain connection limit for": "Sisimai TooManyConn list",
        "has exceeded the max emails per hour ": "Sisimai TooManyConn list",
        "throttling failure: daily message quota exceeded": "Amazon SES",
        "throttling failure: maximum sending rate exceeded": "Amazon SES",
        "too many connections": "Microsoft, Sendmail",
        "too many concurrent smtp connections": "Microsoft",
        "too many errors from your ip": "Free.fr",
        "too many recipients": "NTT docomo, Mimecast 452, Exchange 4.5.3",
        "too many smtp sessions for this host": "Sendmail (daemon.c)",
        "trop de connexions, ": "Orange (fr)",
        "we have already made numerous attempts to deliver this message": "Sisimai TooManyConn list",
        "connection frequency limited": "Tencent QQ",
        "ip frequency limited": "Tencent QQ",
        "domain frequency limited": "Tencent QQ",
        "sender frequency limited": "Tencent QQ",
        "too many sessions": "Cox ('too many sessions from')",
        "too many messages in this connection": "generic wording",
        "concurrent connections": "generic wording",
        "exceeded the maximum number of connections": "generic wording",
        "max message per connection reached": "Yahoo 421",
        "message threshold exceeded": "Cox",
    },
)
