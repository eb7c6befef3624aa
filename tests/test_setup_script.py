"""deploy/setup.sh (the README's Quick start, command 1) reads the milter's pid from its start line without a
JSON parser: that reading must match the line the milter writes."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from pathlib import Path

from bouncemilter import logjson

SETUP = Path(__file__).resolve().parents[1] / "deploy" / "setup.sh"


def _pid_reader() -> str:
    m = re.search(r"sed -n '(s/\.\*\"event\".*?/p)'", SETUP.read_text())
    assert m, "setup.sh no longer reads the pid with sed: update this test"
    return m.group(1)


def _start_line() -> str:
    stream = io.StringIO()
    logger = logging.getLogger("bouncemilter.test_setup_script")
    logger.handlers[:] = [logjson.JsonStreamHandler(stream)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logjson.event(logger, logging.INFO, "start", socket="inet:9025@127.0.0.1", pid=4242)
    return stream.getvalue()


def test_setup_reads_the_pid_from_the_start_line_as_written() -> None:
    line = _start_line()
    assert '"start"' in line and "4242" in line
    for text in (line, line.replace('":', '": ').replace(',"', ', "')):  # compact, and json.dumps' spacing
        out = subprocess.run(["sed", "-n", _pid_reader()], input=text, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "4242", (text, out.stdout)
