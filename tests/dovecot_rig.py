"""A private Dovecot (IMAP + POP3) on 127.0.0.1 for the fetch tests and bench/fetch_speed.py.

Everything lives under one directory: the config, base_dir (sockets, pid), state, log, a test CA and a
server certificate for 127.0.0.1/localhost made with openssl, and the users' Maildirs. It listens on four
free loopback ports (imap with STARTTLS, imaps, pop3 with STLS, pop3s), so it never clashes with a system
Dovecot on 143/993. All processes run as the user running the tests (no chroot, no privilege drop), which
lets the same rig run as root in CI and as an ordinary user on a laptop.

Users: any name, password `s3cret` (each test takes a user of its own: a mailbox of its own), and for XOAUTH2
any user whose bearer token the rig's small token server (loopback HTTP, Dovecot's oauth2 passdb asks it)
knows. `Proxy` stands between a client and the rig to cut or freeze a connection at a chosen byte.
From the command line: `python tests/dovecot_rig.py` starts one, prints its ports and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import grp
import http.server
import imaplib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

USER = "bounces"
PASSWORD = "s3cret"

CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = bm-test-{tag}
protocols = imap pop3
listen = 127.0.0.1
shutdown_clients = yes
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = 0
mail_location = maildir:{d}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
mailbox_idle_check_interval = 1 secs
pop3_uidl_format = %g
ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = static
  mechanisms = plain login
  args = password={password}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service submission-login {{
  chroot =
}}
service imap-urlauth-login {{
  chroot =
}}
service managesieve-login {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""

OAUTH2_CONF = """\
tokeninfo_url = http://127.0.0.1:{port}/tokeninfo?access_token=
introspection_mode = auth
username_attribute = username
active_attribute = active
active_value = true
"""


def dovecot_available() -> str | None:
    """None when a rig can run here, else the reason why not."""
    for tool in ("dovecot", "doveadm", "openssl"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            return f"{tool} not installed (apt-get install dovecot-imapd dovecot-pop3d openssl)"
    if not Path("/usr/lib/dovecot/imap").exists() or not Path("/usr/lib/dovecot/pop3").exists():
        return "dovecot-imapd / dovecot-pop3d not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(d: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost signed by it (openssl CLI)."""

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    new_key = ("req", "-newkey", "rsa:2048", "-nodes")
    ca_ext = ("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl(
        *new_key,
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=bouncemilter test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        *ca_ext,
    )
    ossl(*new_key, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    sign = ("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2")
    ossl(*sign, "-out", "server.pem", "-extfile", "ext.cnf")


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    tokens: ClassVar[dict[str, str]] = {}  # bearer token -> user name (the running rig's)

    def do_GET(self) -> None:
        token = self.path.partition("access_token=")[2]
        user = self.tokens.get(token)
        body = json.dumps({"username": user, "active": "true"} if user else {"error": "invalid_token"}).encode()
        self.send_response(200 if user else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Dovecot:
    root: Path = field(default_factory=lambda: _world_readable_tempdir())
    imap: int = 0
    imaps: int = 0
    pop3: int = 0
    pop3s: int = 0
    proc: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    uid: int = -1  # owner of the Maildirs (the mail processes' user)
    gid: int = -1
    _http: http.server.ThreadingHTTPServer | None = None

    @property
    def ca(self) -> str:
        return str(self.root / "ca.pem")

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def maildir(self, user: str = USER, folder: str = "") -> Path:
        base = self.root / "mail" / user
        return base / f".{folder}" if folder else base

    def start(self) -> Dovecot:
        d = self.root
        for sub in ("run", "state", "mail", "home"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        make_certificates(d)
        _TokenHandler.tokens = self.tokens
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        (d / "oauth2.conf.ext").write_text(OAUTH2_CONF.format(port=self._http.server_address[1]))
        self.imap, self.imaps, self.pop3, self.pop3s = (free_port() for _ in range(4))
        if os.getuid() == 0:  # Dovecot refuses root for login and mail processes: the Debian package's users
            internal, internal_group, login = "dovecot", "dovecot", "dovenull"
            pw = pwd.getpwnam("dovecot")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
            internal_group = grp.getgrgid(os.getgid()).gr_name
            self.uid, self.gid = os.getuid(), os.getgid()
        for sub in ("mail", "home"):
            os.chown(d / sub, self.uid, self.gid)
        ports = {"imap": self.imap, "imaps": self.imaps, "pop3": self.pop3, "pop3s": self.pop3s}
        users = {"internal": internal, "internal_group": internal_group, "login": login}
        ids = {"uid": self.uid, "gid": self.gid, "tag": os.getpid(), "password": PASSWORD}
        self.conf.write_text(CONF.format(d=d, **ids, **users, **ports))
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(d / "dovecot.stderr", "wb"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log_tail()}")
            if all(_port_open(p) for p in (self.imap, self.imaps, self.pop3, self.pop3s)):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen within 20 s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        out = []
        for name in ("dovecot.stderr", "dovecot.log"):
            with contextlib.suppress(OSError):
                out += (self.root / name).read_text(errors="replace").splitlines()[-n:]
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        if self.root.name.startswith("bm-dovecot-"):
            shutil.rmtree(self.root, ignore_errors=True)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    # -- mailbox helpers (straight to disk or through IMAP as another client)

    def deliver(self, messages: list[bytes], user: str = USER, folder: str = "") -> None:
        """Drop messages into a Maildir's new/ as a delivery agent would (tmp/, then rename)."""
        base = self.maildir(user, folder)
        for path in (base.parent, base, base / "tmp", base / "new", base / "cur"):
            if not path.exists():
                path.mkdir()
                os.chown(path, self.uid, self.gid)
        stamp = int(time.time())
        for n, raw in enumerate(messages):
            name = f"{stamp}.M{n}P{os.getpid()}.bm-test"
            (base / "tmp" / name).write_bytes(raw)
            os.chown(base / "tmp" / name, self.uid, self.gid)
            os.rename(base / "tmp" / name, base / "new" / name)

    def client(self, user: str = USER, password: str = PASSWORD) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=self.ca)
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.imaps, ssl_context=ctx, timeout=30)
        imap.login(user, password)
        return imap

    def folder_counts(self, user: str = USER) -> dict[str, int]:
        """Messages per folder (IMAP names, '.' separated), from the server's point of view."""
        imap = self.client(user)
        try:
            out: dict[str, int] = {}
            _, listing = imap.list()
            for line in listing:
                name = line.decode().rsplit(' "." ', 1)[1].strip('"')
                if b"\\Noselect" in line:
                    continue
                _, data = imap.status(f'"{name}"', "(MESSAGES)")
                out[name] = int(data[0].decode().rsplit("MESSAGES ", 1)[1].rstrip(")"))
            return out
        finally:
            imap.logout()

    def message_ids(self, folder: str = "INBOX", user: str = USER) -> list[str]:
        imap = self.client(user)
        try:
            imap.select(f'"{folder}"', readonly=True)
            _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            ids = []
            for item in data:
                if isinstance(item, tuple):
                    ids.append(item[1].decode().partition(":")[2].strip())
            return ids
        finally:
            imap.logout()


class Proxy:
    """A loopback TCP relay to `port` that cuts (closes both sides) or freezes (stops relaying, keeps the
    sockets open) a connection once the server has sent `after` bytes on it. Byte counts work through TLS."""

    def __init__(self, port: int, after: int, mode: str = "cut") -> None:
        self.target = port
        self.after = after
        self.mode = mode
        self.tripped = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server and self.after >= 0 and sent + len(data) > self.after:
                    dst.sendall(data[: self.after - sent])
                    self.tripped.set()
                    if self.mode == "cut":
                        for s in (src, dst):
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)
                    return  # frozen: nothing more goes either way from this side
                if self.tripped.is_set() and self.mode == "freeze":
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass

    def cut_all(self) -> None:
        """Every relayed connection goes away. shutdown() first: a bare close() does not end a connection
        while a pump thread is blocked in recv() on it, so the client would never notice."""
        for s in list(self._socks):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.close()
        self.cut_all()


def _world_readable_tempdir() -> Path:
    # Not below pytest's tmp_path: that is mode 0700, and as root Dovecot's login processes run as
    # dovenull and must reach the sockets in base_dir.
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="bm-dovecot-"))
    d.chmod(0o755)
    return d


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    rig = Dovecot().start()
    print(f"imap {rig.imap} imaps {rig.imaps} pop3 {rig.pop3} pop3s {rig.pop3s} ca {rig.ca}")
    try:
        signal.pause()
    finally:
        rig.stop()
