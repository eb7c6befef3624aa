"""A private PostgreSQL server for the tests and benchmarks: Debian's postgresql package, initdb into a temp dir,
a loopback port and a socket directory of its own (never the system cluster), torn down after.

initdb refuses to run as root, so as root the server runs as the `postgres` user the package creates (the temp
dir is given to it); as anyone else it runs as that user. Authentication is `trust` on 127.0.0.1 for the
superuser `postgres`, plus a password role for the tests of libpq's password sources.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence

PASSWORD_ROLE = ("bm_pw", "s3cret-pw")


def bin_dir() -> str | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/N/bin), None when there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, durable: bool = False, max_connections: int = 100) -> None:
        bindir = bin_dir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server installed (apt-get install postgresql)")
        self.bin = bindir
        self.durable = durable  # fsync on (benchmarks); the tests run with fsync off, as nothing crashes the host
        self.max_connections = max_connections
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bm-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run(["initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as fh:
            fh.write(
                "local all all trust\n"
                f"host all {PASSWORD_ROLE[0]} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n"
            )
        self.start()
        self.sql(f"CREATE ROLE {PASSWORD_ROLE[0]} LOGIN PASSWORD '{PASSWORD_ROLE[1]}'")
        self.sql(f"CREATE DATABASE bm OWNER {PASSWORD_ROLE[0]}")
        self._schemas = 0

    def _run(self, argv: Sequence[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [os.path.join(self.bin, argv[0]), *argv[1:]]
        if self.user is not None:
            cmd = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--init-groups", *cmd]
        return subprocess.run(
            cmd, check=check, capture_output=True, text=True, timeout=timeout, cwd=self.dir, stdin=subprocess.DEVNULL
        )

    @property
    def url(self) -> str:
        """The superuser's URL to the tests' database `bm`."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/bm"

    def url_for_schema(self, schema: str) -> str:
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def new_schema(self) -> str:
        """A fresh schema in `bm` (one per test: far cheaper than a database each); returns its URL."""
        self._schemas += 1
        name = f"t{os.getpid()}_{self._schemas}"
        self.sql(f"CREATE SCHEMA {name}", db="bm")
        return self.url_for_schema(name)

    def sql(self, statement: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", statement],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.stdout.strip()

    def psql_file(self, path: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
             "-v", "ON_ERROR_STOP=1", "-q", "-f", path],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.stdout

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
            f"-c max_connections={self.max_connections} -c fsync={'on' if self.durable else 'off'} "
            "-c full_page_writes=off -c shared_buffers=64MB"
        )
        self._run(["pg_ctl", "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t", "60", "start"])
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.tail_log()}") from None
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """mode fast: disconnects clients and shuts down; immediate: like a crash (recovery on start)."""
        self._run(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"], check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def terminate_backends(self, db: str = "bm") -> int:
        """A failover-like connection reset: the server kills every client connection to `db`."""
        out = self.sql(
            f"SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' "
            "AND pid <> pg_backend_pid()"
        )
        return int(out or 0)

    def tail_log(self) -> str:
        with contextlib.suppress(OSError), open(self.log, errors="replace") as fh:
            return fh.read()[-2000:]
        return ""

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
