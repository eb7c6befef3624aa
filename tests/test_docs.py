"""The documentation stays true: the settings and paths it gives are the ones the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from bouncemilter.config import Settings

REPO = Path(__file__).resolve().parents[1]


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(info string, text) of every fenced block of a Markdown file."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", path.read_text(), re.M | re.S)]


def main_cf_settings(text: str) -> dict[str, str]:
    """name -> value of main.cf lines (comments after a value are the README's, not Postfix's)."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def readme_main_cf() -> dict[str, str]:
    blocks = [text for _, text in code_blocks(REPO / "README.md") if re.search(r"^smtpd_milters\s*=", text, re.M)]
    assert blocks, "the README has no main.cf block"
    return main_cf_settings(blocks[0])


def test_main_cf_sets_the_verp_delimiter() -> None:
    # Without recipient_delimiter Postfix answers 554 "no valid recipients" to every VERP bounce.
    separator = Settings().verp_separator
    for settings in (readme_main_cf(), main_cf_settings((REPO / "deploy/postfix/main.cf").read_text())):
        assert separator in settings.get("recipient_delimiter", ""), settings
        assert settings["internal_mail_filter_classes"] == "bounce"
        assert settings["non_smtpd_milters"]
