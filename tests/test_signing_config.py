"""[signing] settings and the `sign` / `verify` commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from bouncemilter.config import ConfigError, load_settings, read_keys
from bouncemilter.signing import verify
from bouncemilter.verp import BounceMatcher

KEY1 = "first test key 0123456789abcdef"
KEY2 = "second test key 0123456789abcdef"


def keyfile(tmp_path: Path, *keys: str, mode: int = 0o640) -> Path:
    path = tmp_path / "keys"
    path.write_text("".join(k + "\n" for k in keys))
    os.chmod(path, mode)
    return path


def config(tmp_path: Path, signing: str, bounce: str = '["bounces+*@example.com", "bounces+*@example.org"]') -> str:
    path = tmp_path / "bm.toml"
    path.write_text(f'[store]\ndb = "{tmp_path / "bm.db"}"\n[bounce]\naddresses = {bounce}\n[signing]\n{signing}\n')
    return str(path)


def test_signing_section_loads(tmp_path: Path) -> None:
    keys = keyfile(tmp_path, KEY1, KEY2)
    s = load_settings(
        config(
            tmp_path,
            f'secret_file = "{keys}"\nsenders = ["@Example.com", "news@example.org"]\nverify = "reject"\n'
            'max_age_days = 10\naddress = "bounces+*@example.org"',
        )
    )
    assert s.signing_enabled and s.signing_senders == ("@example.com", "news@example.org")
    assert (s.signing_verify, s.signing_max_age_days) == ("reject", 10)
    assert s.signing_addresses() == ["bounces+*@example.org"]
    assert len(read_keys(str(keys))) == 2


def test_signing_off_by_default() -> None:
    s = load_settings(None)
    assert not s.signing_enabled and s.signing_verify == "record" and s.signing_max_age_days == 30


@pytest.mark.parametrize(
    ("signing", "bounce", "needle"),
    [
        ('senders = ["@example.com"]', None, "needs signing.secret_file"),
        ('verify = "reject"', None, "needs signing.secret_file"),
        ('secret_file = "{keys}"\nsenders = ["@example.com"]', '["bounces@example.com"]', "VERP pattern"),
        ('secret_file = "{keys}"\naddress = "bounces+*@example.net"', None, "must also be in bounce.addresses"),
        ('secret_file = "{keys}"\nsenders = ["example.com"]', None, "'@domain'"),
        ('secret_file = "{keys}"\nverify = "maybe"', None, "off, record, reject"),
        ('secret_file = "{keys}"\naddress = "bounces@example.com"', None, "VERP pattern"),
        ('secret_file = "{missing}"', None, "no such file"),
        ('secret_file = "{world}"', None, "readable by every local user"),
        ('secret_file = "{short}"', None, "at least 16 characters"),
    ],
)
def test_signing_errors(tmp_path: Path, signing: str, bounce: str | None, needle: str) -> None:
    keys = keyfile(tmp_path, KEY1)
    world = tmp_path / "world"
    world.write_text(KEY1 + "\n")
    os.chmod(world, 0o644)
    short = tmp_path / "short"
    short.write_text("tiny\n")
    os.chmod(short, 0o600)
    text = signing.format(keys=keys, missing=tmp_path / "nope", world=world, short=short)
    path = config(tmp_path, text, bounce) if bounce else config(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert needle in str(exc.value) and "signing." in str(exc.value)


def test_sign_command_prints_a_verifying_return_path(tmp_path: Path) -> None:
    keys = keyfile(tmp_path, KEY1)
    path = config(tmp_path, f'secret_file = "{keys}"')
    runner = CliRunner()
    res = runner.invoke(main, ["sign", "--config", path, "Alice@Example.net"])
    assert res.exit_code == 0, res.output
    rp = res.output.strip()
    assert rp.startswith("bounces+alice=example.net+") and rp.endswith("@example.com")
    s = load_settings(path)
    m = BounceMatcher(list(s.bounce_addresses)).match(rp)
    assert m is not None and verify(read_keys(str(keys)), m.token, m.verp_recipient).ok
    # the sender's domain picks the pattern; no recipient gives a message token
    res = runner.invoke(main, ["sign", "--config", path, "--sender", "news@example.org"])
    assert res.exit_code == 0 and res.output.strip().endswith("@example.org") and "=" not in res.output
    # the verify command agrees, and says why not
    assert runner.invoke(main, ["verify", "--config", path, rp]).exit_code == 0
    bad = rp.replace("+", "+x", 1)
    res = runner.invoke(main, ["verify", "--config", path, "bounces+alice=example.net@example.com"])
    assert res.exit_code == 1 and res.output.startswith("unsigned")
    res = runner.invoke(main, ["verify", "--config", path, bad])
    assert res.exit_code == 1


def test_sign_command_needs_signing(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text('[bounce]\naddresses = ["bounces+*@example.com"]\n')
    res = CliRunner().invoke(main, ["sign", "--config", str(path), "a@example.org"])
    assert res.exit_code == 2 and "secret_file" in res.output


def test_a_reload_rebuilds_signer_verifier_and_sent_log(tmp_path: Path) -> None:
    # milter.reload_runtime runs milter.reload_trust (RELOAD_HOOKS): what open_runtime built from [signing]
    # and [dns] is built again from the new settings; the DNS checker (and its cache) stays while [dns] does
    from bouncemilter.milter import open_runtime, reload_runtime

    keys = keyfile(tmp_path, KEY1)

    def settings(signing: str, dns: str = "") -> object:
        path = config(tmp_path, f'secret_file = "{keys}"\nsenders = ["@example.com"]\n{signing}')
        with open(path, "a") as fh:
            fh.write(f'[milter]\nsocket = "unix:{tmp_path / "s"}"\n[log]\ntarget = "none"\n{dns}')
        return load_settings(path)

    opened = open_runtime(settings('verify = "record"'))
    assert not isinstance(opened, int)
    rt, _ = opened
    try:
        checker, signer = rt.verifier.dns, rt.signer
        assert checker is not None and rt.sent_log is None and not rt.verifier.rejects
        reload_runtime(rt, settings('verify = "reject"\nlog_sent = true\nsent_retention_days = 9'))
        assert rt.verifier.rejects and rt.signer is not signer and rt.verifier.matcher is rt.matcher
        assert rt.sent_log is not None and rt.verifier.sent is rt.sent_log and rt.sent_log.retention_days == 9
        assert rt.verifier.dns is checker  # [dns] unchanged: the same checker and cache
        log = rt.sent_log
        reload_runtime(rt, settings('verify = "record"', "[dns]\nlookup_timeout = 1.5\n"))
        assert rt.sent_log is None and log._thread is None  # log_sent off: the writer was stopped
        assert rt.verifier.dns is not checker and rt.verifier.dns.lifetime == 1.5
        # an unusable key file fails the reload as a whole: settings and keys stay as they were
        running = (rt.settings, rt.signer, rt.verifier)
        os.chmod(keys, 0o644)
        with pytest.raises(ConfigError):
            reload_runtime(rt, rt.settings)
        assert (rt.settings, rt.signer, rt.verifier) == running
    finally:
        if rt.verifier is not None and rt.verifier.dns is not None:
            rt.verifier.dns.close()
        rt.store.close()
