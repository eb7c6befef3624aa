"""Every fenced block of the docs runs in a test, or is listed below with what it is (docs stay true).

How a block runs, by its info string:
- `sh`: each command, in a copy of a production host in a directory (tests/docs_sandbox.py; the docs' paths
  are moved below it by docblocks.PATHS), must exit 0 (or as EXIT says). Cron lines run their command with
  /bin/sh. Commands that change the host or need the outside world are in NOT_RUN with why; long-running ones
  (`bouncemilter run`, `fetch --watch`, `datasette`) are started, used, and stopped; benchmarks run `--help`.
- `console`: each `$ command` runs and its output must be what the block shows (timestamps, table widths and
  `...` aside; numbers too where LOOSE_NUMBERS says the example came from a bigger data set).
- `toml`: loaded by bouncemilter.config.load_settings on top of the host's config (the admin guide's blocks).
- `json`: compared with what the code really prints (JSON_SAMPLES).
- `python`: executed (with the names in PYTHON_NAMES defined).
- untyped: Postfix main.cf or master.cf lines are read back by a private `postconf -c DIR`; crontab lines run;
  anything else must be in UNTYPED (output shown after a command, a header, a diagram).
A new block that fits none of these fails test_every_block_is_run_or_classified.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bouncemilter.config import load_settings
from bouncemilter.signing import KeyRing
from bouncemilter.suppressions import open_store
from bouncemilter.unsubscribe import build_matcher

from . import docs_sandbox as sandbox
from .conftest import query_rows
from .docblocks import (
    REPO,
    Block,
    all_blocks,
    commands,
    cron_command,
    delocalize,
    json_shape,
    output_mismatch,
    programs,
    transcript,
)
from .docs_sandbox import Sandbox
from .e2e import messages as M

# ============================================================================================================
# The one place where the exceptions are listed. Blocks are named by (document, start of their first line).

# The admin guide's blocks that make the host's /etc/bouncemilter/bouncemilter.toml (step 2, step 5, opt-outs).
HOST_BLOCKS = [("README.md", "[milter]"), ("README.md", "[signing]"), ("README.md", "[unsubscribe]")]

# Commands that are not run, and why. Matched at the start of a command.
NOT_RUN = {
    "bash deploy/setup.sh": "the production install (as root: apt-get, useradd, a systemd unit); the config it "
    "writes is the one these tests use (docs_sandbox.installed_config) and test_docs checks what it installs",
    "bash tests/run.sh": "this test suite: CI runs exactly this line (.ci/run)",
    "pip install datasette": "changes the environment; the [test] extra has datasette, and the next line runs it",
    "python3 -m venv /tmp/bench-venv": "a benchmark's own environment with flufl.bounce from the package index",
    "sudo -u postgres psql": "creates roles and a database in the host's PostgreSQL; tests/test_store_transfer.py "
    "runs deploy/postgres/roles.sql on a private server",
    "bouncemilter migrate-store": "needs the fleet's PostgreSQL (db.example.com); tests/test_store_transfer.py runs "
    "migrate-store into a private one",
}

# Programs that change the host or reach outside it: a command using one must be in NOT_RUN (or get a safe form
# here) - it is never run as written.
SYSTEM = (
    "apt", "apt-get", "dpkg", "systemctl", "service", "useradd", "usermod", "groupadd", "chown", "postfix",
    "postconf", "sudo", "su", "git", "pip", "pip3", "curl", "wget", "swaks", "mount", "reboot", "crontab",
)  # fmt: skip

# Blocks that another test runs, because they need the private Postfix of tests/e2e.
ELSEWHERE = {
    ("README.md", "$ bouncemilter doctor"): "tests/e2e/test_docs_e2e.py::test_the_readme_doctor_example",
    ("deploy/postfix/README.md", "swaks --server"): "tests/e2e/test_docs_e2e.py::test_the_deploy_guide_test_bounce",
}

# Untyped blocks that are neither Postfix configuration nor crontab lines: (what, detail). "output": what the
# command of a block next to it prints (the command's start given; cut at a `>` redirection), "lines": some lines
# of what it prints.
UNTYPED = {
    ("README.md", "remote MTA --SMTP-->"): ("diagram", "the architecture: nothing to run"),
    ("README.md", "outbound: the submission/relay smtpd"): ("diagram", "signed return paths: nothing to run"),
    ("README.md", "List-Unsubscribe: <mailto:"): ("header", "checked against the [unsubscribe] addresses"),
    ("README.md", "200 new, 0 already stored"): ("output", "bouncemilter fetch --db bounces.db"),
    ("README.md", "dead@example.org\tREJECT"): ("lines", "bouncemilter suppressed --db /var/lib/bouncemilter/"),
    ("README.md", "BOUNCEMILTER CRITICAL - "): ("output", "bouncemilter check --db bounces.db"),
    ("README.md", "mx1: Postfix + bouncemilter"): ("diagram", "a fleet of MX hosts and one PostgreSQL: nothing to run"),
}

# Exit status other than 0 that a command has with the host's fixtures, and why that is right.
EXIT = {
    "bouncemilter check --db bounces.db --since 1h": (2, "CRITICAL, as the output after it shows"),
    "bouncemilter import-suppressions esp-suppressions.csv": (1, "it skips rows, and says so by its exit status"),
}

# Examples taken from bigger data than the fixtures: their numbers are not compared.
LOOSE_NUMBERS = {
    "bouncemilter import-suppressions esp-suppressions.csv": "an export of 12,480 rows; the fixture has 5",
    "bouncemilter import-suppressions mailchimp-unsubscribed.csv": "an export of 4,210 rows; the fixture has 2",
    "bouncemilter import --config": "a mailbox of 2,250 messages; the fixture has 4",
    "bouncemilter import --db bounces.db": "a mailbox of 10,000 messages; the fixture has 4",
    "200 new, 0 already stored": "a mailbox of 200 messages; the fixture has 5",
}

# Placeholders the docs leave to the reader, as the test fills them in.
ENV = {"ADDRESS": "carol@example.org"}  # the one-click handler's address (from the checked token)
SECRETS = {"'the mailbox password'": "'s3cret'", "BM_PASS=...": "BM_PASS=s3cret"}  # the private Dovecot's
MAILBOX_HOSTS = ("outlook.office365.com", "imap.gmail.com", "pop.example.net")  # -> the private Dovecot

# JSON samples, by a text they contain: what really prints them, and how they compare ("equal", or "shape":
# the same keys with values of the same types, and the same kind, reason, recipients, hard, action, detector).
JSON_SAMPLES = {
    '"source": "bouncemilter/samples/hard-bounce.eml"': ("equal", "classify"),  # classify --format jsonl
    '"event": "message"': ("shape", "milter log"),  # the line `bouncemilter run` writes for a hard bounce
}

# Programs besides bouncemilter that the docs' commands use: a host without them skips those (CI has them all).
TOOLS = ("jq", "sqlite3", "openssl", "postmap", "datasette")

# Names a `python` block uses without defining them.
PYTHON_NAMES = {"raw_bytes": lambda: (REPO / "bouncemilter/samples/hard-bounce.eml").read_bytes()}

# ============================================================================================================


def head_matches(block: Block, table: dict) -> Any:
    for (doc, head), value in table.items():
        if block.doc == doc and block.head.startswith(head.strip()):
            return value
    return None


def is_main_cf(text: str) -> bool:
    lines = [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    return bool(lines) and all(re.match(r"^[a-z_0-9]+ = ", x) for x in lines)


def is_master_cf(text: str) -> bool:
    lines = [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    types = ("inet", "unix", "unix-dgram", "fifo", "pass")
    return bool(lines) and all(len(x.split()) >= 8 and x.split()[1] in types for x in lines)


def is_crontab(text: str) -> bool:
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith("#")]
    return bool(lines) and all(cron_command(x) for x in lines)


def plan(block: Block, blocks: list[Block]) -> str:
    """How `block` is checked; raises LookupError for a block nothing checks."""
    if head_matches(block, ELSEWHERE):
        return "elsewhere"
    if block.info in ("sh", "console", "toml", "python"):
        return block.info
    if block.info == "json":
        if any(key in block.text for key in JSON_SAMPLES):
            return "json"
        raise LookupError("a JSON block that JSON_SAMPLES does not know")
    if is_main_cf(block.text):
        return "main.cf"
    if is_master_cf(block.text):
        return "master.cf"
    if is_crontab(block.text):
        return "crontab"
    what = head_matches(block, UNTYPED)
    if what is None:
        raise LookupError("an untyped block that is not Postfix configuration or a crontab, and not in UNTYPED")
    if what[0] in ("output", "lines"):
        producer(block, blocks)
    return what[0]


def producer(block: Block, blocks: list[Block]) -> tuple[Block, str]:
    """The block next to an output block whose command prints it, and that command (cut at a `>`)."""
    _, start = head_matches(block, UNTYPED)
    near = sorted((b for b in blocks if b.doc == block.doc and b.info == "sh"), key=lambda b: abs(b.line - block.line))
    for b in near[:2]:
        for command in commands(b.text):
            if command.startswith(start):
                return b, re.split(r"\s>\s", command)[0]
    raise LookupError(f"no block next to it runs `{start}`")


BLOCKS = all_blocks()
RUN = ("sh", "console", "toml", "python", "json", "main.cf", "master.cf", "crontab", "header", "output", "lines")


def test_every_block_is_run_or_classified() -> None:
    problems = []
    for block in BLOCKS:
        try:
            plan(block, BLOCKS)
        except LookupError as exc:
            problems.append(f"{block.id} ({block.head!r}): {exc}")
    assert problems == [], "give these blocks an info string that runs, or list them in tests/test_docs_blocks.py"
    assert len(BLOCKS) > 40


def test_the_exceptions_name_blocks_that_exist() -> None:
    # an entry whose block was edited away would silently excuse nothing
    for table in (ELSEWHERE, UNTYPED):  # type: ignore[assignment]
        for key in table:
            assert any(b.doc == key[0] and b.head.startswith(key[1].strip()) for b in BLOCKS), key
    for key in HOST_BLOCKS:
        assert any(b.doc == key[0] and b.head.startswith(key[1]) and b.info == "toml" for b in BLOCKS), key
    texts = "\n".join(b.text for b in BLOCKS)
    for table in (NOT_RUN, EXIT, LOOSE_NUMBERS, SECRETS):
        for key in table:
            assert key in texts, key
    for target in set(ELSEWHERE.values()):
        path, _, name = target.partition("::")
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), target


# -- the host ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="bm-docs-", dir="/tmp"))  # short: unix socket paths live below it
    host = [b for key in HOST_BLOCKS for b in BLOCKS if b.doc == key[0] and b.head == key[1] and b.info == "toml"]
    try:
        yield sandbox.build(root / "t", host)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def box(template: Sandbox) -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="bm-docs-", dir="/tmp"))
    try:
        yield template.copy(root / "h")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- running a command ---------------------------------------------------------------------------------------


def localized(box: Sandbox, command: str) -> str:
    for documented, test in SECRETS.items():
        command = command.replace(documented, test)
    return box.localize(command)


def expected_exit(command: str) -> int:
    return next((code for prefix, (code, _) in EXIT.items() if command.startswith(prefix)), 0)


def not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def run_command(box: Sandbox, command: str, request: pytest.FixtureRequest) -> str:
    """Run one documented command in the sandbox (see the module's docstring); its output (stdout + stderr)."""
    for tool in TOOLS:
        used = re.search(rf"(^|[|;&(]\s*){tool}\b", command)
        if used and not shutil.which(tool, path=box.env["PATH"] + ":/usr/sbin"):
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed: tests/run.sh installs it")
            pytest.skip(f"{tool} not installed (tests/run.sh installs it)")
    if "postgresql://" in command:
        url = postgres(request)
        command = re.sub(r"postgresql://\S+", url, command)
    system = set(programs(cron_command(command)[1] if cron_command(command) else command)) & set(SYSTEM)
    assert not system, f"{command}: {sorted(system)} would change this host: give it a safe form or list it in NOT_RUN"
    cron = cron_command(command)
    if cron:
        _, cmd = cron
        assert "%" not in cmd.replace(r"\%", ""), f"cron ends the command at an unescaped %: {cmd}"
        out = box.sh(localized(box, cmd), shell="/bin/sh", stderr=subprocess.STDOUT)
        assert out.returncode == 0, f"{command}\n{out.stdout}"
        return out.stdout
    words = shlex.split(command, comments=True)
    if len(words) > 1 and re.search(r"python3?$", words[0]) and words[1].startswith("bench/"):
        return benchmark_help(box, words)
    if words[0].endswith("bouncemilter") and words[1] == "run":
        return run_milter(box, command)
    if words[0].endswith("bouncemilter") and words[1] == "fetch" and "--watch" in words:
        return run_watch(box, command)
    if words[0] == "datasette":
        return run_datasette(box, command)
    # stdout and stderr in one pipe: in the order a terminal shows them (click flushes every line)
    out = box.sh(localized(box, command), input="", stderr=subprocess.STDOUT)
    code = expected_exit(command)
    assert out.returncode == code, f"{command}\nexit {out.returncode}, not {code}\n{out.stdout}"
    return delocalize(out.stdout, box.root)


def postgres(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL URL from the suite's server (the pg_url fixture of issue #10), else skip."""
    try:
        return request.getfixturevalue("pg_url")
    except pytest.FixtureLookupError:
        pytest.skip("needs the suite's PostgreSQL server (fixture pg_url, issue #10): not in this checkout")


def benchmark_help(box: Sandbox, words: list[str]) -> str:
    # a benchmark runs for minutes and prints figures (bench/ is not a test): its --help must know the options
    out = box.sh(f".venv/bin/python {words[1]} --help")
    assert out.returncode == 0, out.stderr
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in out.stdout, f"{words[1]} has no option {word}"
        elif not word.startswith("../"):  # ../shared: the evaluation corpus, beside the checkout
            assert (box.work / word).exists(), word
    return ""


def first_address(patterns: list[str]) -> str:
    pattern = patterns[0]
    return pattern.replace("*", "alice=example.org") if not pattern.startswith("@") else f"bounces{pattern}"


def run_milter(box: Sandbox, command: str) -> str:
    """`bouncemilter run ...`: it listens, records the sample bounce sent to it over the milter protocol, and
    stops cleanly on SIGTERM (what systemd does)."""
    log = Path(tempfile.mkstemp(dir=box.root / "tmp", suffix=".log")[1])
    with sandbox.milter(box, localized(box, command), log) as proc:
        start = sandbox.wait_listening(proc, log)
        raw = (REPO / "bouncemilter/samples/hard-bounce.eml").read_bytes()
        assert sandbox.send_over_milter(start["socket"], raw, first_address(start["bounce_addresses"]), "4QRUN") == "a"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    (message,) = [x for x in lines if x["event"] == "message"]
    assert message["kind"] == "bounce" and message["recipients"][0]["recipient"] == "alice@example.org"
    if "://" not in start["db"]:  # SQLite: the row is there (another store's rows are its own tests' business)
        db = Path(start["db"]) if os.path.isabs(start["db"]) else box.work / start["db"]
        sql = "SELECT r.address FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = '4QRUN'"
        assert query_rows(db, sql)[0][0] == "alice@example.org"
    return ""


def run_watch(box: Sandbox, command: str) -> str:
    """`fetch --watch`: it stays connected after its first pass (what it read is stored), until SIGTERM."""
    log = box.root / "tmp/watch.log"
    with sandbox.milter(box, localized(box, command), log) as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and '"event": "fetch_watching"' not in log.read_text():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    return log.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_datasette(box: Sandbox, command: str) -> str:
    """`datasette DB -m metadata.json`: serves the views the README names, under the metadata's title."""
    port = 8001
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:  # taken on this host: another port, same command otherwise
            port = free_port()
            command = command.split("#")[0] + f" -p {port}"
    log = box.root / "tmp/datasette.log"
    with sandbox.milter(box, localized(box, command), log) as proc:
        url = f"http://127.0.0.1:{port}/bouncemilter/recent_bounces.json?_shape=array&hard=1"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    data = json.loads(resp.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
    assert data and all(row["hard"] == 1 for row in data), data
    return ""


# -- the tests -----------------------------------------------------------------------------------------------


def prepare(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    """What a block needs besides the host's fixtures."""
    box.extra_env.update(ENV)
    if "bouncemilter fetch" in block.text:
        fetch_mailbox(box, block, request)
    if "bouncemilter approve" in block.text:
        hold(box)


def fetch_mailbox(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    """The block's mailboxes on the private Dovecot: its hosts are the Dovecot's, certified by its test CA."""
    from .dovecot_rig import PASSWORD

    rig = request.getfixturevalue("dovecot")
    assert SECRETS["'the mailbox password'"] == f"'{PASSWORD}'"
    ports = {"imaps": rig.imaps, "imap": rig.imap, "pop3s": rig.pop3s, "pop3": rig.pop3}
    for url in re.findall(r"\b(?:imaps?|pop3s?)://\S+", block.text):
        scheme, _, rest = url.partition("://")
        user, _, host = rest.rpartition("@")
        host = host.split("/")[0]
        assert host in MAILBOX_HOSTS, url
        box.rewrites.append((f"@{host}", f"@localhost:{ports[scheme]}"))
        hard = [M.hard_bounce(f"f{n}-{scheme}", f"f{n}@example.org") for n in range(3)]
        soft = [M.soft_bounce(f"g{n}-{scheme}", f"g{n}@example.org") for n in range(2)]
        mail = [sandbox.delivered(raw, sandbox.when(1)) for raw in hard + soft]
        rig.deliver(mail, user=user.split("@")[0] if scheme.startswith("pop3") else user)
    token = "docs-token-" + os.urandom(6).hex()
    rig.tokens[token] = "bounces@example.com"
    (box.root / "var/lib/bouncemilter/token").write_text(token + "\n")
    box.extra_env["SSL_CERT_FILE"] = rig.ca
    first = re.search(r"\bimaps://\S+", block.text)
    assert first
    # the --watch line reads the mailbox from the config
    fetch = {"fetch": {"url": first.group(0), "password_file": "/etc/bouncemilter/imap-password"}}
    extra = tomllib.loads(box.localize(sandbox.dump_toml(fetch)))
    data = sandbox.merge_toml(tomllib.loads(box.config.read_text()), extra)
    box.config.write_text(sandbox.dump_toml(data))


@pytest.fixture(scope="module")
def dovecot():  # type: ignore[no-untyped-def]
    from .dovecot_rig import Dovecot, dovecot_available

    reason = dovecot_available()
    if reason:
        pytest.skip(f"the fetch examples need a private Dovecot: {reason}")
    rig = Dovecot().start()
    try:
        yield rig
    finally:
        rig.stop()


def hold(box: Sandbox) -> None:
    """Held suppressions for the approve/reject examples: one report (message 4711) from 203.0.113.9 names
    zed, alice, bob and walt (one suppression per report: zed's; the rest held); a second one from there
    names vic and uma (uma held)."""
    from dataclasses import replace

    from bouncemilter.ingest import Envelope, ingest
    from bouncemilter.policy import Policy

    from .test_caps import dsn

    settings = replace(box.settings(), limit_suppressions_per_message=1)
    (top,) = box.query("SELECT MAX(id) FROM messages")[0]
    assert top < 4710
    with open_store(str(box.db)) as store:
        store.suppressions.policy = Policy.from_settings(settings)
        # message ids are row ids: a placeholder row makes the first report 4711, as in the README
        store._ensure_open().execute(
            "INSERT INTO messages (id, received_at, kind, dedup_key) VALUES (4710, '2026-01-01T00:00:00.000Z', "
            "'not_bounce', 'docs-placeholder')"
        )
        env = Envelope(client_addr="203.0.113.9", bounce_addresses=["bounces@example.com"])
        names = ["abe", "alice", "bob", "walt"]
        row = ingest(dsn("held-1", [f"{n}@example.org" for n in names]), env, settings, store).row_id
        assert row == 4711
        ingest(dsn("held-2", ["uma@example.org", "vic@example.org"]), env, settings, store)
    held = box.query("SELECT address FROM pending_suppressions ORDER BY address")
    assert [a for (a,) in held] == ["alice@example.org", "bob@example.org", "vic@example.org", "walt@example.org"]


def runnable(block: Block) -> bool:
    try:
        return plan(block, BLOCKS) in RUN
    except LookupError:
        return False  # test_every_block_is_run_or_classified says so


@pytest.mark.parametrize("block", [b for b in BLOCKS if runnable(b)], ids=lambda b: b.id)
def test_block(block: Block, box: Sandbox, request: pytest.FixtureRequest) -> None:
    kind = plan(block, BLOCKS)
    prepare(box, block, request)
    CHECKERS[kind](box, block, request)
    for head, after in AFTER.items():
        if block.head.startswith(head):
            after(box)


def check_sh(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    ran, reasons = 0, []
    for command in commands(block.text):
        why = not_run(command)
        if why:
            reasons.append(f"{command.split('#')[0].strip()}: {why}")
            continue
        run_command(box, command, request)
        ran += 1
    if not ran:
        pytest.skip("nothing here runs in a test: " + "; ".join(reasons))


def check_output(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    """An output block: what the command of the block next to it prints."""
    source, command = producer(block, BLOCKS)
    prepare(box, source, request)
    for before in commands(source.text):  # what the block does first (e.g. install the password file)
        if before.startswith(command):
            break
        if not not_run(before):
            run_command(box, before, request)
    out = run_command(box, command, request).splitlines()
    numbers = any(block.head.startswith(k) for k in LOOSE_NUMBERS)
    shown = block.text.splitlines()
    if head_matches(block, UNTYPED)[0] == "output":
        mismatch = output_mismatch(shown, out, numbers)
        assert mismatch is None, f"{block.id}: {command}\n{mismatch}"
        return
    for line in shown:  # "lines": each is one of the output's
        assert any(output_mismatch([line], [x], numbers) is None for x in out), f"{block.id}: {line!r} not in {out}"


def check_console(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    for command, expected in transcript(block.text):
        assert not not_run(command), command
        out = run_command(box, command, request)
        numbers = any(command.startswith(k) for k in LOOSE_NUMBERS)
        if expected and expected[0].lstrip().startswith("{"):
            assert_json_lines(expected, out.splitlines())
            continue
        mismatch = output_mismatch(expected, out.splitlines(), numbers)
        assert mismatch is None, f"{block.id}: $ {command}\n{mismatch}"


def assert_json_lines(expected: list[str], actual: list[str]) -> None:
    """JSON lines: the same number of objects, each with the keys and value types the docs show."""
    want = [json.loads(x) for x in expected if x.strip()]
    got = [json.loads(x) for x in actual if x.strip()]
    assert [json_shape(x) for x in got] == [json_shape(x) for x in want], (want, got)
    for w, g in zip(want, got, strict=True):
        assert g.get("op") == w.get("op"), (w, g)


def check_toml(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    base = tomllib.loads(box.config.read_text())
    data = sandbox.merge_toml(base, tomllib.loads(box.localize(block.text)))
    path = box.root / "tmp/block.toml"
    path.write_text(sandbox.dump_toml(data))
    load_settings(str(path))  # unknown keys and bad values are errors


def check_python(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    import contextlib as cl
    import io

    names = {name: make() for name, make in PYTHON_NAMES.items() if re.search(rf"\b{name}\b", block.text)}
    out = io.StringIO()
    with cl.redirect_stdout(out):
        exec(compile(block.text, block.id, "exec"), names)  # the README's own example
    assert out.getvalue().strip(), "the example prints nothing"
    assert "alice@example.org userunknown True" in out.getvalue()


def classify_output(box: Sandbox) -> dict:
    out = box.sh("bouncemilter classify --format jsonl bouncemilter/samples/hard-bounce.eml")
    return json.loads(out.stdout.splitlines()[0])


def milter_log_line(box: Sandbox) -> dict:
    """The `message` line the template's real milter wrote for M.hard_bounce (alice, userunknown)."""
    for line in (box.root / "journal").read_text().splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("event") == "message" and rec.get("hard"):
                return rec
    raise AssertionError("no message line in the journal")


PRODUCERS = {"classify": classify_output, "milter log": milter_log_line}


def check_json(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    how, name = next(v for k, v in JSON_SAMPLES.items() if k in block.text)
    produce = PRODUCERS[name]
    text = block.text
    elided = re.search(r",\s*\.\.\.\s*}\s*$", text)
    if elided:  # "... }": more keys than the docs show
        text = text[: elided.start()] + "}"
    want, got = json.loads(text), produce(box)
    if how == "equal":
        assert got == want
        return
    shape = json_shape(got)
    assert {k: json_shape(v) for k, v in want.items()} == {k: shape[k] for k in want if k in shape}, (want, got)
    assert set(want) <= set(got), set(want) - set(got)
    for key in ("event", "level", "kind", "reason", "recipients", "hard", "action", "detector"):
        assert got[key] == want[key], key
    assert elided or set(got) == set(want)


def postfix_dir(box: Sandbox) -> Path:
    if shutil.which("postconf") is None and not Path("/usr/sbin/postconf").exists():
        pytest.skip("needs Postfix's postconf (tests/run.sh installs postfix where no other MTA is)")
    d = box.root / "postfix"
    d.mkdir(exist_ok=True)
    (d / "main.cf").write_text("")
    (d / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    return d


def postconf(d: Path, *args: str) -> subprocess.CompletedProcess:
    for name in ("main.cf", "master.cf"):  # Postfix waits up to 2 s for a config file modified this second
        os.utime(d / name, (time.time() - 10, time.time() - 10))
    return subprocess.run(["/usr/sbin/postconf", "-c", str(d), *args], capture_output=True, text=True, timeout=30)


def check_main_cf(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    """Pasted into a main.cf, every line is a Postfix parameter, read back with the value the docs mean."""
    d = postfix_dir(box)
    text = re.sub(r",\s*\.\.\.\s*$", "", block.text, flags=re.M)  # "permit_mynetworks, ...": the rest is yours
    (d / "main.cf").write_text(text)
    out = postconf(d, "-n")
    # postconf warns about a name that is no Postfix parameter ("unused parameter")
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    read = dict(line.split(" = ", 1) for line in out.stdout.splitlines() if " = " in line)
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name = line.split("=")[0].strip()
            # main.cf has no comments after a value: a '#' there becomes part of the value
            assert "#" not in read[name], f"{name} = {read[name]!r}: put the comment on a line of its own"


def check_master_cf(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    d = postfix_dir(box)
    (d / "master.cf").write_text(block.text)
    out = postconf(d, "-M")
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    services = {tuple(x.split()[:2]): x.split() for x in out.stdout.splitlines()}
    for line in block.text.splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split()
            assert services[tuple(fields[:2])][4] == fields[4] == "n", line  # not chrooted: the point of the block


def check_crontab(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    for line in block.text.splitlines():
        if line.strip():
            out = run_command(box, line, request)
            # "output only on failure": the host's last hour is CRITICAL (the check example), so it speaks
            assert re.match(r"BOUNCEMILTER (OK|WARNING|CRITICAL) - ", out), out


def check_header(box: Sandbox, block: Block, request: pytest.FixtureRequest) -> None:
    """The List-Unsubscribe header a sender publishes: its mailto: is one of the [unsubscribe] addresses and
    names the subscriber; one-click is RFC 8058's exact wording."""
    fields = dict(line.split(": ", 1) for line in block.text.splitlines() if ": " in line)
    mailto = re.search(r"<mailto:([^?>]+)", fields["List-Unsubscribe"])
    assert mailto
    match = build_matcher(box.settings()).match(mailto.group(1))
    assert match is not None and match.unsubscribe and match.verp_recipient == "alice@example.org"
    assert fields["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


CHECKERS = {
    "sh": check_sh,
    "console": check_console,
    "toml": check_toml,
    "python": check_python,
    "json": check_json,
    "main.cf": check_main_cf,
    "master.cf": check_master_cf,
    "crontab": check_crontab,
    "header": check_header,
    "output": check_output,
    "lines": check_output,
}


# -- what a block's commands must have done, where the docs say so ------------------------------------------


def key_file_made(box: Sandbox) -> None:
    path = box.root / "etc/bouncemilter/keys"
    assert path.stat().st_mode & 0o777 == 0o640  # umask 027: readable by the group, not by everyone
    assert len(KeyRing.from_text(path.read_text()).keys) == 1


def access_map_made(box: Sandbox) -> None:
    if shutil.which("postmap") is None and not Path("/usr/sbin/postmap").exists():
        pytest.skip("needs Postfix's postmap")
    out = subprocess.run(
        ["/usr/sbin/postmap", "-q", "dead@example.org", f"hash:{box.root}/etc/postfix/suppressed"],
        capture_output=True,
        text=True,
        env=box.env,
    )
    assert out.stdout.startswith("REJECT 5.1.1 Recipient suppressed: hard bounce (userunknown 5.1.1) since "), out


def pages_sent(box: Sandbox) -> None:
    mail = (box.root / "mail.out").read_text().split("mail -s bouncemilter error postmaster@example.com\n")
    assert len(mail) == 2  # one page: the journal's one error line
    assert json.loads(mail[1])["event"] == "reload_failed"


def cursor_kept(box: Sandbox) -> None:
    applied = (box.root / "var/lib/app/applied").read_text().splitlines()
    assert int((box.root / "var/lib/app/bm.cursor").read_text()) == json.loads(applied[-1])["next_cursor"] == 43


def png_written(box: Sandbox) -> None:
    assert (box.root / "tmp/b.png").read_bytes().startswith(b"\x89PNG\r\n")


# A block's first line -> what its commands must have done.
AFTER = {
    "umask 027; openssl rand -base64 32 > /etc/bouncemilter/keys": key_file_made,
    "bouncemilter suppressed --db /var/lib/bouncemilter/bouncemilter.db --format postfix": access_map_made,
    "# hard bounces of the last hour, and a page when the store fails": pages_sent,
    "# hard bounces in the last hour": pages_sent,
    "*/5 * * * * app  cur=$(cat /var/lib/app/bm.cursor": cursor_kept,
    "bouncemilter stats --db bounces.db": png_written,
}
