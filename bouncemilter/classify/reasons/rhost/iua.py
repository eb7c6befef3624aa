"""I.UA (*.email.ua): its replies link to i.ua/err/N, a documented error number."""

import re

from ._base import Provider

PROVIDER = Provider(
    name="iua",
    hosts=("email.ua",),
    domains=("i.ua", "email.ua"),
    code_rx=re.compile(r"\.i\.ua/err/(\d{1,2})\b"),
    codes={
        "1": "norelaying",  # SMTP as a mail gate is forbidden
        "2": "userunknown",  # user not found
        "3": "suspend",  # mailbox unused for more than 3 months
        "4": "mailboxfull",  # mailbox is full
        "5": "toomanyconn",  # sending limit exceeded
        "6": "norelaying",  # use your provider's SMTP
        "7": "blocked",  # wrong HELO/EHLO parameter
        "8": "rejected",  # could not check the sender address
        "9": "blocked",  # the sender's IP is blacklisted
        "10": "filtered",  # not in the recipient's address list
    },
)
