"""Yandex (mx.yandex.ru, mx.yandex.net for yandex.ru/com, ya.ru).

Yandex's help for senders (yandex.com/support/mail/web/spam/... "SMTP response codes") and the
replies its MX writes ("No such user!", "Message rejected under suspicion of SPAM").
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="yandex",
    hosts=("yandex.ru", "yandex.net", "yandex.com"),
    domains=("yandex.ru", "yandex.com", "ya.ru", "yandex.ua", "yandex.by", "yandex.kz", "narod.ru"),
    rules=(
        _R("userunknown", "no such user"),
        _R("mailboxfull", "mailbox size limit exceeded"),
        _R("mailboxfull", "mailbox is full"),
        _R("spamdetected", "message rejected under suspicion of spam"),
        _R("authfailure", "dmarc"),
        _R("rejected", "sender address rejected: not owned by auth user"),
        _R("filtered", "policy rejection on the target address"),
        _R("systemerror", "the service is currently unavailable"),
        _R("toomanyconn", "too many connections"),
    ),
)
