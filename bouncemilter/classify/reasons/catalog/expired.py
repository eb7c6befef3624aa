"""expired: delivery was retried until the queue lifetime ran out."""

from ._base import ReasonTable

TABLE = ReasonTable(
    name="expired",
    summary="delivery was retried until the sender's queue lifetime ran out",
    status=("4.4.1", "4.4.7"),  # X.4.1 no answer from host, X.4.7 delivery time expired
    pseudo=("947",),
    phrases={
        "connection timed out": "Postfix, Exim",
        "could not find a gateway for": "Sisimai Expired list",
        "delivery attempts will continue to be": "Exchange ('Delivery attempts will continue to be made')",
        "delivery time expired": "RFC 3463 X.4.7 text",
        "failed to deliver to domain ": "Sisimai Expired list",
        "giving up on": "qmail-send ('Giving up on x')",
        "have been failing for a long time": "Exim ('all hosts have been failing for a long time')",
        "has been delayed": "Gmail delay notice",
        "it has not been collected after": "Sisimai Expired list",
        "message expired": "Exchange Online 4.4.7 / 5.4.300",
        "message timed out": "Sisimai Expired list",
        "retry time not reached for any host after a long failure period": "Exim",
        "server did not respond": "Sisimai Expired list",
        "has been in the queue too long": "qmail-send ('this message has been in the queue too long')",
        "unable to deliver message after multiple retries": "Sisimai Expired list",
        "was not reachable within the allowed queue period": "Sisimai Expired list",
        "your message could not be delivered for more than": "Sendmail ('could not be delivered for more than 5 days')",
        "retry timeout exceeded": "Exim",
        "envelope expired": "OpenSMTPD",
        "delivery failed {d} attempts": "Ipswitch IMail",
        "unable to deliver this message after": "generic wording",
        "did not accept our requests to connect": "Gmail",
        "host not reachable": "Zoho",
        "queue expired": "Exchange Online 4.4.7 ('QUEUE.Expired; message expired')",
        "will be retried for": "Zoho delay notice",
        "unable to deliver in {d} minutes": "generic wording",
        "delivery timeout": "GoDaddy",
        "still undelivered after": "generic wording",
        "timed out": "generic timeout wording",
        "delivery retry timeout exceeded": "GMX",
        "could not contact dns servers": "Gmail 'DNS Error: Could not contact DNS servers'",
        "message delayed": "Exchange Online 4.4.7",
    },
)
