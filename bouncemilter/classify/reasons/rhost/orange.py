"""Orange / Wanadoo / La Poste (France Telecom: smtp-in.orange.fr, smtpz4.laposte.net).

Orange's published list of its codes ("OFR_416", "LPN007_104", "OUK_..."; messagerie.orange.fr
postmaster pages): the last three digits name the cause.
"""

import re

from ._base import Provider

PROVIDER = Provider(
    name="orange",
    hosts=("orange.fr", "wanadoo.fr", "laposte.net", "orange.com"),
    domains=("orange.fr", "wanadoo.fr", "laposte.net"),
    code_rx=re.compile(r"\b(?:lpn|lpnaaa|ofr|ouk)(?:_|\d{3}[-_])(\d{3})\b"),
    codes={
        "101": "blocked",  # the sending IP is blocked
        "102": "blocked",  # the sending IP is blocked for a while
        "103": "blocked",  # 'service refused, please try later'
        "104": "blocked",  # too many connections from a blocked IP
        "105": "undefined",
        "107": "undefined",
        "108": "undefined",
        "109": "undefined",
        "201": "undefined",
        "305": "securityerror",  # 'code d'authentification invalide'
        "401": "authfailure",  # SPF failure
        "402": "securityerror",  # 'authentification requise'
        "403": "rejected",  # the sender is refused
        "405": "rejected",
        "415": "rejected",  # 'emetteur invalide'
        "416": "userunknown",  # 'destinataire invalide'
        "417": "mailboxfull",  # 'boite du destinataire pleine'
        "418": "userunknown",
        "420": "suspend",  # 'boite du destinataire archivee'
        "421": "rejected",
        "423": "undefined",
        "424": "undefined",
        "426": "suspend",  # 'le compte du destinataire est bloque'
        "505": "systemerror",
        "506": "spamdetected",  # 'mail rejete'
        "510": "blocked",
        "513": "undefined",
        "514": "mesgtoobig",  # 'taille limite du message atteinte'
        "517": "policyviolation",
        "630": "policyviolation",
        "999": "blocked",
    },
)
