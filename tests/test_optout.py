"""Unsubscribe requests by mail (issue #11): hand-written requests of Gmail, Apple Mail, Outlook and Yahoo Mail,
and plain ones, in English, German, French and Spanish (tests/fixtures/optout/), through classify(), the opt-out
rule for unsubscribe addresses, `classify --unsubscribe-address` and the store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import ingest
from bouncemilter.classify import classify, optout
from bouncemilter.cli import main
from bouncemilter.config import ConfigError, load_settings
from bouncemilter.unsubscribe import AddressMatcher, build_matcher, subscriber
from bouncemilter.verp import parse_bounce_address

FIXTURES = Path(__file__).parent / "fixtures" / "optout"
UNSUB_VERP = "unsubscribe+*@lists.example.com"
UNSUB_PLAIN = "unsubscribe@lists.example.com"
BOUNCES = "bounces+*@lists.example.com"

# fixture -> (the subscriber recorded, the client the evidence names, where the request's words are)
REQUESTS = {
    "gmail-en.eml": ("alice@example.org", "Gmail", "Subject: unsubscribe"),
    "gmail-de.eml": ("bernd@example.de", "Gmail", "Subject: Abbestellen"),
    "gmail-fr.eml": ("chloe@example.fr", "Gmail", "Subject: Se désabonner"),
    "gmail-es.eml": ("diego@example.es", "Gmail", "Subject: Cancelar suscripción"),
    "apple-en.eml": ("erin@example.org", "", "Subject: unsubscribe"),
    "apple-de.eml": ("franz@example.at", "", "Subject: Abmelden"),
    "apple-fr.eml": ("gaelle@example.fr", "", "Subject: Désabonnement"),
    "apple-es.eml": ("hugo@example.mx", "", "Subject: Darse de baja"),
    "outlook-en.eml": ("ivan@example.org", "Outlook", "Subject: Unsubscribe"),
    "outlook-de.eml": ("jana@example.de", "Outlook", "Subject: Abmelden"),
    "outlook-fr.eml": ("karim@example.be", "Outlook", "Subject: Désabonnement"),
    "outlook-es.eml": ("lucia@example.ar", "Outlook", "Subject: Darse de baja"),
    "yahoo-en.eml": ("mia@example.org", "Yahoo Mail", "Subject: Unsubscribe"),
    "yahoo-de.eml": ("nils@example.ch", "Yahoo Mail", "Subject: Abbestellen"),
    "yahoo-fr.eml": ("odile@example.ca", "Yahoo Mail", "Subject: Désinscription"),
    "yahoo-es.eml": ("pablo@example.cl", "Yahoo Mail", "body: 'darme de baja'"),
    # plain requests to the plain address: the sender is the subscriber
    "plain-subject-en.eml": ("quinn@example.net", "", "Subject: UNSUBSCRIBE"),
    "plain-body-de.eml": ("rita@example.de", "", "body: 'abmelden'"),
    "plain-body-fr.eml": ("serge@example.fr", "", "body: 'désinscrire'"),
    "plain-subject-es.eml": ("teresa@example.es", "", "Subject: Darme de baja"),
    # nothing says what it wants: sent to the address is enough
    "no-words.eml": ("uma@example.org", "", ""),
}


def settings(*unsubscribe: str, bounce: tuple[str, ...] = (BOUNCES,)):
    return load_settings(
        None,
        {"bounce_addresses": list(bounce), "unsubscribe_addresses": list(unsubscribe or (UNSUB_VERP, UNSUB_PLAIN))},
    )


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def as_delivered(name: str):
    """(classification, envelope) as the milter and `import` see the message: classify + the envelope's rule."""
    s = settings()
    data = raw(name)
    env = ingest.mailbox_envelope(data, build_matcher(s))
    return ingest.prepare(data, env, s).classification, env


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_every_request_to_an_unsubscribe_address_is_an_opt_out_of_its_subscriber(name: str) -> None:
    who, client, words = REQUESTS[name]
    result, env = as_delivered(name)
    assert env.unsubscribe, env
    assert result.kind == "opt_out", result
    assert [r.recipient for r in result.recipients] == [who]
    assert result.recipients[0].reason == "opt-out"
    if client:
        assert f"{client} request" in result.evidence
    if words:
        assert words in result.evidence, result.evidence
    else:
        assert result.evidence == "sent to an unsubscribe address"


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_alone_only_apple_mail_says_it_is_a_request(name: str) -> None:
    # Gmail, Outlook and Yahoo send a plain message: without the unsubscribe address it is ordinary mail
    result = classify(raw(name))
    if name.startswith("apple-"):
        assert (result.kind, result.detector) == ("opt_out", "apple-unsubscribe")
        assert [r.recipient for r in result.recipients] == [REQUESTS[name][0]]
        assert result.evidence.startswith("X-Apple-Unsubscribe: true")
    else:
        assert result.kind == "not_bounce", result


@pytest.mark.parametrize("name", ["vacation-en.eml", "vacation-de.eml"])
def test_a_vacation_reply_to_the_unsubscribe_address_stays_an_auto_reply(name: str) -> None:
    result, env = as_delivered(name)
    assert env.unsubscribe
    assert result.kind == "auto_reply", result


def test_a_bounce_to_the_unsubscribe_address_stays_a_bounce() -> None:
    result, _ = as_delivered("bounce-to-unsubscribe.eml")
    assert result.kind == "bounce" and result.recipients[0].recipient == "zoe@example.org"
    assert result.recipients[0].hard


def test_a_newsletter_saying_unsubscribe_sent_to_a_bounce_address_stays_not_bounce() -> None:
    # its List-Unsubscribe names the unsubscribe address and its footer says "unsubscribe" in four languages, but
    # it was delivered to the return path
    result, env = as_delivered("newsletter-to-bounce-address.eml")
    assert env.bounce_addresses == ["bounces+xavier=example.org@lists.example.com"] and not env.unsubscribe
    assert result.kind == "not_bounce", result
    assert classify(raw("newsletter-to-bounce-address.eml")).kind == "not_bounce"


def test_an_arf_opt_out_is_an_opt_out_not_a_complaint() -> None:
    result = classify(raw("arf-opt-out.eml"))
    assert (result.kind, result.detector) == ("opt_out", "arf-opt-out")
    assert [r.recipient for r in result.recipients] == ["yolanda@example.net"]  # Removal-Recipient
    assert result.feedback is not None and result.feedback.feedback_type == "opt-out"
    abuse = classify(raw("arf-opt-out.eml").replace(b"Feedback-Type: opt-out", b"Feedback-Type: abuse"))
    assert abuse.kind == "complaint" and abuse.recipients[0].reason == "feedback"


def test_the_encoded_subscriber_wins_over_the_sender() -> None:
    # a request sent from another mailbox (a forward, an alias) is still about the address the token names
    data = raw("gmail-en.eml").replace(b"alice@example.org>", b"alice.private@gmail.example>")
    s = settings()
    env = ingest.mailbox_envelope(data, build_matcher(s))
    assert env.verp_recipients == ["alice@example.org"]
    assert ingest.prepare(data, env, s).classification.recipients[0].recipient == "alice@example.org"


def test_without_from_the_envelope_sender_is_the_subscriber() -> None:
    data = raw("plain-subject-en.eml").replace(b"From: Quinn Reader <quinn@example.net>\n", b"")
    result = optout.for_unsubscribe_address(classify(data), data, "", "quinn@example.net")
    assert result.kind == "opt_out" and result.recipients[0].recipient == "quinn@example.net"


def test_a_failed_classification_is_left_as_it_is() -> None:
    def broken(_raw: bytes):
        raise RuntimeError("boom")

    s = settings()
    data = raw("gmail-en.eml")
    out = ingest.prepare(data, ingest.mailbox_envelope(data, build_matcher(s)), s, classifier=broken)
    assert out.classification.kind == "not_bounce" and "boom" in out.classification.error


# ------------------------------------------------------------------------------------------- addresses and config


def test_matcher_tells_unsubscribe_addresses_from_return_paths() -> None:
    m = build_matcher(settings())
    hit = m.match("<unsubscribe+alice=example.org@lists.example.com>")
    assert hit is not None and hit.unsubscribe and hit.verp_recipient == "alice@example.org"
    plain = m.match("unsubscribe@lists.example.com")
    assert plain is not None and plain.unsubscribe and plain.verp_recipient == ""
    bounce = m.match("bounces+alice=example.org@lists.example.com")
    assert bounce is not None and not bounce.unsubscribe
    assert m.match("someone@lists.example.com") is None
    assert subscriber([hit, bounce]) == "alice@example.org"  # only unsubscribe addresses name the subscriber


def test_the_more_specific_pattern_wins() -> None:
    def p(*specs: str):
        return [parse_bounce_address(x) for x in specs]

    # a return-path domain with an unsubscribe mailbox in it
    m = AddressMatcher(p("@lists.example.com"), p("unsubscribe+*@lists.example.com"))
    assert m.match("unsubscribe+a=example.org@lists.example.com").unsubscribe  # type: ignore[union-attr]
    assert not m.match("bounces@lists.example.com").unsubscribe  # type: ignore[union-attr]
    # ... and the other way round
    m = AddressMatcher(p("bounces@example.com"), p("@example.com"))
    assert not m.match("bounces@example.com").unsubscribe  # type: ignore[union-attr]
    assert m.match("leave@example.com").unsubscribe  # type: ignore[union-attr]


def test_config_section_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text('[unsubscribe]\naddresses = ["unsubscribe+*@example.com"]\n[actions]\nopt_out = "discard"\n')
    s = load_settings(str(path))
    assert [a.pattern for a in s.unsubscribe_addresses] == ["unsubscribe+*@example.com"]
    assert s.actions["opt_out"] == "discard"
    path.write_text('[bounce]\naddresses = ["x@example.com"]\n[unsubscribe]\naddresses = ["x@example.com"]\n')
    with pytest.raises(ConfigError, match=r"also in bounce\.addresses"):
        load_settings(str(path))
    path.write_text('[unsubscribe]\naddresses = ["unsubscribe-*@example.com"]\n')
    with pytest.raises(ConfigError, match=r"unsubscribe.addresses: .*VERP separator"):
        load_settings(str(path))
    with pytest.raises(ConfigError, match="--unsubscribe-address"):
        load_settings(None, {"unsubscribe_addresses": ["not an address"]})


# ------------------------------------------------------------------------------------------------------ the CLI


def classify_cli(*args: str) -> dict[str, dict]:
    res = CliRunner().invoke(main, ["classify", "--format", "jsonl", *args, str(FIXTURES)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return {Path(r["source"]).name: r for r in map(json.loads, res.output.splitlines())}


def test_classify_with_and_without_unsubscribe_addresses() -> None:
    alone = classify_cli()
    assert {n for n, r in alone.items() if r["kind"] == "opt_out"} == {
        "apple-en.eml",
        "apple-de.eml",
        "apple-fr.eml",
        "apple-es.eml",
        "arf-opt-out.eml",
    }
    given = classify_cli("--unsubscribe-address", UNSUB_VERP, "--unsubscribe-address", UNSUB_PLAIN)
    for name, (who, _, _) in REQUESTS.items():
        assert given[name]["kind"] == "opt_out" and given[name]["recipients"][0]["recipient"] == who, name
    assert given["vacation-de.eml"]["kind"] == "auto_reply"
    assert given["newsletter-to-bounce-address.eml"]["kind"] == "not_bounce"
    assert given["bounce-to-unsubscribe.eml"]["kind"] == "bounce"
    # the VERP pattern covers its bare mailbox too (as a VERP return path does)
    verp_only = classify_cli("--unsubscribe-address", UNSUB_VERP)
    assert verp_only["plain-subject-en.eml"]["kind"] == "opt_out"
    # another address: the requests were not sent to it
    other = classify_cli("--unsubscribe-address", "leave@other.example")
    assert other["plain-subject-en.eml"]["kind"] == other["gmail-de.eml"]["kind"] == "not_bounce"


def test_classify_refuses_a_bad_pattern_by_name() -> None:
    res = CliRunner().invoke(main, ["classify", "--unsubscribe-address", "unsubscribe+*", str(FIXTURES)])
    assert res.exit_code == 2 and "--unsubscribe-address" in res.output


# -------------------------------------------------------------------------------- into the store, as `import` does


def test_import_records_and_suppresses_each_subscriber(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    res = CliRunner().invoke(
        main,
        [
            *("import", "--db", str(db), "--bounce-address", BOUNCES),
            *("--unsubscribe-address", UNSUB_VERP, "--unsubscribe-address", UNSUB_PLAIN, str(FIXTURES)),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    conn = sqlite3.connect(db)
    kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind").fetchall())
    assert kinds == {"opt_out": 22, "auto_reply": 2, "bounce": 1, "not_bounce": 1}  # 21 requests + the ARF report
    rows = dict(conn.execute("SELECT address, category || '/' || source FROM suppressions WHERE state='suppressed'"))
    for who, _, _ in REQUESTS.values():
        assert rows.pop(who) == "opt-out/opt-out", who
    # the bounce; not the vacation repliers, not xavier (the newsletter), and not yolanda: the ARF report came to
    # fbl@, which is none of our addresses, so it is recorded but moves no suppression
    assert rows == {"zoe@example.org": "hard/policy"}
    conn.close()
