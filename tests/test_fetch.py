"""bouncemilter.fetch without a server: URLs, secrets, per-kind actions, IMAP wire helpers, [fetch] config."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bouncemilter import fetch
from bouncemilter.classify import classify
from bouncemilter.config import ConfigError, load_settings
from bouncemilter.fetch_imap import imap_utf7, parse_fetch, uid_sets

from .fetch_messages import CYCLE, message


def test_urls() -> None:
    u = fetch.parse_url("imaps://bounces@example.com@outlook.office365.com/INBOX")
    assert (u.scheme, u.user, u.host, u.port, u.folder) == ("imaps", "bounces@example.com", "outlook.office365.com",
                                                            993, "INBOX")  # fmt: skip
    assert fetch.parse_url("imap://b%40example.com@h:1143").folder == "INBOX"
    assert fetch.parse_url("imap://b%40example.com@h:1143").user == "b@example.com"
    assert fetch.parse_url("IMAP://u@h/Bounces/In%20box/").folder == "Bounces/In box"
    assert fetch.parse_url("pop3://u@[::1]").address == "[::1]:110"
    assert fetch.parse_url("pop3s://u@h/INBOX").folder == ""
    assert str(fetch.parse_url("imaps://u@h/X")) == "imaps://u@h:993/X"
    for bad, why in [
        ("http://u@h/", "scheme"),
        ("imap://h/INBOX", "no user"),
        ("pop3://u@h/Sent", "POP3 has no folders"),
        ("imap://u@h:99999/", "out of range"),
        ("imap://u@h/INBOX?x", "query"),
    ]:
        with pytest.raises(ValueError, match=why):
            fetch.parse_url(bad)
    with pytest.raises(ValueError, match="a password in the URL is not accepted") as exc:
        fetch.parse_url("imaps://u:hunter2@h/INBOX")
    assert "hunter2" not in str(exc.value)


def test_after_actions() -> None:
    assert fetch.parse_after("move:Bounces/Hard/") == ("move", "Bounces/Hard")
    assert fetch.parse_after(" Seen ") == ("seen", "")
    for bad in ("move:", "delete:x", "trash", "move"):
        with pytest.raises(ValueError, match="leave, seen, delete or move:FOLDER"):
            fetch.parse_after(bad)
    after = fetch.after_map({"hard": "delete"})
    assert after["hard"] == ("delete", "")
    assert after["soft"] == ("move", "Bounces/Soft")
    assert all(verb != "delete" for cat, (verb, _) in fetch.after_map().items())  # never delete by default
    with pytest.raises(ValueError, match="harde: unknown category"):
        fetch.after_map({"harde": "leave"})


def test_categories_follow_the_classification() -> None:
    for intent in set(CYCLE):
        assert fetch.category(classify(message(1, intent))) == intent


def test_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"p@ss word\r\nsecond line ignored\n")
    pw.chmod(0o600)
    assert fetch.credentials(password_file=str(pw)).password == "p@ss word"
    monkeypatch.setenv("BM_TEST_PW", "from-env")
    assert fetch.credentials(password_env="BM_TEST_PW").password == "from-env"
    with pytest.raises(fetch.FetchError, match="BM_NOT_SET is not set"):
        fetch.credentials(password_env="BM_NOT_SET")
    with pytest.raises(fetch.FetchError, match="exactly one of"):
        fetch.credentials(password_file=str(pw), password_env="BM_TEST_PW")
    with pytest.raises(fetch.FetchError, match="exactly one of"):
        fetch.credentials()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(fetch.FetchError, match="empty"):
        fetch.credentials(password_file=str(tmp_path / "empty"))
    with pytest.raises(fetch.FetchError, match="No such file"):
        fetch.credentials(token_file=str(tmp_path / "missing"))
    warned: list[str] = []
    monkeypatch.setattr(fetch, "warn", warned.append)
    pw.chmod(0o644)
    fetch.credentials(password_file=str(pw))
    assert warned and "readable by every user" in warned[0]


def test_xoauth2_initial_response() -> None:
    # RFC 7628 / Google's XOAUTH2: user=...^Aauth=Bearer ...^A^A
    raw = fetch.xoauth2("bounces@example.com", "ya29.tok")
    assert raw == b"user=bounces@example.com\x01auth=Bearer ya29.tok\x01\x01"
    assert base64.b64decode(base64.b64encode(raw)) == raw


def test_imap_helpers() -> None:
    assert imap_utf7("Bounces/Hard") == "Bounces/Hard"
    assert imap_utf7("Über & Co") == "&ANw-ber &- Co"  # RFC 3501 5.1.3
    assert imap_utf7("台北") == "&U,BTFw-"  # the RFC's own example
    assert uid_sets([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert uid_sets([]) == ""
    data = [
        (b"1 (UID 7 RFC822.SIZE 42 BODY[]<0> {5}", b"hello"),
        b")",
        b"2 (FLAGS (\\Seen))",  # unsolicited: another client changed flags
        (b"3 (BODY[]<0> {3}", b"abc"),
        b" UID 9 RFC822.SIZE 3)",  # items after the literal
        b"4 (UID 10 BODY[]<0> NIL)",  # expunged meanwhile: no body
    ]
    assert parse_fetch(data) == {7: (b"hello", 42), 9: (b"abc", 3)}


def test_fetch_config_section(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        '[fetch]\nenabled = true\nurl = "imaps://u@h/INBOX"\npassword_env = "X"\n[fetch.after]\nhard = "delete"\n'
    )
    s = load_settings(str(cfg))
    assert s.fetch_enabled and s.fetch_after["hard"] == "delete" and s.fetch_after["soft"] == "move:Bounces/Soft"
    for text, why in [
        ('[fetch]\nurl = "imap://u:p@h/"\n', "fetch.url: .*password in the URL"),
        ('[fetch]\nenabled = true\nurl = "imap://u@h/"\n', "exactly one of password_file"),
        ("[fetch]\nenabled = true\n", "fetch.url: required"),
        ('[fetch.after]\nhard = "shred"\n', "fetch.after: hard: 'shred'"),
        ("[fetch]\nbatch_size = 0\n", "fetch.batch_size"),
    ]:
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_settings(str(cfg))
