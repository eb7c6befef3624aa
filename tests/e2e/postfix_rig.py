"""A private Postfix instance on 127.0.0.1 for end-to-end tests and the benchmark.

Python port of the verified shell recipe (docs: postfix-test-rig): everything lives under one
directory (config, queue, maildirs, log), all services run unchrooted, smtpd listens on one
loopback port, and two smtp-sink processes act as next hops (`*@sink.test` accepted,
`*@reject.test` refused with 550 at RCPT so Postfix writes a real DSN).

Must run as root (postfix start, chown to postfix/nobody). Usable from the command line too:
    python tests/e2e/postfix_rig.py start DIR [--milter unix:/path|inet:127.0.0.1:PORT]
    python tests/e2e/postfix_rig.py stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MASTER_CF = """\
# service     type  private unpriv chroot wakeup maxproc command
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup        unix  n  -  n  60     1  pickup
cleanup       unix  n  -  n  -      0  cleanup
qmgr          unix  n  -  n  300    1  qmgr
rewrite       unix  -  -  n  -      -  trivial-rewrite
bounce        unix  -  -  n  -      0  bounce
defer         unix  -  -  n  -      0  bounce
trace         unix  -  -  n  -      0  bounce
verify        unix  -  -  n  -      1  verify
flush         unix  n  -  n  1000?  0  flush
proxymap      unix  -  -  n  -      -  proxymap
proxywrite    unix  -  -  n  -      1  proxymap
smtp          unix  -  -  n  -      -  smtp
relay         unix  -  -  n  -      -  smtp
showq         unix  n  -  n  -      -  showq
error         unix  -  -  n  -      -  error
retry         unix  -  -  n  -      -  error
discard       unix  -  -  n  -      -  discard
local         unix  -  n  n  -      -  local
virtual       unix  -  n  n  -      -  virtual
lmtp          unix  -  -  n  -      -  lmtp
anvil         unix  -  -  n  -      1  anvil
scache        unix  -  -  n  -      1  scache
postlog       unix-dgram n - n - 1     postlogd
"""


class RigError(RuntimeError):
    pass


def postfix_available() -> str | None:
    """None when a rig can run here, else the reason why not."""
    for tool in ("postfix", "postconf", "postqueue", "smtp-sink"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            other = other_mta()
            if other:
                return f"{other} is this host's MTA, and installing Postfix would remove it (tests/run.sh does not)"
            return f"{tool} not installed (apt-get install postfix, or bash tests/run.sh)"
    if os.geteuid() != 0:
        return "the Postfix rig needs root"
    return None


def other_mta() -> str:
    """The program behind /usr/sbin/sendmail when it is not Postfix's (Exim, Sendmail, OpenSMTPD ...), else ""."""
    target = os.path.realpath("/usr/sbin/sendmail")
    if not os.path.exists(target):
        return ""
    name = os.path.basename(target)
    return "" if name in ("sendmail", "postfix") and os.path.exists("/usr/sbin/postconf") else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_greeting(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            line = s.recv(512)
            with contextlib.suppress(OSError):
                s.sendall(b"QUIT\r\n")
            if line.startswith(b"220"):
                return True
        time.sleep(0.1)
    return False


def _sbin(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"


@dataclass
class Rig:
    """One private Postfix instance. `milter` is Postfix syntax: unix:/path or inet:127.0.0.1:PORT."""

    root: Path
    milter: str = ""
    smtp_port: int = 0
    sink_ok_port: int = 0
    sink_reject_port: int = 0
    default_action: str = "tempfail"
    filter_bounces: bool = True
    extra_main_cf: dict[str, str] = field(default_factory=dict)
    extra_transport: str = ""  # more "domain nexthop" lines
    extra_aliases: str = ""  # more "name target" lines (e.g. "unsubscribe bounces")
    sinks: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def log(self) -> Path:
        return self.root / "log" / "maillog"

    def maildir(self, box: str) -> Path:
        return self.root / "mail" / box

    # -- commands

    def postconf(self, *settings: str) -> None:
        subprocess.run([_sbin("postconf"), "-c", str(self.etc), "-e", *settings], check=True)

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_sbin("postfix"), "-c", str(self.etc), *args], check=check, capture_output=True, text=True
        )

    def sendmail(self, sender: str, recipients: list[str], raw: bytes) -> None:
        """Local injection (the pickup path, i.e. non_smtpd_milters)."""
        env = {**os.environ, "MAIL_CONFIG": str(self.etc)}
        subprocess.run([_sbin("sendmail"), "-f", sender, *recipients], input=raw, env=env, check=True, timeout=30)

    def queue_empty(self) -> bool:
        out = subprocess.run(
            [_sbin("postqueue"), "-c", str(self.etc), "-j"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() == ""

    def queue_json(self) -> str:
        return subprocess.run(
            [_sbin("postqueue"), "-c", str(self.etc), "-j"], capture_output=True, text=True, check=False
        ).stdout

    def flush(self) -> None:
        subprocess.run([_sbin("postqueue"), "-c", str(self.etc), "-f"], check=False, capture_output=True)

    def wait_queue(self, seconds: float = 30) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.queue_empty():
                return True
            time.sleep(0.1)
        return False

    def master_pid(self) -> int | None:
        try:
            pid = int((self.root / "spool" / "pid" / "master.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    # -- lifecycle

    def start(self) -> Rig:
        reason = postfix_available()
        if reason:
            raise RigError(reason)
        self.root = self.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.master_pid():
            raise RigError(f"{self.root} already holds a running instance")
        self.smtp_port = self.smtp_port or free_port()
        self.sink_ok_port = self.sink_ok_port or free_port()
        self.sink_reject_port = self.sink_reject_port or free_port()
        for p in (self.smtp_port, self.sink_ok_port, self.sink_reject_port):
            if port_open(p):
                raise RigError(f"127.0.0.1:{p} is already in use")
        # Postfix daemons run as 'postfix' and local deliveries as 'nobody': every ancestor must be
        # searchable (mktemp -d and pytest's tmp dirs are 0700 -> "Permission denied" on delivery).
        os.chmod(self.root, 0o755)
        for parent in self.root.parents:
            if not os.stat(parent).st_mode & 0o001:
                raise RigError(f"{parent} is not world-searchable; pick a directory directly under /tmp")
        for sub in ("etc", "spool", "data", "log", "mail", "run"):
            (self.root / sub).mkdir(exist_ok=True)
        shutil.chown(self.root / "data", "postfix", "postfix")
        for box in ("bounces", "user", "sender"):
            (self.root / "mail" / box).mkdir(exist_ok=True)
        for p in [self.root / "mail", *(self.root / "mail").iterdir()]:
            shutil.chown(p, "nobody", "nogroup")
        self.log.write_text("")

        (self.etc / "master.cf").write_text(MASTER_CF.format(smtp_port=self.smtp_port))
        # texthash files are "key value" (no colon); read when a daemon starts.
        (self.etc / "aliases").write_text(
            "postmaster bounces\nMAILER-DAEMON bounces\nroot bounces\n"
            f"bounces {self.root}/mail/bounces/\nuser {self.root}/mail/user/\nsender {self.root}/mail/sender/\n"
            + self.extra_aliases
        )
        (self.etc / "transport").write_text(
            f"sink.test smtp:[127.0.0.1]:{self.sink_ok_port}\n"
            f"reject.test smtp:[127.0.0.1]:{self.sink_reject_port}\n"
            "discard.test discard:\n" + self.extra_transport
        )
        (self.etc / "main.cf").write_text("")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": f"{self.root}/spool",
            "data_directory": f"{self.root}/data",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": f"{self.root}/log",
            "myhostname": "mx.test.example",
            "mydomain": "test.example",
            "myorigin": "$myhostname",
            "mydestination": "$myhostname, localhost, test.example",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": f"texthash:{self.etc}/aliases",
            "alias_database": "",
            "local_recipient_maps": "$alias_maps",
            "transport_maps": f"texthash:{self.etc}/transport",
            "recipient_delimiter": "+",  # bounces+alice=example.org@ is delivered to bounces
            "biff": "no",
            "smtpd_milters": self.milter,
            "milter_default_action": self.default_action,
            "milter_protocol": "6",
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "10s",
            "milter_content_timeout": "30s",
            **self.extra_main_cf,
        }
        if self.filter_bounces and self.milter:
            settings["non_smtpd_milters"] = self.milter
            settings["internal_mail_filter_classes"] = "bounce"
        self.postconf(*(f"{k} = {v}" for k, v in settings.items()))

        res = self.postfix("check", check=False)
        if res.returncode != 0:
            raise RigError(f"postfix check failed: {self._diagnose('check')}")
        res = self.postfix("start", check=False)
        if res.returncode != 0:
            raise RigError(f"postfix start failed: {self._diagnose('start')}")
        if not wait_greeting(self.smtp_port, 15):
            raise RigError(f"no 220 greeting on 127.0.0.1:{self.smtp_port}: {self.log.read_text()[-2000:]}")
        self._start_sink(self.sink_ok_port, "sink-ok", [])
        self._start_sink(
            self.sink_reject_port,
            "sink-reject",
            ["-f", "RCPT", "-B", "550 5.1.1 <recipient>: Recipient address rejected: User unknown (smtp-sink)"],
        )
        return self

    def _start_sink(self, port: int, name: str, extra: list[str]) -> None:
        with open(self.root / "log" / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(
                [_sbin("smtp-sink"), "-4", "-u", "nobody", "-h", f"{name}.test", *extra, f"127.0.0.1:{port}", "256"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.sinks.append(proc)
        (self.root / "run" / f"{name}.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 5
        while not port_open(port):
            if time.monotonic() > deadline:
                raise RigError(f"smtp-sink on 127.0.0.1:{port} did not come up")
            time.sleep(0.05)

    def _diagnose(self, cmd: str) -> str:
        # Without a tty postfix(1) writes its complaints only to the log; script(1) makes them visible.
        out = subprocess.run(
            ["script", "-qec", f"postfix -c {self.etc} {cmd}", "/dev/null"], capture_output=True, text=True, check=False
        )
        return (out.stdout + out.stderr + self.log.read_text())[-3000:]

    def stop(self) -> None:
        pid = self.master_pid()
        if pid:
            self.postfix("stop", check=False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                self.postfix("abort", check=False)
        for proc in self.sinks:  # started by us: stop by PID and reap
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            for pidfile in (self.root / "run").glob("*.pid"):
                if pidfile.read_text().strip() == str(proc.pid):
                    pidfile.unlink()
        self.sinks.clear()
        for pidfile in (self.root / "run").glob("*.pid"):  # a rig started by another process (CLI)
            with contextlib.suppress(ValueError, OSError):
                sink = int(pidfile.read_text())
                os.kill(sink, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _alive(sink):
                    time.sleep(0.05)
            pidfile.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (not reaped yet) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["start", "stop"])
    ap.add_argument("dir")
    ap.add_argument("--milter", default="", help="Postfix syntax: unix:/path or inet:127.0.0.1:PORT")
    ap.add_argument("--smtp-port", type=int, default=0)
    args = ap.parse_args()
    rig = Rig(Path(args.dir), milter=args.milter, smtp_port=args.smtp_port)
    if args.command == "start":
        rig.start()
        print(f"postfix rig in {rig.root}: smtpd 127.0.0.1:{rig.smtp_port}, log {rig.log}")
    else:
        rig.stop()


if __name__ == "__main__":
    main()
