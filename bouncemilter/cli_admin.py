"""Commands for running a host: check-config, doctor, prune, backup."""

from __future__ import annotations

import sys

import click

from .cli_common import resolve_config
from .config import ConfigError, load_settings, render


@click.command("check-config")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    callback=resolve_config,
    help="The file to check (default: $BOUNCEMILTER_CONFIG, else /etc/bouncemilter/bouncemilter.toml).",
)
def check_config_cmd(config_path: str | None) -> None:
    """Validate the configuration and print the effective settings (exit 0 valid, 2 invalid).

    \b
    Examples:
      bouncemilter check-config
      bouncemilter check-config --config /etc/bouncemilter/bouncemilter.toml.new && systemctl reload bouncemilter
    """
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"bouncemilter: {exc}", err=True)
        sys.exit(2)
    click.echo(f"# {config_path or 'no file: embedded defaults'}: valid. Effective settings:\n")
    click.echo(render(settings), nl=False)


def register(group: click.Group) -> None:
    for cmd in (check_config_cmd,):
        group.add_command(cmd)
