"""TOML configuration -> typed, validated `Settings`.

Every key lives in a section; `KEYS` maps ``section.key`` to the `Settings` field and a validator, so adding a
setting is one line there plus a field (and a commented entry in conf/bouncemilter.toml). Unknown sections and
keys are errors, because a misspelt key silently falling back to a default is how bounces get discarded by
surprise. Errors read ``<file>: <section.key>: <problem>``.
"""

from __future__ import annotations

import grp
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from .classify.reasons import REASONS
from .policy import SENDER_REASONS
from .signing import BadKey, KeyRing
from .verp import BounceAddress, parse_bounce_address

KINDS: tuple[str, ...] = ("bounce", "delay", "complaint", "opt_out", "auto_reply", "delivered", "not_bounce")
ACTIONS: tuple[str, ...] = ("accept", "discard")
LOG_TARGETS: tuple[str, ...] = ("stderr", "syslog", "none")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
VERIFY_MODES: tuple[str, ...] = ("off", "record", "reject")


class ConfigError(Exception):
    """A configuration problem; the message names the file (or "command line") and the key."""


DEFAULT_PATH = "/etc/bouncemilter/bouncemilter.toml"
ENV_VAR = "BOUNCEMILTER_CONFIG"


def config_path(given: str | None) -> str | None:
    """The file a command reads: --config, else $BOUNCEMILTER_CONFIG ("" = none: embedded defaults), else
    /etc/bouncemilter/bouncemilter.toml when it exists, else None (embedded defaults). So a configured host
    needs no --config, and a host without one keeps working with the defaults."""
    if given:
        return given
    env = os.environ.get(ENV_VAR)
    if env is not None:
        return env or None
    return DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None


def render(settings: Settings) -> str:
    """The effective settings as TOML, section by section (what `check-config` prints; loads back the same)."""
    sections: dict[str, list[str]] = {}
    for dotted, (name, _) in KEYS.items():
        section, _, key = dotted.partition(".")
        value = getattr(settings, name)
        lines = sections.setdefault(section, [])
        if value is None or value == "":  # "" for the string keys whose validators refuse an empty value
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml_value(name, value)}")
    for kind in KINDS:
        sections.setdefault("actions", []).append(f"{kind} = {_toml_value('', settings.actions[kind])}")
    order = [k.partition(".")[0] for k in KEYS]
    order.insert(order.index("headers"), "actions")
    return "\n\n".join(f"[{s}]\n" + "\n".join(sections[s]) for s in dict.fromkeys(order)) + "\n"


def _toml_value(name: str, value: Any) -> str:
    import json

    if name == "socket_mode":
        return f"0o{value:o}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(json.dumps(getattr(v, "pattern", v)) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {json.dumps(str(v))}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _default_actions() -> Mapping[str, str]:
    return MappingProxyType(dict.fromkeys(KINDS, "accept"))


@dataclass(frozen=True)
class Settings:
    socket: str = "inet:9025@127.0.0.1"
    socket_mode: int | None = None
    socket_group: str | None = None
    db: str = "bouncemilter.db"
    bounce_addresses: tuple[BounceAddress, ...] = ()
    match_null_sender: bool = False  # observe only: never moves the suppression list
    verp_separator: str = "+"
    verp_encoding: str = "="
    actions: Mapping[str, str] = field(default_factory=_default_actions)
    add_headers: bool = False
    header_prefix: str = "X-Bounce-"
    body_cap: int = 1048576
    store_timeout: float = 5.0
    retention_days: int = 0  # 0: keep everything; else the milter prunes older messages once a day
    log_target: str = "stderr"
    log_level: str = "info"
    milter_timeout: int = 240
    # suppression policy (bouncemilter.policy)
    policy_soft_threshold: int = 3
    policy_soft_window_days: int = 30
    policy_soft_stale_days: int = 7
    policy_complaints: bool = True
    policy_sender_reasons: tuple[str, ...] = tuple(sorted(SENDER_REASONS))
    # Prometheus endpoint (bouncemilter.metrics)
    metrics_enabled: bool = False
    metrics_listen: str = "127.0.0.1:9125"
    metrics_allow_remote: bool = False
    # caps against forged reports (issue #15; see the README, "Hostile input and limits"): 0 = no cap
    limit_suppressions_per_message: int = 100
    limit_suppressions_per_client_hour: int = 1000
    limit_recipients_per_message: int = 1000
    limit_memory: int = 64 << 20  # bytes for buffered messages and connections, all sessions together
    # hosted-mailbox fetching (bouncemilter.fetch): `bouncemilter fetch`, and `run` when fetch_enabled
    fetch_enabled: bool = False
    fetch_url: str = ""
    fetch_password_file: str = ""
    fetch_password_env: str = ""
    fetch_oauth2_token_file: str = ""
    fetch_ca_file: str = ""
    fetch_interval: float = 300.0
    fetch_batch_size: int = 200
    fetch_max_size: int = 1048576
    fetch_timeout: float = 60.0
    fetch_after: Mapping[str, str] = field(default_factory=lambda: _fetch_after({}))  # category -> action
    # signed return paths (bouncemilter.signing); on when secret_file is set
    signing_secret_file: str | None = None
    signing_senders: tuple[str, ...] = ()
    signing_verify: str = "record"
    signing_max_age_days: int = 30
    signing_address: str | None = None
    signing_log_sent: bool = False
    signing_sent_retention_days: int = 30
    # DNS checks of domain claims (bouncemilter.dnscheck)
    dns_check: bool = True
    dns_nameservers: tuple[str, ...] = ()
    dns_timeout_ms: int = 40
    dns_lookup_timeout: float = 3.0
    dns_cache_seconds: int = 3600
    # unsubscribe requests by mail (issue #11): mail to these is an opt-out unless a bounce or an auto-reply
    unsubscribe_addresses: tuple[BounceAddress, ...] = ()
    # the suppression webhook (bouncemilter.notify): each new suppression POSTed, HMAC-signed, from an outbox
    notify_url: str = ""
    notify_secret_file: str = ""
    notify_timeout: float = 10.0
    notify_interval: float = 5.0
    notify_retry_min: float = 30.0
    notify_retry_max: float = 3600.0

    @property
    def signing_enabled(self) -> bool:
        return self.signing_secret_file is not None

    def signing_addresses(self) -> list[str]:
        """The VERP patterns a signed return path may use: [signing] address, else every VERP pattern of
        [bounce] addresses (the sender's own domain's first; see signing.Signer)."""
        if self.signing_address:
            return [self.signing_address]
        return [a.pattern for a in self.bounce_addresses if a.kind == "verp"]


# ---------------------------------------------------------------- validators: value -> normalised value or ValueError

Validator = Callable[[Any], Any]

UNIX_PATH_MAX = 107  # sockaddr_un.sun_path on Linux: 108 bytes with the final NUL
_SOCKET_RE = re.compile(r"^(?:(unix|local):(/\S+)|(inet|inet6):(\d{1,5})(?:@(\S+))?)$")
_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII except ':'


def _socket(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string like 'unix:/run/bouncemilter/milter.sock' or 'inet:9025@127.0.0.1'")
    m = _SOCKET_RE.match(v.strip())
    if not m:
        raise ValueError(f"{v!r}: must be 'unix:/absolute/path', 'inet:PORT@HOST' or 'inet6:PORT@HOST'")
    if m.group(4) is not None and not 1 <= int(m.group(4)) <= 65535:
        raise ValueError(f"{v!r}: port must be between 1 and 65535")
    if m.group(2) is not None and len(m.group(2).encode()) > UNIX_PATH_MAX:
        # the kernel's sun_path: libmilter would only say "cannot opensocket"
        raise ValueError(f"{v!r}: a unix socket path has at most {UNIX_PATH_MAX} bytes; use a shorter directory")
    host = m.group(5)
    if host is not None and re.fullmatch(r"[0-9.]+", host):
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{v!r}: {host!r} is not an IPv4 address") from None
    return v.strip()


def _socket_mode(v: Any) -> int | None:
    # TOML has octal integers (0o660); a string "0660" or "660" is read as octal too, as chmod reads it. A plain
    # TOML integer such as 660 is decimal (0o1224): _decimal_modes() rejects it before this sees the number.
    if isinstance(v, str) and re.fullmatch(r"(?:0o?)?[0-7]{3,4}", v.strip()):
        v = int(v.strip().replace("o", ""), 8)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f'{v!r}: must be a file mode such as 0o660 (TOML octal) or "0660"')
    if not 0 <= v <= 0o777:
        # setuid, setgid and sticky bits mean nothing on a socket; a value this large is a decimal typo
        raise ValueError(f'{oct(v)}: must be a file mode within 0o777, such as 0o660 (TOML octal) or "0660"')
    return v


_DECIMAL_MODE_RE = re.compile(r"^[ \t]*socket_mode[ \t]*=[ \t]*([+-]?[0-9][0-9_]*)[ \t]*(?:#.*)?$", re.M)


def _decimal_modes(path: str, text: str) -> None:
    """`socket_mode = 660` is the decimal 660 (mode 0o1224) in TOML: nobody means that, so it is an error."""
    m = _DECIMAL_MODE_RE.search(text)
    if m and not m.group(1).lstrip("+-").startswith("0"):
        if not re.fullmatch(r"[0-7]{3,4}", m.group(1)):  # 99999: no octal reading of it is a mode either
            raise ConfigError(
                f"{path}: milter.socket_mode: {m.group(1)}: must be a file mode within 0o777, such as 0o660 "
                '(TOML octal) or "0660"'
            )
        raise ConfigError(
            f"{path}: milter.socket_mode: {m.group(1)} is a decimal number in TOML (mode {oct(int(m.group(1)))}); "
            f'write 0o{m.group(1)} or "{m.group(1)}"'
        )


def _socket_group(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a group name (or a numeric gid as a string)")
    name = v.strip()
    if name.isdigit():
        return name
    try:
        grp.getgrnam(name)
    except KeyError:
        raise ValueError(f"{name!r}: no such group") from None
    return name


def _nonempty_str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a non-empty string")
    return v.strip()


_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def check_db(v: Any) -> str:
    """A SQLite file or a postgresql:// URL. Any other URL would be taken for a file name (a directory 'mysql:'),
    so it is refused by name."""
    text = _nonempty_str(v)
    if text.startswith("~"):  # no shell expands it in a TOML file: ~/b.db would be a directory named '~'
        text = os.path.expanduser(text)
    m = _URL_RE.match(text)
    if m and m.group(1).lower() not in ("postgresql", "postgres"):
        raise ValueError(f"{text!r}: a store is a SQLite file or a postgresql:// URL, not {m.group(1)}://")
    if not text.isprintable():
        raise ValueError(f"{text!r}: control characters in a file name or URL")
    return text


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{v!r}: must be true or false")
    return v


def _bounce_addresses(v: Any) -> tuple[BounceAddress, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple):
        raise ValueError('must be a list of addresses, e.g. ["bounces@example.com", "bounces+*@example.com"]')
    out: list[BounceAddress] = []
    for item in v:
        parsed = parse_bounce_address(item)
        if parsed not in out:
            out.append(parsed)
    return tuple(out)


def _one_char(v: Any) -> str:
    if not isinstance(v, str) or len(v) != 1 or v.isalnum() or v in '@<>"\\ \t*':
        raise ValueError(f"{v!r}: must be one punctuation character such as '+', '-' or '='")
    return v


def _choice(choices: tuple[str, ...]) -> Validator:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.strip().lower() not in choices:
            raise ValueError(f"{v!r}: must be one of {', '.join(choices)}")
        return v.strip().lower()

    return check


def _header_prefix(v: Any) -> str:
    if not isinstance(v, str) or not _HEADER_NAME_RE.match(v):
        raise ValueError(f"{v!r}: must be the start of a header field name (printable ASCII, no ':' or spaces)")
    return v


def _int_range(lo: int, hi: int) -> Validator:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{v!r}: must be an integer between {lo} and {hi}")
        return v

    return check


def _float_range(lo: float, hi: float) -> Validator:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError(f"{v!r}: must be a number between {lo} and {hi}")
        return float(v)

    return check


# Postfix's milter_content_timeout as deploy/postfix/main.cf sets it: how long Postfix waits for the reply at end
# of message before it gives up on the milter (and answers 4.7.1, or worse with milter_default_action = accept).
# The milter's reply comes within store.timeout of end of message, so store.timeout must stay well below it.
MILTER_CONTENT_TIMEOUT = 60.0
STORE_TIMEOUT_MAX = MILTER_CONTENT_TIMEOUT / 2  # the rest: classification, a slow disk's fsync, the MTA itself


def _store_timeout(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{v!r}: must be a number of seconds")
    if not 0.1 <= v <= STORE_TIMEOUT_MAX:
        raise ValueError(
            f"{v!r}: must be a number between 0.1 and {STORE_TIMEOUT_MAX:g}: every reply to the MTA comes within "
            f"store.timeout, and Postfix gives up after milter_content_timeout ({MILTER_CONTENT_TIMEOUT:g}s in "
            "deploy/postfix/main.cf)"
        )
    return float(v)


def _reasons(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
        raise ValueError('must be a list of reason names, e.g. ["blocked", "spamdetected"]')
    out: list[str] = []
    for item in v:
        name = item.strip().lower()
        if name not in REASONS:
            raise ValueError(f"{item!r}: unknown reason (known: {', '.join(REASONS)})")
        if name not in out:
            out.append(name)
    return tuple(out)


def _senders(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
        raise ValueError('must be a list of senders, e.g. ["@example.com", "news@example.org"]')
    out: list[str] = []
    for item in v:
        text = item.strip().strip("<>").lower()
        _, at, domain = text.rpartition("@")
        if not at or not domain or "." not in domain or any(c in text for c in ' \t"<>,;'):
            raise ValueError(f"{item!r}: must be '@domain' (every sender of the domain) or 'sender@domain'")
        if text not in out:
            out.append(text)
    return tuple(out)


def _nameservers(v: Any) -> tuple[str, ...]:
    from .dnscheck import parse_nameserver

    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
        raise ValueError('must be a list of name server addresses, e.g. ["127.0.0.1", "[::1]:5353"]')
    for item in v:
        parse_nameserver(item)
    return tuple(x.strip() for x in v)


def _verp_pattern(v: Any) -> str:
    parsed = parse_bounce_address(v)
    if parsed.kind != "verp":
        raise ValueError(f"{v!r}: must be a VERP pattern such as 'bounces+*@example.com'")
    return parsed.pattern


def _listen(v: Any) -> str:
    from .metrics import parse_listen  # local: only the validator needs it

    parse_listen(v)
    return v.strip()


def _fetch_url(v: Any) -> str:
    from .fetch import parse_url  # local: only the validator needs it

    if not isinstance(v, str):
        raise ValueError("must be a string like 'imaps://bounces@example.com@imap.example.com/INBOX'")
    if v.strip():  # "" = no mailbox
        parse_url(v)
    return v.strip()


def _notify_url(v: Any) -> str:
    from urllib.parse import urlsplit

    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be an http:// or https:// URL, e.g. 'https://app.example.com/hooks/suppressions'")
    parts = urlsplit(v.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{v!r}: must be an http:// or https:// URL with a host")
    return v.strip()


def _fetch_after(v: Any) -> Mapping[str, str]:
    from .fetch import after_map

    if not isinstance(v, dict):
        raise ValueError('must be a table, e.g. [fetch.after] hard = "move:Bounces/Hard"')
    from .fetch import AFTER_DEFAULTS

    after_map(v)
    return MappingProxyType({**AFTER_DEFAULTS, **{k: v[k].strip() for k in v}})


# section.key -> (Settings field, validator). The order is the order of conf/bouncemilter.toml.
KEYS: dict[str, tuple[str, Validator]] = {
    "milter.socket": ("socket", _socket),
    "milter.socket_mode": ("socket_mode", _socket_mode),
    "milter.socket_group": ("socket_group", _socket_group),
    "milter.timeout": ("milter_timeout", _int_range(1, 3600)),
    "milter.body_cap": ("body_cap", _int_range(1024, 1 << 30)),
    "store.db": ("db", check_db),
    "store.timeout": ("store_timeout", _store_timeout),
    "store.retention_days": ("retention_days", _int_range(0, 36500)),
    "bounce.addresses": ("bounce_addresses", _bounce_addresses),
    "bounce.match_null_sender": ("match_null_sender", _bool),
    "bounce.verp_separator": ("verp_separator", _one_char),
    "bounce.verp_encoding": ("verp_encoding", _one_char),
    "headers.add": ("add_headers", _bool),
    "headers.prefix": ("header_prefix", _header_prefix),
    "log.target": ("log_target", _choice(LOG_TARGETS)),
    "log.level": ("log_level", _choice(LOG_LEVELS)),
    "policy.soft_threshold": ("policy_soft_threshold", _int_range(1, 100)),
    "policy.soft_window_days": ("policy_soft_window_days", _int_range(1, 3650)),
    "policy.soft_stale_days": ("policy_soft_stale_days", _int_range(1, 3650)),
    "policy.complaints": ("policy_complaints", _bool),
    "policy.sender_reasons": ("policy_sender_reasons", _reasons),
    "metrics.enabled": ("metrics_enabled", _bool),
    "metrics.listen": ("metrics_listen", _listen),
    "metrics.allow_remote": ("metrics_allow_remote", _bool),
    "signing.secret_file": ("signing_secret_file", _nonempty_str),
    "signing.senders": ("signing_senders", _senders),
    "signing.verify": ("signing_verify", _choice(VERIFY_MODES)),
    "signing.max_age_days": ("signing_max_age_days", _int_range(1, 3650)),
    "signing.address": ("signing_address", _verp_pattern),
    "signing.log_sent": ("signing_log_sent", _bool),
    "signing.sent_retention_days": ("signing_sent_retention_days", _int_range(1, 3650)),
    "dns.check": ("dns_check", _bool),
    "dns.nameservers": ("dns_nameservers", _nameservers),
    "dns.timeout_ms": ("dns_timeout_ms", _int_range(1, 50)),
    "dns.lookup_timeout": ("dns_lookup_timeout", _float_range(0.1, 60.0)),
    "dns.cache_seconds": ("dns_cache_seconds", _int_range(0, 7 * 86400)),
    "limits.suppressions_per_message": ("limit_suppressions_per_message", _int_range(0, 1_000_000)),
    "limits.suppressions_per_client_hour": ("limit_suppressions_per_client_hour", _int_range(0, 10_000_000)),
    "limits.recipients_per_message": ("limit_recipients_per_message", _int_range(1, 1_000_000)),
    "limits.memory": ("limit_memory", _int_range(1 << 20, 1 << 36)),
    "fetch.enabled": ("fetch_enabled", _bool),
    "fetch.url": ("fetch_url", _fetch_url),
    "fetch.password_file": ("fetch_password_file", _nonempty_str),
    "fetch.password_env": ("fetch_password_env", _nonempty_str),
    "fetch.oauth2_token_file": ("fetch_oauth2_token_file", _nonempty_str),
    "fetch.ca_file": ("fetch_ca_file", _nonempty_str),
    "fetch.interval": ("fetch_interval", _float_range(1.0, 86400.0)),
    "fetch.batch_size": ("fetch_batch_size", _int_range(1, 10000)),
    "fetch.max_size": ("fetch_max_size", _int_range(1024, 1 << 30)),
    "fetch.timeout": ("fetch_timeout", _float_range(1.0, 3600.0)),
    "fetch.after": ("fetch_after", _fetch_after),
    "unsubscribe.addresses": ("unsubscribe_addresses", _bounce_addresses),
    "notify.url": ("notify_url", _notify_url),
    "notify.secret_file": ("notify_secret_file", _nonempty_str),
    "notify.timeout": ("notify_timeout", _float_range(1.0, 300.0)),
    "notify.interval": ("notify_interval", _float_range(0.1, 3600.0)),
    "notify.retry_min": ("notify_retry_min", _float_range(0.1, 86400.0)),
    "notify.retry_max": ("notify_retry_max", _float_range(0.1, 604800.0)),
}
# [actions] holds one key per kind
ACTION_KEYS = {f"actions.{kind}": kind for kind in KINDS}
FIELD_VALIDATORS: dict[str, Validator] = {name: check for name, check in KEYS.values()}
# the flag each override comes from, for error messages
OVERRIDE_NAMES = {
    "socket": "--socket",
    "db": "--db",
    "bounce_addresses": "--bounce-address",
    "unsubscribe_addresses": "--unsubscribe-address",
}
_LIST_OVERRIDES = ("bounce_addresses", "unsubscribe_addresses")  # an empty list = the flag was not given


CONFIG_MAX = 1 << 20  # a configuration file is a few KiB: more is a wrong path (a log, a database, a device)


def _read(path: str) -> dict[str, Any]:
    from .regularfile import read_regular

    try:
        raw = read_regular(path, CONFIG_MAX)  # a FIFO or /dev/zero is an error, not a command that hangs
        # utf-8-sig: Windows editors (Notepad) start UTF-8 files with a byte-order mark, which TOML does not allow
        text = raw.decode("utf-8-sig")
        data = tomllib.loads(text)
        _decimal_modes(path, text)
        return data
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None


def _from_file(path: str, data: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    actions = dict(_default_actions())
    sections = {k.partition(".")[0] for k in (*KEYS, *ACTION_KEYS)}
    for section, table in data.items():
        if section not in sections:
            raise ConfigError(f"{path}: {section}: unknown section (known: {', '.join(sorted(sections))})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section}: must be a table ([{section}])")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if dotted in ACTION_KEYS:
                try:
                    actions[ACTION_KEYS[dotted]] = _choice(ACTIONS)(value)
                except ValueError as exc:
                    raise ConfigError(f"{path}: {dotted}: {exc}") from None
                continue
            if dotted not in KEYS:
                known = sorted(k.partition(".")[2] for k in (*KEYS, *ACTION_KEYS) if k.startswith(section + "."))
                raise ConfigError(f"{path}: {dotted}: unknown key (known in [{section}]: {', '.join(known)})")
            name, check = KEYS[dotted]
            try:
                values[name] = check(value)
            except ValueError as exc:
                raise ConfigError(f"{path}: {dotted}: {exc}") from None
    values["actions"] = MappingProxyType(actions)
    return values


def _cross_check(settings: Settings, source: str) -> None:
    if settings.verp_separator == settings.verp_encoding:
        raise ConfigError(f"{source}: bounce.verp_encoding: must differ from bounce.verp_separator")
    for addr in settings.bounce_addresses:
        if addr.kind == "verp" and addr.pattern.rpartition("@")[0][-2] != settings.verp_separator:
            raise ConfigError(
                f"{source}: bounce.addresses: {addr.pattern!r}: the character before '*' must be the VERP "
                f"separator {settings.verp_separator!r} (bounce.verp_separator)"
            )
    for addr in settings.unsubscribe_addresses:
        if addr.kind == "verp" and addr.pattern.rpartition("@")[0][-2] != settings.verp_separator:
            raise ConfigError(
                f"{source}: unsubscribe.addresses: {addr.pattern!r}: the character before '*' must be the VERP "
                f"separator {settings.verp_separator!r} (bounce.verp_separator)"
            )
        if addr in settings.bounce_addresses:
            raise ConfigError(
                f"{source}: unsubscribe.addresses: {addr.pattern!r} is also in bounce.addresses; an address is "
                "either a return path or an unsubscribe address"
            )
    if settings.notify_url and not settings.notify_secret_file:
        raise ConfigError(f"{source}: notify.secret_file: required with notify.url (the body is HMAC-signed)")
    if settings.notify_retry_min > settings.notify_retry_max:
        raise ConfigError(f"{source}: notify.retry_min: must not exceed notify.retry_max")
    if settings.socket_mode is not None and not settings.socket.startswith(("unix:", "local:")):
        raise ConfigError(f"{source}: milter.socket_mode: only applies to a unix socket, not {settings.socket!r}")
    if settings.socket_group is not None and not settings.socket.startswith(("unix:", "local:")):
        raise ConfigError(f"{source}: milter.socket_group: only applies to a unix socket, not {settings.socket!r}")
    _check_signing(settings, source)
    if settings.fetch_enabled:
        if not settings.fetch_url:
            raise ConfigError(f"{source}: fetch.url: required when fetch.enabled = true")
        given = [k for k in ("password_file", "password_env", "oauth2_token_file") if getattr(settings, f"fetch_{k}")]
        if len(given) != 1:
            raise ConfigError(
                f"{source}: fetch: set exactly one of password_file, password_env, oauth2_token_file"
                + (f" (got {', '.join(given)})" if given else "")
            )
    if settings.limit_memory < settings.body_cap:
        raise ConfigError(
            f"{source}: limits.memory: {settings.limit_memory} is less than milter.body_cap ({settings.body_cap}): "
            "not even one message could be buffered"
        )
    from .metrics import is_loopback, parse_listen

    host = parse_listen(settings.metrics_listen)[0]
    if settings.metrics_enabled and not settings.metrics_allow_remote and not is_loopback(host):
        raise ConfigError(
            f"{source}: metrics.listen: {settings.metrics_listen!r} is not a loopback address; the endpoint has "
            "no authentication (set metrics.allow_remote = true to expose it anyway)"
        )


def read_keys(path: str, source: str = "") -> KeyRing:
    """The key ring in `path` (one key per line, the first signs). Refuses a file every local user can read:
    anyone holding a key can make bounces that suppress any address."""
    where = f"{source}: signing.secret_file" if source else "signing.secret_file"
    from .regularfile import open_regular

    try:
        with open(open_regular(path), encoding="utf-8") as fh:  # never a FIFO that blocks the start
            st = os.fstat(fh.fileno())
            text = fh.read(CONFIG_MAX + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if len(text) > CONFIG_MAX:
        raise ConfigError(f"{where}: {path}: larger than 1 MiB: not a key file")
    if st.st_mode & stat.S_IROTH:
        raise ConfigError(
            f"{where}: {path}: readable by every local user (mode {stat.S_IMODE(st.st_mode):04o}); "
            "chmod 0640 (or 0600) it"
        )
    try:
        return KeyRing.from_text(text)
    except BadKey as exc:
        raise ConfigError(f"{where}: {path}: {exc}") from None


def _check_signing(settings: Settings, source: str) -> None:
    if not settings.signing_enabled:
        for name, value, default in (
            ("senders", settings.signing_senders, ()),
            ("address", settings.signing_address, None),
            ("verify", settings.signing_verify, "record"),
            ("log_sent", settings.signing_log_sent, False),
        ):
            if value != default:
                raise ConfigError(f"{source}: signing.{name}: needs signing.secret_file (the keys)")
        return
    read_keys(str(settings.signing_secret_file), source)
    patterns = {a.pattern for a in settings.bounce_addresses}
    if settings.signing_address and settings.signing_address not in patterns:
        raise ConfigError(
            f"{source}: signing.address: {settings.signing_address!r} must also be in bounce.addresses "
            "(or bounces to it would not be examined)"
        )
    if settings.signing_senders and not settings.signing_addresses():
        raise ConfigError(
            f"{source}: signing.senders: signing needs a VERP pattern in bounce.addresses "
            "(e.g. 'bounces+*@example.com') or signing.address"
        )


def load_settings(path: str | None = None, overrides: Mapping[str, object] | None = None) -> Settings:
    """Defaults, then the file (if any), then `overrides` (Settings field names, e.g. from CLI flags).

    An override of None (or an empty list for bounce_addresses) means "not given" so that click's defaults can
    be passed straight through.
    """
    values: dict[str, Any] = _from_file(path, _read(path)) if path is not None else {}
    settings = replace(Settings(), **values)
    source = path if path is not None else "defaults"
    if overrides:
        known = {f.name for f in fields(Settings)}
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            flag = OVERRIDE_NAMES.get(name, name)
            if name not in known:
                raise ConfigError(f"command line: {flag}: unknown setting")
            if value is None or (name in _LIST_OVERRIDES and isinstance(value, list | tuple) and not value):
                continue
            check = FIELD_VALIDATORS.get(name)
            try:
                changes[name] = check(value) if check else value
            except ValueError as exc:
                raise ConfigError(f"command line: {flag}: {exc}") from None
        if "socket" in changes and not changes["socket"].startswith(("unix:", "local:")):
            # --socket inet:... over a file written for a unix socket: the file's mode and group were for that
            # socket, so they go with it instead of making the override fail
            changes.update(socket_mode=None, socket_group=None)
        if changes:
            settings = replace(settings, **changes)
            source = f"{source} + command line" if path is not None else "command line"
    _cross_check(settings, source)
    return settings
