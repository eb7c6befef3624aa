"""The docs' fenced blocks, as tests/test_docs_blocks.py runs them: extraction, shell commands, console
transcripts, the mapping of production paths to a test directory, and output comparison.

Pure functions (no I/O besides reading the docs), so that the runner's rules are tested on their own.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def documents() -> list[Path]:
    """Every Markdown file whose blocks must run: the README, docs/*.md and the deploy guides."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "deploy").rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # of the opening fence
    info: str  # the fence's info string ("" for an untyped block)
    text: str  # dedented, with a final newline

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.info or 'untyped'}"

    @property
    def head(self) -> str:
        """The first non-blank line, stripped: what the registry of exceptions names a block by."""
        return next((x.strip() for x in self.text.splitlines() if x.strip()), "")


_FENCE = re.compile(r"^( *)```([\w-]*)[^\n]*\n(.*?)^ *```[ \t]*$", re.M | re.S)


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in _FENCE.finditer(text):
        indent = len(m.group(1))
        lines = [x[indent:] if x[:indent].strip() == "" else x for x in m.group(3).splitlines()]
        out.append(
            Block(str(path.relative_to(REPO)), text.count("\n", 0, m.start()) + 1, m.group(2), "\n".join(lines) + "\n")
        )
    return out


def all_blocks() -> list[Block]:
    return [b for doc in documents() for b in blocks(doc)]


# -- shell ----------------------------------------------------------------------------------------------------


def _complete(command: str) -> bool:
    """Whether `command` is a whole shell command (quotes closed, no continuation pending)."""
    stripped = command.rstrip()
    if stripped.endswith(("\\", "|", "&&", "||")):
        return False
    try:
        lexer = shlex.shlex(stripped, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:  # No closing quotation
        return False
    # a compound command goes on until its closing word
    return all(words.count(a) <= words.count(b) for a, b in (("do", "done"), ("then", "fi"), ("case", "esac")))


def commands(text: str) -> list[str]:
    """The logical commands of a shell block: comment lines dropped, continued lines (a trailing `\\`, `|`,
    `&&`, or a quoted string that goes on) joined into one command with their newlines."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if _complete(pending):
            out.append(pending)
            pending = ""
    if pending:
        out.append(pending)  # unbalanced to the end: bash will say what is wrong with it
    return out


_CRON = re.compile(r"^(\S+\s+){5}(?P<user>[a-z_][\w-]*)\s+(?P<command>.+)$", re.S)
_CRON_TIME = re.compile(r"^[\d*/,-]+$")


def cron_command(line: str) -> tuple[str, str] | None:
    """(user, command) of an /etc/cron.d line (five time fields, a user, the command), else None."""
    m = _CRON.match(line.strip())
    if not m or not all(_CRON_TIME.match(f) for f in line.split()[:5]):
        return None
    return m.group("user"), m.group("command")


def programs(command: str) -> list[str]:
    """The programs a command line starts: the first word of each part of its pipelines, lists and $(...)."""
    lexer = shlex.shlex(command.replace("$(", " ( "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out, first = [], True
    for word in lexer:
        if word in ("|", "||", "&&", ";", "&", "(", ")", "|&", "do", "then", "else", "!"):
            first = True
        elif (
            first and not re.match(r"^[A-Za-z_]\w*=", word) and word not in ("while", "if", "until", "{", "done", "fi")
        ):
            out.append(word.rsplit("/", 1)[-1])
            first = False
    return out


def transcript(text: str) -> list[tuple[str, list[str]]]:
    """A console block: each `$ command` with the output lines shown after it (up to the next `$ `)."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"console block: output before the first `$ ` command: {line!r}")
    while out and out[-1][1] and not out[-1][1][-1].strip():
        out[-1][1].pop()
    return out


# -- from production paths to a test directory ---------------------------------------------------------------

# Documented path -> path below the test's root directory. Longest first; each applies at a path boundary.
PATHS = {
    "/etc/bouncemilter/": "etc/bouncemilter/",
    "/var/lib/bouncemilter/": "var/lib/bouncemilter/",
    "/run/bouncemilter/": "run/bouncemilter/",
    "/etc/postfix/": "etc/postfix/",
    "/var/backups/": "var/backups/",
    "/var/lib/app/": "var/lib/app/",
    "/var/mail/": "var/mail/",
    "/usr/local/bin/app-apply-suppressions": "bin/app-apply-suppressions",
    "/tmp/": "tmp/",
}
# The docs call the database bounces.db or bouncemilter.db in the working directory: both are the host's one.
DATABASE_NAMES = re.compile(r"(?<![\w/.-])(?:bounces|bouncemilter)\.db(?![\w-])")
HOST_DB = "/var/lib/bouncemilter/bouncemilter.db"


def localize(text: str, root: Path) -> str:
    """`text` with the production paths the docs name moved below `root` (see PATHS)."""
    text = DATABASE_NAMES.sub(HOST_DB, text)
    # one pass: a path already moved below root (say /tmp/x/etc/...) must not be moved again
    pattern = "|".join(re.escape(p) for p in sorted(PATHS, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])(?:{pattern})", lambda m: f"{root}/{PATHS[m.group(0)]}", text)


def delocalize(text: str, root: Path) -> str:
    """Output of a command run below `root`, with the production paths put back (to compare with the docs)."""
    for documented, local in PATHS.items():
        text = text.replace(f"{root}/{local}", documented)
    return text.replace(f"{root}/work/", "")


# -- comparing output ----------------------------------------------------------------------------------------

_TIME = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?Z?)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _normal(line: str, numbers: bool) -> str:
    line = _TIME.sub("<T>", line)
    if numbers:
        line = _NUMBER.sub("<N>", line)
    return " ".join(line.split())


def _pattern(expected: str, numbers: bool) -> re.Pattern[str]:
    parts = re.split(r"\.\.\.|…", _normal(expected, numbers))
    return re.compile(r"\s*(.*?)\s*".join(re.escape(p.strip()) if p.strip() else "" for p in parts))


def output_mismatch(expected: list[str], actual: list[str], numbers: bool = False) -> str | None:
    """None when `actual` is what the docs show, else why not. Timestamps and runs of blanks never matter
    (table widths follow the data); `...` stands for any text; `numbers`: any number for any number (an
    example from a bigger data set than the test's)."""
    want = [x for x in expected if x.strip()]
    got = [x for x in actual if x.strip()]
    if len(want) != len(got):
        return f"{len(got)} line(s) of output, the docs show {len(want)}:\n" + "\n".join(got)
    for w, g in zip(want, got, strict=True):
        if not _pattern(w, numbers).fullmatch(_normal(g, numbers)):
            return f"the docs show\n  {w}\nthe command printed\n  {g}"
    return None


def json_shape(value: object) -> object:
    """The structure of a JSON value: keys and value types, not the values (lists: the shape of their items)."""
    if isinstance(value, dict):
        return {k: json_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted({repr(json_shape(v)) for v in value})
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
