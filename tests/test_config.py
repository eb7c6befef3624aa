"""Configuration: defaults, the example file, validation errors that name file and key, overrides."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from bouncemilter.config import KEYS, KINDS, ConfigError, Settings, load_settings
from bouncemilter.verp import BounceAddress

EXAMPLE = Path(__file__).resolve().parents[1] / "conf" / "bouncemilter.toml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_file() -> None:
    s = load_settings()
    assert s == Settings()
    assert s.socket == "inet:9025@127.0.0.1"
    assert s.db == "bouncemilter.db"
    assert s.bounce_addresses == ()
    assert s.match_null_sender is False  # the safe default: DSNs to employees are not ours to record
    assert dict(s.actions) == dict.fromkeys(KINDS, "accept")
    assert s.store_timeout == 5.0 and s.body_cap == 1048576 and s.milter_timeout == 240


def test_settings_are_immutable() -> None:
    s = load_settings()
    with pytest.raises(AttributeError):
        s.db = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.actions["bounce"] = "discard"  # type: ignore[index]


def test_example_file_loads_to_the_defaults() -> None:
    assert load_settings(str(EXAMPLE)) == Settings()


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for dotted in KEYS:
        section, key = dotted.split(".")
        assert f"[{section}]" in text
        assert f"\n{key} =" in text or f"\n# {key} =" in text, dotted
    for kind in KINDS:
        assert f"\n{kind} =" in text


def test_full_file(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    path = write(
        tmp_path,
        f"""
[milter]
socket = "unix:/run/bouncemilter/milter.sock"
socket_mode = 0o660
socket_group = "{group}"
timeout = 60
body_cap = 65536

[store]
db = "/var/lib/bouncemilter/bounces.db"
timeout = 2

[bounce]
addresses = ["Bounces@Example.com", "bounces+*@example.com", "@bounces.example.net"]
match_null_sender = false
verp_separator = "+"
verp_encoding = "="

[actions]
auto_reply = "discard"
complaint = "DISCARD"

[headers]
add = true
prefix = "X-BM-"

[log]
target = "syslog"
level = "DEBUG"
""",
    )
    s = load_settings(path)
    assert s.socket == "unix:/run/bouncemilter/milter.sock"
    assert s.socket_mode == 0o660 and s.socket_group == group
    assert s.milter_timeout == 60 and s.body_cap == 65536
    assert s.db == "/var/lib/bouncemilter/bounces.db"
    assert s.store_timeout == 2.0 and isinstance(s.store_timeout, float)
    assert s.bounce_addresses == (
        BounceAddress("bounces@example.com"),
        BounceAddress("bounces+*@example.com"),
        BounceAddress("@bounces.example.net"),
    )
    assert s.match_null_sender is False
    assert s.actions["auto_reply"] == "discard" and s.actions["complaint"] == "discard"
    assert s.actions["bounce"] == "accept"
    assert s.add_headers is True and s.header_prefix == "X-BM-"
    assert s.log_target == "syslog" and s.log_level == "debug"


def test_socket_mode_as_string(tmp_path: Path) -> None:
    path = write(tmp_path, '[milter]\nsocket = "unix:/tmp/m.sock"\nsocket_mode = "0660"\n')
    assert load_settings(path).socket_mode == 0o660


@pytest.mark.parametrize(
    "socket", ["inet:9025@127.0.0.1", "inet:10025", "inet6:9025@::1", "unix:/var/run/m.sock", "local:/tmp/x"]
)
def test_valid_sockets(tmp_path: Path, socket: str) -> None:
    assert load_settings(write(tmp_path, f'[milter]\nsocket = "{socket}"\n')).socket == socket


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[actions]\nbounce = "drop"\n', "actions.bounce", "must be one of accept, discard"),
        ("[actions]\nauto_reply = 1\n", "actions.auto_reply", "must be one of"),
        ('[milter]\nsocket = "tcp:9025"\n', "milter.socket", "unix:"),
        ('[milter]\nsocket = "inet:99999@127.0.0.1"\n', "milter.socket", "port"),
        ('[milter]\nsocket = "unix:relative.sock"\n', "milter.socket", "unix:"),
        ("[milter]\nsocket = 9025\n", "milter.socket", "string"),
        ('[milter]\nsocket = "unix:/x.sock"\nsocket_mode = "rw-rw----"\n', "milter.socket_mode", "mode"),
        ('[milter]\nsocket = "unix:/x.sock"\nsocket_mode = 0o17777\n', "milter.socket_mode", "mode"),
        ('[milter]\nsocket = "unix:/x.sock"\nsocket_group = "no-such-group-xyz"\n', "milter.socket_group", "group"),
        ("[milter]\nsocket_mode = 0o660\n", "milter.socket_mode", "unix socket"),
        ("[milter]\ntimeout = 0\n", "milter.timeout", "between"),
        ('[milter]\ntimeout = "240"\n', "milter.timeout", "integer"),
        ("[milter]\nbody_cap = true\n", "milter.body_cap", "integer"),
        ("[milter]\nbody_cap = 10\n", "milter.body_cap", "between"),
        ('[store]\ndb = ""\n', "store.db", "non-empty"),
        ("[store]\ntimeout = -1\n", "store.timeout", "between"),
        ('[store]\ntimeout = "5s"\n', "store.timeout", "number"),
        ("[store]\ntimeout = 60\n", "store.timeout", "milter_content_timeout"),
        ("[milter]\nbody_cap = 2097152\n[limits]\nmemory = 1048576\n", "limits.memory", "body_cap"),
        ("[limits]\nmemory = 1000\n", "limits.memory", "between"),
        ("[limits]\nsuppressions_per_message = -1\n", "limits.suppressions_per_message", "between"),
        ("[store]\ntimeout = 0\n", "store.timeout", "between"),
        ('[bounce]\naddresses = ["bounces@"]\n', "bounce.addresses", "domain"),
        ('[bounce]\naddresses = ["not an address"]\n', "bounce.addresses", "not an address"),
        ("[bounce]\naddresses = 5\n", "bounce.addresses", "list"),
        ('[bounce]\naddresses = ["bounces-*@example.com"]\n', "bounce.addresses", "separator"),
        ('[bounce]\nmatch_null_sender = "yes"\n', "bounce.match_null_sender", "true or false"),
        ('[bounce]\nverp_separator = "ab"\n', "bounce.verp_separator", "one punctuation character"),
        ('[bounce]\nverp_encoding = "+"\n', "bounce.verp_encoding", "differ"),
        ('[headers]\nprefix = "X Bounce"\n', "headers.prefix", "header field name"),
        ('[headers]\nprefix = "X-Bounce:"\n', "headers.prefix", "header field name"),
        ('[headers]\nadd = "true"\n', "headers.add", "true or false"),
        ('[log]\ntarget = "file"\n', "log.target", "stderr, syslog, none"),
        ('[log]\nlevel = "loud"\n', "log.level", "debug, info, warning, error"),
    ],
)
def test_invalid_values_name_file_and_key(tmp_path: Path, toml: str, key: str, words: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


def test_error_message_format(tmp_path: Path) -> None:
    path = write(tmp_path, '[actions]\nbounce = "drop"\n')
    with pytest.raises(ConfigError, match=r"conf\.toml: actions\.bounce: 'drop': must be one of accept, discard$"):
        load_settings(path)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[milter]\nsockt = "inet:1@127.0.0.1"\n', "milter.sockt"),
        ('[actions]\nbounces = "discard"\n', "actions.bounces"),
        ("[polcy]\nsoft_threshold = 3\n", "polcy"),
        ('db = "x.db"\n', "db"),
        ("[store.extra]\nx = 1\n", "store.extra"),
    ],
)
def test_unknown_keys_rejected(tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).startswith(f"{path}: {key}: ")
    assert "unknown" in str(err.value) or "table" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(str(tmp_path / "absent.toml"))


def test_bad_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[milter\nsocket = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_settings(path)
    assert str(err.value).startswith(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_bytes(b'[store]\ndb = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(path))


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[milter]\nsocket = "inet:9025@127.0.0.1"\n[store]\ndb = "a.db"\n[bounce]\naddresses = ["old@example.com"]\n',
    )
    s = load_settings(
        path,
        {"socket": "unix:/tmp/bm.sock", "db": "b.db", "bounce_addresses": ["bounces+*@example.com", "@example.net"]},
    )
    assert s.socket == "unix:/tmp/bm.sock"
    assert s.db == "b.db"
    assert s.bounce_addresses == (BounceAddress("bounces+*@example.com"), BounceAddress("@example.net"))


def test_overrides_without_file() -> None:
    s = load_settings(None, {"db": "/tmp/x.db", "bounce_addresses": ("bounces@example.com",)})
    assert s.db == "/tmp/x.db" and s.bounce_addresses == (BounceAddress("bounces@example.com"),)
    assert s.socket == Settings().socket


def test_absent_overrides_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\ndb = "a.db"\n[bounce]\naddresses = ["old@example.com"]\n')
    s = load_settings(path, {"socket": None, "db": None, "bounce_addresses": ()})
    assert s.db == "a.db" and s.bounce_addresses == (BounceAddress("old@example.com"),)


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"socket": "nonsense"}, "--socket"),
        ({"db": ""}, "--db"),
        ({"bounce_addresses": ["bad"]}, "--bounce-address"),
        ({"no_such": 1}, "no_such"),
    ],
)
def test_invalid_overrides_name_the_flag(overrides: dict, flag: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, overrides)
    assert str(err.value).startswith(f"command line: {flag}: ")


def test_override_socket_carries_through_over_a_unix_config(tmp_path: Path) -> None:
    # --socket inet:... over a file written for a unix socket: the file's mode and group go with its socket
    path = write(tmp_path, '[milter]\nsocket = "unix:/tmp/m.sock"\nsocket_mode = 0o660\nsocket_group = "0"\n')
    s = load_settings(path, {"socket": "inet:9025@127.0.0.1"})
    assert (s.socket, s.socket_mode, s.socket_group) == ("inet:9025@127.0.0.1", None, None)
    s = load_settings(path, {"socket": "unix:/run/other.sock"})
    assert (s.socket, s.socket_mode, s.socket_group) == ("unix:/run/other.sock", 0o660, "0")


@pytest.mark.parametrize("written", ["660", "644", "1_0", "440"])
def test_decimal_socket_mode_is_rejected(tmp_path: Path, written: str) -> None:
    # TOML reads 660 as decimal: mode 0o1224 (sticky, -w- for the owner, nothing for the group) is never meant
    path = write(tmp_path, f'[milter]\nsocket = "unix:/tmp/m.sock"\nsocket_mode = {written}  # rw for the group\n')
    with pytest.raises(ConfigError, match=r"milter\.socket_mode: .*(decimal|within 0o777)"):
        load_settings(path)


@pytest.mark.parametrize(("written", "mode"), [("0o660", 0o660), ('"660"', 0o660), ('"0640"', 0o640), ("0", 0)])
def test_octal_socket_modes_are_accepted(tmp_path: Path, written: str, mode: int) -> None:
    path = write(tmp_path, f'[milter]\nsocket = "unix:/tmp/m.sock"\nsocket_mode = {written}\n')
    assert load_settings(path).socket_mode == mode


def test_socket_mode_bits_outside_0o777_are_rejected(tmp_path: Path) -> None:
    for written in ("0o1660", '"4755"', "0o4000"):
        path = write(tmp_path, f'[milter]\nsocket = "unix:/tmp/m.sock"\nsocket_mode = {written}\n')
        with pytest.raises(ConfigError, match="within 0o777"):
            load_settings(path)


def test_duplicate_addresses_collapsed(tmp_path: Path) -> None:
    path = write(tmp_path, '[bounce]\naddresses = ["b@example.com", "B@EXAMPLE.COM"]\n')
    assert load_settings(path).bounce_addresses == (BounceAddress("b@example.com"),)
