"""`bouncemilter sign` and `bouncemilter verify`: signed return paths for applications and for people."""

from __future__ import annotations

import json
import sys

import click

from . import signing
from .cli_common import ConfigProblem, config_options, load, printable
from .cli_suppress import _address
from .config import ConfigError, Settings, read_keys
from .unsubscribe import build_matcher


def _keys(settings: Settings) -> signing.KeyRing:
    if not settings.signing_enabled:
        raise ConfigProblem("signing is off: set [signing] secret_file in the configuration")
    try:
        return read_keys(str(settings.signing_secret_file))
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from exc


def _check_recipient(recipient: str) -> None:
    """A usage error for what is not an address ('a@', 'a b@c', a control character): signing.sign() would quietly
    leave it out and print a message token, and the application would never know."""
    try:
        _address(recipient)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="RECIPIENT") from None


def _note_token_only(signed: str, recipient: str, encoding: str) -> None:
    """A real address that cannot be written into the VERP local part (too long, non-ASCII) gets a message token
    (bounces then name their recipient only in the report): say so, on stderr."""
    if signing.normalise_recipient(recipient).replace("@", encoding) not in signed:
        click.echo(
            f"bouncemilter: note: {printable(recipient)!r} does not fit in a VERP local part (64 characters, plain "
            "ASCII): the return path carries a message token instead",
            err=True,
        )


@click.command("sign")
@config_options
@click.option("--sender", metavar="ADDR", help="The envelope sender: picks the VERP pattern of its domain.")
@click.option(
    "--unsubscribe",
    is_flag=True,
    help="Sign an unsubscribe address for List-Unsubscribe (the first VERP pattern of [unsubscribe] addresses).",
)
@click.argument("recipient", required=False)
def sign_cmd(
    config_path: str | None, db: str | None, sender: str | None, unsubscribe: bool, recipient: str | None
) -> None:
    """Print a signed return path for RECIPIENT (VERP + token); without RECIPIENT a message token, for mail
    to several recipients. For applications that set their own return path.

    \b
    Examples:
      bouncemilter sign --config /etc/bouncemilter/bouncemilter.toml alice@example.org
      sendmail -f "$(bouncemilter sign --config /etc/bouncemilter/bouncemilter.toml alice@example.org)" ...
      bouncemilter sign --unsubscribe alice@example.org    # for List-Unsubscribe: <mailto:...?subject=unsubscribe>
    """
    settings = load(config_path, db)
    keys = _keys(settings)
    if unsubscribe:  # the same tokens as a return path's (issue #11): verified the same way when the request comes
        patterns = [a.pattern for a in settings.unsubscribe_addresses if a.kind == "verp"]
        if not patterns:
            raise click.ClickException("no VERP pattern to sign with: add one to [unsubscribe] addresses")
        if recipient is None:
            raise click.BadParameter("an unsubscribe address names its subscriber", param_hint="RECIPIENT")
        _check_recipient(recipient)
        signed = signing.sign(keys, patterns[0], recipient, separator=settings.verp_separator,
                              encoding=settings.verp_encoding)  # fmt: skip
        _note_token_only(signed, recipient, settings.verp_encoding)
        click.echo(signed)
        return
    addresses = settings.signing_addresses()
    if not addresses:
        raise click.ClickException("no VERP pattern to sign with: add one to [bounce] addresses or [signing] address")
    if recipient is not None:
        _check_recipient(recipient)
    signer = signing.Signer(keys, (), addresses, settings.verp_separator, settings.verp_encoding)
    bounce_address = signer.bounce_address(sender) if sender else addresses[0]
    signed = signing.sign(
        keys, bounce_address, recipient, separator=settings.verp_separator, encoding=settings.verp_encoding
    )
    if recipient is not None:
        _note_token_only(signed, recipient, settings.verp_encoding)
    click.echo(signed)


@click.command("verify")
@config_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("address")
def verify_cmd(config_path: str | None, db: str | None, fmt: str, address: str) -> None:
    """Check a return path: is it signed by one of our keys, for whom, and since when? Exit status 0 when it
    verifies, 1 when it does not.

    \b
    Example:
      bouncemilter verify --config /etc/bouncemilter/bouncemilter.toml 'bounces+alice=example.org+...@example.com'
    """
    settings = load(config_path, db)
    keys = _keys(settings)
    match = build_matcher(settings).match(address)  # an unsubscribe address verifies like a return path
    if match is None:
        check = signing.Check(signing.UNSIGNED, "not one of the configured bounce or unsubscribe addresses")
    else:
        check = signing.verify(keys, match.token, match.verp_recipient, max_age_days=settings.signing_max_age_days)
    if fmt == "json":
        out = {"address": address, "status": check.status, "ok": check.ok, "why": check.why}
        out.update({"recipient": check.recipient, "key": check.key_index + 1, "age_days": check.age_days})
        click.echo(json.dumps(out))
    else:
        who = f" for {check.recipient}" if check.recipient else ""
        click.echo(f"{check.status}{who}: {check.why}")
    sys.exit(0 if check.ok else 1)


def register(group: click.Group) -> None:
    group.add_command(sign_cmd)
    group.add_command(verify_cmd)
