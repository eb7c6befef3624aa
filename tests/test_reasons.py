"""Reason mapping: hand-written diagnostics in the wording real MTAs use."""

from __future__ import annotations

import pytest

from bouncemilter.classify.reasons import HARD_REASONS, REASONS, decide, find_reason, is_hard

# (status, reply code, diagnostic, action, remote MTA) -> expected reason
CASES: list[tuple[str, str, str, str, str, str]] = [
    ("5.1.1", "550", "550 5.1.1 <nobody@example.com>... User unknown", "failed", "", "userunknown"),
    ("5.1.2", "550", "550 5.1.2 Host unknown (Name server: example.test: host not found)", "failed", "", "hostunknown"),
    ("5.2.2", "552", "552 5.2.2 Mailbox full", "failed", "", "mailboxfull"),
    ("5.0.0", "550", "550 Unknown user bob@example.com (in reply to end of DATA command)", "failed", "", "filtered"),
    ("5.1.8", "553", "553 5.1.8 Domain of sender address bounce@example.org does not exist", "failed", "", "rejected"),
    ("5.7.1", "554", "554 5.7.1 Client host blocked using zen.spamhaus.org", "failed", "", "blocked"),
    ("5.7.1", "550", "550 5.7.1 Message rejected as spam by content filter", "failed", "", "spamdetected"),
    ("5.7.0", "550", "550 5.7.0 Local Policy Violation", "failed", "", "policyviolation"),
    ("4.4.7", "", "Message expired: unable to deliver in 840 minutes", "failed", "", "expired"),
    ("5.0.0", "550", "550 Mailbox is frozen.", "failed", "", "suspend"),
    ("5.7.1", "554", "554 5.7.1 <a@example.net>: Relay access denied", "failed", "", "norelaying"),
    ("5.3.5", "550", "550 5.3.5 Internal System Error", "failed", "", "systemerror"),
    (
        "4.4.2",
        "",
        "lost connection with mx.example.com[192.0.2.1] while receiving the initial server greeting",
        "delayed",
        "",
        "networkerror",
    ),
    ("4.0.0", "421", "421 Too many connections from your host", "failed", "", "toomanyconn"),
    ("5.3.4", "552", "552 5.3.4 Message too big for system", "failed", "", "mesgtoobig"),
    ("5.2.3", "552", "552 5.2.3 Message length exceeds administrative limit", "failed", "", "exceedlimit"),
    ("5.7.1", "550", "550 5.7.1 authentication required", "failed", "", "securityerror"),
    ("5.7.1", "554", "554 5.7.1 Virus detected in attachment", "failed", "", "virusdetected"),
    (
        "5.7.26",
        "550",
        "550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy",
        "failed",
        "",
        "authfailure",
    ),
    ("4.7.0", "421", "421 4.7.0 IP/domain reputation problems", "failed", "", "badreputation"),
    (
        "5.7.25",
        "550",
        "550 5.7.25 The IP address sending this message does not have a PTR record setup",
        "failed",
        "",
        "requireptr",
    ),
    (
        "5.7.1",
        "550",
        "550 5.7.1 This message is not RFC 5322 compliant. There are multiple Subject headers.",
        "failed",
        "",
        "notcompliantrfc",
    ),
    ("5.5.0", "503", "503 Improper sequence of commands", "failed", "", "syntaxerror"),
    ("5.1.6", "550", "550 5.1.6 recipient no longer on server", "failed", "", "hasmoved"),
    ("5.1.10", "", "Null MX: example.test does not accept mail (nullMX)", "failed", "", "notaccept"),
    ("4.3.1", "452", "452 4.3.1 Mail system full", "delayed", "", "systemfull"),
    (
        "4.2.1",
        "450",
        "450 4.2.1 The user is receiving mail at a rate that prevents additional messages from being delivered",
        "delayed",
        "",
        "speeding",
    ),
    ("5.6.0", "552", "552 5.6.0 Headers too large", "failed", "", "contenterror"),
    ("5.0.0", "", "procmail: Couldn't create /var/spool/mail/bob", "failed", "", "mailererror"),
    ("4.0.0", "450", "450 4.0.0 Temporary failure", "failed", "", "onhold"),
    ("", "", "", "failed", "", "undefined"),
    ("2.0.0", "250", "250 2.0.0 Ok: queued", "delivered", "", "delivered"),
]


@pytest.mark.parametrize(("status", "code", "diag", "action", "rhost", "expected"), CASES)
def test_reason(status: str, code: str, diag: str, action: str, rhost: str, expected: str) -> None:
    assert find_reason(status, code, diag, action, rhost) == expected


def test_every_bounce_reason_is_covered() -> None:
    covered = {c[-1] for c in CASES}
    # vacation and feedback come from the auto-reply and ARF paths, not from this mapping.
    assert set(REASONS) - covered == {"vacation", "feedback"}


@pytest.mark.parametrize(
    ("status", "code", "diag", "stage", "expected"),
    [
        ("5.0.0", "550", "550 Requested action not taken: mailbox full", "", "mailboxfull"),
        ("5.1.1", "550", "550 5.1.1 <a@example.com>: mailbox is full", "RCPT", "mailboxfull"),
        ("4.0.0", "450", "450 <a@example.com>: User unknown", "RCPT", "userunknown"),
        (
            "4.4.1",
            "450",
            "450 4.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient table",
            "RCPT",
            "userunknown",
        ),
        ("5.7.1", "550", "550 5.7.1 <a@example.com>: Recipient address rejected: Access denied", "RCPT", "userunknown"),
        ("5.1.1", "550", "550 5.1.1 Client host rejected: blocked using bl.spamcop.net", "RCPT", "blocked"),
        ("5.7.1", "550", "550 5.7.1 Relaying denied", "RCPT", "norelaying"),
        # "User unknown" under a mailbox-status code: the mailbox at RCPT, a filter after DATA or with no stage
        ("5.2.1", "550", "550 5.2.1 <a@example.com>... User Unknown", "RCPT", "userunknown"),
        ("5.2.1", "550", "550 5.2.1 <a@example.com>... User Unknown", "", "filtered"),
        ("5.2.1", "550", "550 5.2.1 <a@example.com>... User Unknown", "DATA", "filtered"),
        # no code and no SMTP stage: Sisimai's reading is a filter's refusal
        ("5.0.0", "550", "550 user unknown", "", "filtered"),
        ("5.1.8", "501", "501 5.1.8 Sender address rejected", "MAIL", "rejected"),
        (
            "4.0.0",
            "",
            "DNS Error: DNS type 'mx' lookup of example.test responded with code NXDOMAIN Domain name not "
            "found: example.test",
            "",
            "networkerror",
        ),
    ],
)
def test_text_beats_code(status: str, code: str, diag: str, stage: str, expected: str) -> None:
    assert decide(status, code, diag, smtp_command=stage).reason == expected


def test_text_is_case_and_space_insensitive() -> None:
    assert decide("5.5.0", "550", "550   USER\tUNKNOWN", smtp_command="RCPT").reason == "userunknown"


def test_specific_code_without_text() -> None:
    assert find_reason("5.1.1", "550", "") == "userunknown"
    assert find_reason("5.2.2", "", "") == "mailboxfull"
    assert find_reason("5.7.0", "", "") == "securityerror"
    assert find_reason("5.0.922", "", "") == "mailboxfull"


def test_delivered_and_delayed() -> None:
    assert find_reason("2.1.5", "250", "250 2.1.5 OK") == "delivered"
    assert find_reason("", "", "", action="relayed") == "delivered"
    assert find_reason("4.0.0", "", "", action="delayed") == "expired"
    # a delay with a better reason keeps that reason
    assert find_reason("4.2.2", "452", "452 4.2.2 Mailbox full", action="delayed") == "mailboxfull"


def test_provider_rules() -> None:
    orange = "550 5.5.0 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]"
    assert find_reason("5.5.0", "550", orange, "failed", "smtp-in.orange.fr") == "userunknown"
    laposte = "554 5.7.1 <x.example>: Client host rejected: #216 lpn LPN000_630"
    assert find_reason("5.7.1", "554", laposte, "failed", "smtpz4.laposte.net") == "policyviolation"
    godaddy = "550 5.1.1 <a@example.com> - 192.0.2.1 has sent to too many recipients this hour. IB607"
    assert find_reason("5.1.1", "550", godaddy, "failed", "smtp.secureserver.net") == "speeding"
    ms = "550 5.7.509 Access denied, sending domain [EXAMPLE.ORG] does not pass DMARC verification"
    assert find_reason("5.7.509", "550", ms, "failed", "mx.eur.prod.outlook.com") == "authfailure"
    # the same words from an unrelated host fall back to the general phrases
    assert find_reason("5.5.0", "550", "550 5.5.0 OFR_416", "failed", "mx.example.net") != "userunknown"


def test_hard_only_for_gone_addresses() -> None:
    for reason in ("userunknown", "hostunknown", "hasmoved"):
        assert is_hard(reason, "5.1.1", "550")
        assert is_hard(reason, "4.1.1", "450")
    assert frozenset({"userunknown", "hostunknown", "hasmoved"}) == HARD_REASONS


def test_notaccept_hard_only_when_permanent() -> None:
    assert is_hard("notaccept", "5.1.10", "")
    assert is_hard("notaccept", "", "556")
    assert not is_hard("notaccept", "4.3.2", "421")


@pytest.mark.parametrize(
    "reason",
    [
        "policyviolation",
        "spamdetected",
        "blocked",
        "authfailure",
        "badreputation",
        "mailboxfull",
        "filtered",
        "rejected",
        "expired",
        "requireptr",
        "securityerror",
    ],
)
def test_refusals_never_hard(reason: str) -> None:
    assert not is_hard(reason, "5.7.1", "550")


def test_dmarc_rejection_is_not_hard_end_to_end() -> None:
    reason = find_reason("5.7.1", "550", "550 5.7.1 Email rejected per DMARC policy for example.org")
    assert reason == "authfailure"
    assert not is_hard(reason, "5.7.1", "550")


def test_hostile_input_is_decided() -> None:
    # Words that look like tokens, runs of anchor words and a long tail: still one of the reasons.
    diag = ("user " * 2000) + ("a" * 100_000) + " {w} " + ("unknown " * 5000)
    assert find_reason("5.0.0", "550", diag) in REASONS


def test_notaccept_without_any_code_is_hard_but_4xx_is_not() -> None:
    from bouncemilter.classify.reasons import is_hard

    assert is_hard("notaccept", "", "") is True
    assert is_hard("notaccept", "4.1.10", "") is False
    assert is_hard("notaccept", "", "421") is False
    assert is_hard("notaccept", "5.1.10", "") is True


# Dead addresses are hard whatever else the words say; refusals of us never are.
@pytest.mark.parametrize(
    ("status", "code", "diag", "stage", "reason"),
    [
        # a 5.1.1 with no contrary words stands, even next to the word "rejected"
        ("5.1.1", "550", "550 5.1.1 <a@example.org>: Address rejected", "RCPT", "userunknown"),
        ("5.1.1", "550", "550 5.1.1 rejected", "", "userunknown"),
        ("5.1.2", "550", "550 5.1.2 Host not found", "", "hostunknown"),
        ("5.1.6", "550", "550 5.1.6 Mailbox has moved", "", "hasmoved"),
        ("5.0.0", "550", "550 No such domain at this location", "", "hostunknown"),
        # the reply echoes the command it answers: the RCPT stage, so a missing mailbox
        ("", "550", "550 RCPT <a@example.org> does not exist", "", "userunknown"),
        ("5.0.0", "550", "550 user not found", "RCPT", "userunknown"),
    ],
)
def test_dead_addresses_are_hard(status: str, code: str, diag: str, stage: str, reason: str) -> None:
    from bouncemilter.classify.stage import split

    diag, tagged = split(diag)
    decision = decide(status, code, diag, smtp_command=stage or tagged)
    assert decision.reason == reason
    assert is_hard(decision.reason, status, code, diag)


@pytest.mark.parametrize(
    ("status", "code", "diag"),
    [
        ("5.7.1", "550", "550 5.7.1 Unauthenticated email is not accepted due to the domain's DMARC policy"),
        ("5.7.1", "554", "554 5.7.1 Client host rejected: blocked using zen.spamhaus.org"),
        ("4.7.0", "421", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume"),
        ("4.2.1", "450", "450 4.2.1 The user you are trying to contact is receiving mail too quickly"),
        ("5.2.2", "552", "552 5.2.2 Mailbox full"),
        ("5.2.1", "550", "550 5.2.1 This mailbox is disabled"),
        ("5.7.1", "550", "550 5.7.1 Message rejected as spam by Content Filtering"),
    ],
)
def test_refusals_of_us_and_full_or_suspended_mailboxes_are_soft(status: str, code: str, diag: str) -> None:
    decision = decide(status, code, diag)
    assert decision.reason not in HARD_REASONS | {"notaccept"}
    assert not is_hard(decision.reason, status, code, diag)


def test_notaccept_without_a_code_but_with_temporary_wording_is_soft() -> None:
    assert not is_hard("notaccept", "", "", "Domain temporarily does not accept mail")
    assert not is_hard("notaccept", "", "", "4.3.2 Persistent transient failure: system not accepting messages")
    assert is_hard("notaccept", "", "", "Null MX: the domain does not accept mail")


@pytest.mark.parametrize(
    ("dtype", "diag", "expected"),
    [
        # older Postfix typed a remote server's reply X-Postfix: the remote server decides
        ("X-Postfix", "550 unknown user <bob@example.org>", "userunknown"),
        ("X-Postfix", "552 5.2.2 mailbox full", "mailboxfull"),
        # its own failures keep the type's meaning
        ("X-Postfix", "Command died with status 17: /usr/sbin/amavis", "mailererror"),
        ("X-Unix", "maildrop: unable to open mailbox", "mailererror"),
    ],
)
def test_x_postfix_type_with_a_remote_reply_is_the_reply(dtype: str, diag: str, expected: str) -> None:
    from bouncemilter.classify.reasons import decide

    assert (
        decide("5.0.0", diag[:3] if diag[:1].isdigit() else "", diag, smtp_command="RCPT", diagnostic_type=dtype).reason
        == expected
    )
