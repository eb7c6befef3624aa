"""What signed return paths cost: the token functions in-process, and the milter's instructions per outbound
session under callgrind (valgrind), with and without signing and the sent log.

    .venv/bin/python bench/signing_cost.py [--sessions 200] [--no-callgrind]

Sessions are played the way bench/milter_cost.py plays them (Postfix 3.7 over a unix socket, one at a time):
"ordinary" is mail from a sender that is not signed (accepted at DATA, as without signing); "signed" is the same
mail from a [signing] sender: headers read, SKIP at the first body chunk, chgfrom at end of message; "signed +
sent log" also queues a sent-log row (written by the sentlog thread, counted too).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import milter_cost as MC  # noqa: E402

from bouncemilter import signing  # noqa: E402

KEY = "bench key: 0123456789abcdefghij"
CONFIG = """\
[milter]
socket = "unix:{sock}"
[store]
db = "{db}"
[bounce]
addresses = ["bounces+*@sign.test"]
[log]
level = "{level}"
[dns]
check = false
[signing]
secret_file = "{keys}"
senders = ["@sign.test"]
log_sent = {log_sent}
"""


def token_functions(n: int = 20000) -> None:
    keys = signing.KeyRing([KEY, "old " + KEY])
    rp = signing.sign(keys, "bounces+*@sign.test", "alice@example.org")
    match_token = rp.partition("@")[0].rpartition("+")[2]
    t_sign = min(
        timeit.repeat(lambda: signing.sign(keys, "bounces+*@sign.test", "alice@example.org"), number=n, repeat=5)
    )
    t_verify = min(timeit.repeat(lambda: signing.verify(keys, match_token, "alice@example.org"), number=n, repeat=5))
    signer = signing.Signer(keys, ["@sign.test"], ["bounces+*@sign.test"])
    t_wants = min(timeit.repeat(lambda: signer.wants("news@sign.test"), number=n, repeat=5))
    print(f"signing.sign()        {t_sign / n * 1e6:6.1f} us per return path (HMAC-SHA256, base32, nonce)")
    print(f"signing.verify()      {t_verify / n * 1e6:6.1f} us per token")
    print(f"Signer.wants()        {t_wants / n * 1e6:6.2f} us per envelope sender")


def play(path: str, traffic: str, n: int, counter: itertools.count) -> None:
    for _ in range(n):
        k = next(counter)
        s = MC.Session(path)
        sender = "<sender@example.net>" if traffic == "ordinary" else "<news@sign.test>"
        reply = s.envelope(sender, f"<user{k}@sink.test>", f"QS{k}")
        if traffic == "ordinary":
            assert reply == b"a", reply
        else:
            assert reply == b"c", reply
            assert s.content(MC.M.ordinary(f"sign{k}")) == b"a"
        s.close()


def callgrind(sessions: int, level: str) -> None:
    MC.play = play  # measure() plays our sessions
    rows = []
    for traffic, log_sent in (("ordinary", "false"), ("signed", "false"), ("signed", "true")):
        work = Path(tempfile.mkdtemp(prefix="bm-sign-", dir="/tmp"))
        sock = work / "milter.sock"
        keys = work / "keys"
        keys.write_text(KEY + "\n")
        keys.chmod(0o600)
        cfg = work / "bm.toml"
        cfg.write_text(CONFIG.format(sock=sock, db=work / "b.db", keys=keys, log_sent=log_sent, level=level))
        cmd = [sys.executable, "-m", "bouncemilter.cli", "run", "--config", str(cfg)]
        try:
            per = MC.measure(cmd, sock, traffic, sessions, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        label = traffic + (" + sent log" if log_sent == "true" else "")
        rows.append((label, per))
        print(f"{label:22s} {per:12,d} instructions/session", flush=True)
    base = rows[0][1]
    for label, per in rows[1:]:
        print(f"  {label}: +{per - base:,d} over ordinary mail ({per / base:.2f}x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--log-level", default="info", help="the milter's [log] level (info logs one line per signing)")
    args = ap.parse_args()
    token_functions()
    if args.no_callgrind:
        return 0
    if not shutil.which("valgrind"):
        print("(valgrind not installed: no instruction counts)")
        return 0
    callgrind(args.sessions, args.log_level)
    print(f"({args.sessions} sessions each after 10 warm-up sessions; milter process, user space; unix socket)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
