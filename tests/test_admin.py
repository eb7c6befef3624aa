"""Admin commands: check-config, the default config path, prune, backup."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import config
from bouncemilter.cli import main
from bouncemilter.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_check_config_prints_the_effective_settings_which_load_back(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text(
        '[milter]\nsocket = "unix:/run/b/m.sock"\nsocket_mode = "0660"\n[bounce]\n'
        'addresses = ["bounces+*@example.com"]\n[actions]\nauto_reply = "discard"\n'
        '[fetch]\nurl = "imaps://bounces@imap.example.com/INBOX"\n[fetch.after]\nhard = "delete"\n'
    )
    res = cli("check-config", "--config", str(path))
    assert res.exit_code == 0, res.output
    assert f"# {path}: valid" in res.output
    assert 'addresses = ["bounces+*@example.com"]' in res.output and "socket_mode = 0o660" in res.output
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(res.output)
    assert load_settings(str(rendered)) == load_settings(str(path))
    assert load_settings(str(REPO / "conf/bouncemilter.toml")) == Settings()


def test_check_config_names_the_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text("[milter]\nsocket_mode = 660\n")
    res = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert res.exit_code == 2
    assert f"{path}: milter.socket_mode" in res.output


def test_default_config_path_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc.toml"
    etc.write_text(f'[store]\ndb = "{tmp_path / "etc.db"}"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text(f'[store]\ndb = "{tmp_path / "env.db"}"\n')
    monkeypatch.setattr(config, "DEFAULT_PATH", str(etc))
    monkeypatch.delenv("BOUNCEMILTER_CONFIG")
    assert config.config_path(None) == str(etc)  # a configured host needs no --config
    assert f"# {etc}: valid" in cli("check-config").output
    assert f"# {env_file}: valid" in cli("check-config", env={"BOUNCEMILTER_CONFIG": str(env_file)}).output
    assert "embedded defaults" in cli("check-config", env={"BOUNCEMILTER_CONFIG": ""}).output
    assert config.config_path("given.toml") == "given.toml"
    # a data command reads the same file: its database is the one named there
    res = CliRunner().invoke(main, ["suppressed"])
    assert res.exit_code != 0 and str(tmp_path / "etc.db") in res.output
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent.toml"))
    assert config.config_path(None) is None
