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


class _SmtpCapture:
    """A loopback SMTP listener that answers 250 to everything and keeps the MAIL FROM lines."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.mail_from: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rwb") as f:

            def reply(text: bytes) -> None:
                f.write(text + b"\r\n")
                f.flush()

            reply(b"220 capture")
            while line := f.readline():
                verb = line[:4].upper()
                if verb == b"MAIL":
                    self.mail_from.append(line.decode().strip())
                if verb == b"DATA":
                    reply(b"354 go on")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                if verb == b"QUIT":
                    reply(b"221 bye")
                    return
                reply(b"250 ok")


def test_the_deploy_guide_swaks_line_sends_a_null_sender() -> None:
    import shlex
    import shutil
    import subprocess

    import pytest

    if shutil.which("swaks") is None:
        pytest.skip("swaks not installed (tests/run.sh installs it)")
    guide = (REPO / "deploy/postfix/README.md").read_text()
    (line,) = [x.strip() for x in guide.splitlines() if x.strip().startswith("swaks ")]
    argv = shlex.split(line)
    argv[argv.index("--server") + 1] = f"127.0.0.1:{(cap := _SmtpCapture()).port}"
    subprocess.run(argv, cwd=REPO, capture_output=True, timeout=30, check=True)
    cap.thread.join(10)
    assert cap.mail_from == ["MAIL FROM:<>"]


def test_the_documented_database_is_the_one_datasette_metadata_describes() -> None:
    # Datasette names a database by its file's stem: metadata keyed otherwise silently describes nothing
    import json

    keys = set(json.loads((REPO / "deploy/datasette/metadata.json").read_text())["databases"])
    texts = [REPO / "README.md", *(REPO / "deploy").rglob("*"), REPO / "conf/bouncemilter.toml", *REPO.glob("docs/*")]
    paths = set()
    for path in texts:
        if path.is_file():
            paths.update(re.findall(r"/var/lib/bouncemilter/[\w.-]+\.db\b", path.read_text(errors="replace")))
    assert paths, "no production database path documented"
    assert {Path(p).stem for p in paths} <= keys, (paths, keys)
    assert Path(Settings().db).stem in keys


def test_systemd_unit() -> None:
    import shutil
    import subprocess

    unit = (REPO / "deploy/systemd/bouncemilter.service").read_text()
    directives = {line.partition("=")[0]: line.partition("=")[2] for line in unit.splitlines() if "=" in line}
    assert directives["Type"] == "notify"  # READY=1 is sent once the socket listens (tests/test_daemon.py)
    assert directives["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert directives["RestartPreventExitStatus"] == "2"  # a config error (exit 2) must not restart in a loop
    assert directives["UMask"] == "0027"
    for hardening in (
        "SystemCallFilter=@system-service",
        "ProtectClock=yes",
        "ProtectKernelLogs=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "ProtectProc=invisible",
        "RemoveIPC=yes",
    ):
        assert hardening in unit.splitlines()
    if shutil.which("systemd-analyze"):
        out = subprocess.run(
            ["systemd-analyze", "verify", str(REPO / "deploy/systemd/bouncemilter.service")],
            capture_output=True,
            text=True,
        )
        problems = [x for x in (out.stdout + out.stderr).splitlines() if x.strip() and "is not executable" not in x]
        assert problems == []


def test_production_setup_never_installs_an_mta_or_build_tools() -> None:
    # apt removes Sendmail or Exim to install Postfix; a production host needs no compiler or test tools
    setup = (REPO / "deploy/setup.sh").read_text()
    installs = " ".join(re.findall(r"^for pkg in ([^;]+);", setup, re.M))
    assert installs and not re.search(r"\b(postfix|exim4?|sendmail|swaks|gcc|libmilter-dev|e2fsprogs)\b", installs)
    pip = [line for line in setup.splitlines() if '/pip" install' in line]
    assert pip and all(" -e " not in line and "[test]" not in line for line in pip)
    # the test prerequisites live with the tests, and CI calls exactly the README's test command
    assert "postfix" in (REPO / "tests/run.sh").read_text()
    ci = [x for x in (REPO / ".ci/run").read_text().splitlines() if x and not x.startswith(("#", "set ", "cd "))]
    assert ci[0] == "bash tests/run.sh"


def test_postfix_tests_skip_with_the_reason_where_another_mta_is_installed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e import postfix_rig

    monkeypatch.setattr(postfix_rig.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(postfix_rig, "other_mta", lambda: "exim4")
    reason = postfix_rig.postfix_available()
    assert reason is not None and "exim4" in reason and "remove" in reason


DOCS = [REPO / "README.md", REPO / "docs/performance.md", REPO / "deploy/postfix/README.md"]


def test_every_repository_path_the_docs_name_exists() -> None:
    pattern = re.compile(r"(?<![\w/.])((?:bench|deploy|conf|tests|docs|bouncemilter)/[\w./-]+\.\w+)")
    missing = []
    for doc in DOCS:
        for path in pattern.findall(doc.read_text()):
            if not (REPO / path).exists():
                missing.append(f"{doc.name}: {path}")
    assert missing == []
    assert "design.md" not in (REPO / "README.md").read_text()  # not in this repository


def _command_lines() -> list[list[str]]:
    """The arguments after `bouncemilter` of every command in the docs' shell blocks."""
    import shlex

    out = []
    for doc in DOCS:
        # commands in the text too, e.g. `bouncemilter prune --older-than 400`
        inline = re.findall(
            r"`((?:\.venv/bin/)?bouncemilter [^`]+)`", re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        )
        for info, text in [*code_blocks(doc), *(("sh", c) for c in inline)]:
            if info not in ("sh", "console", ""):
                continue
            for line in text.replace("\\\n", " ").splitlines():
                if info == "console" and not line.startswith("$ "):
                    continue  # output
                line = line.strip().removeprefix("$ ")
                if "bouncemilter" not in line or line.startswith("#"):
                    continue
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                try:
                    tokens = list(lexer)
                except ValueError:  # a quoted string that goes on over lines (SQL for sqlite3): not ours
                    assert not line.split()[0].endswith("bouncemilter"), f"{doc.name}: unbalanced quotes: {line}"
                    continue
                words: list[str] = []
                for token in [*tokens, ";"]:
                    if token in ("|", "||", "&&", ";", ">", "<", ">>", "&", "(", ")", "$("):
                        while words and "=" in words[0] and not words[0].startswith("-"):
                            words = words[1:]  # VAR=value before a command
                        if len(words) > 1 and (words[0] == "bouncemilter" or words[0].endswith("bin/bouncemilter")):
                            out.append(words[1:])
                        words = []
                    else:
                        words.append(token)
    return out


def test_every_documented_command_line_parses() -> None:
    # the commands and options the docs show exist, with values of the right type (nothing is run)
    import click

    from bouncemilter.cli import main

    lines = _command_lines()
    assert len(lines) > 30
    for args in lines:
        name = args[0]
        cmd = main.get_command(click.Context(main), name)
        assert cmd is not None, args
        try:
            cmd.make_context(name, args[1:], resilient_parsing=False)
        except click.exceptions.Exit:
            pass
        except click.UsageError as exc:
            raise AssertionError(f"{args}: {exc}") from None
