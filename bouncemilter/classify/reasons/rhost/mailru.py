"""Mail.ru (mxs.mail.ru for mail.ru, inbox.ru, list.ru, bk.ru).

Mail.ru's postmaster help (help.mail.ru/mail/postmaster) and its MX's replies ("Message was not
accepted -- invalid mailbox", "spam message rejected").
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="mailru",
    hosts=("mail.ru",),
    domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "my.com"),
    rules=(
        _R("userunknown", "invalid mailbox"),
        _R("userunknown", "user not found"),
        _R("mailboxfull", "mailbox is full"),
        _R("mailboxfull", "over quota"),
        _R("suspend", "account is disabled"),
        _R("suspend", "user account is blocked"),
        _R("spamdetected", "spam message rejected"),
        _R("blocked", "we do not accept mail from dynamic ips"),
        _R("requireptr", "hosts with dynamic ip or generic dns ptr-records"),
        _R("toomanyconn", "too many connections"),
    ),
)
