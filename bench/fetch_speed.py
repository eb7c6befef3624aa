"""Messages per second that `bouncemilter fetch` records from a mailbox over loopback IMAP (and POP3).

Starts a private Dovecot (tests/dovecot_rig.py), drops N generated bounces of about SIZE bytes into a fresh
mailbox (tests/fetch_messages.py: hard and soft DSNs, ARF complaints, auto-replies, ordinary mail), and runs
`bouncemilter fetch` on it as a separate process (start-up included): over pop3s into a fresh database,
again over pop3s (all already stored: the cost of a re-fetch), then over imaps into another fresh database
with the default actions (each message marked seen and moved to its Bounces/ folder). Prints messages/s
per run and the best of ROUNDS.

    .venv/bin/python bench/fetch_speed.py [--messages 2000] [--size 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dovecot_rig import PASSWORD, Dovecot, dovecot_available  # noqa: E402
from fetch_messages import mailbox  # noqa: E402

BIN = str(Path(sys.executable).parent / "bouncemilter")


def run(args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run([BIN, *args, "--format", "json"], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=5000, help="bytes per message (about)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=200)
    a = ap.parse_args()
    why = dovecot_available()
    if why:
        print(f"fetch_speed: {why}", file=sys.stderr)
        return 1
    rig = Dovecot().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pw = Path(tmp) / "pw"
            pw.write_text(PASSWORD + "\n")
            pw.chmod(0o600)
            imap_rates, pop_rates = [], []
            for r in range(a.rounds):
                user, db = f"bench{r}", Path(tmp) / f"b{r}.db"
                messages = [raw for _, raw in mailbox(a.messages, pad_to=a.size, tag=user)]
                rig.deliver(messages, user)
                common = ["fetch", "--db", str(db), "--password-file", str(pw), "--ca-file", rig.ca]
                common += ["--batch-size", str(a.batch_size)]
                # POP3 first (it leaves the messages), then IMAP moves them out of the inbox
                t_pop_new, pop_new = run([*common, f"pop3s://{user}@127.0.0.1:{rig.pop3s}"])
                t_pop, s_pop = run([*common, f"pop3s://{user}@127.0.0.1:{rig.pop3s}"])
                db.unlink()
                for suffix in ("-wal", "-shm"):
                    Path(str(db) + suffix).unlink(missing_ok=True)
                t_imap, s_imap = run([*common, f"imaps://{user}@127.0.0.1:{rig.imaps}/INBOX"])
                assert s_imap["new"] == a.messages and s_pop["already_stored"] == a.messages, (s_imap, s_pop)
                assert pop_new["new"] == a.messages
                imap_rates.append(a.messages / t_imap)
                pop_rates.append((a.messages / t_pop_new, a.messages / t_pop))
                print(
                    f"round {r + 1}: imaps new+move {a.messages / t_imap:,.0f} msgs/s ({t_imap:.2f} s); "
                    f"pop3s new {a.messages / t_pop_new:,.0f} msgs/s; pop3s re-fetch (all stored) "
                    f"{a.messages / t_pop:,.0f} msgs/s"
                )
            print(
                f"{a.messages} messages of ~{a.size} bytes, best of {a.rounds}: imaps {max(imap_rates):,.0f} msgs/s "
                f"(target >= 500), pop3s {max(p[0] for p in pop_rates):,.0f} msgs/s, "
                f"pop3s re-fetch {max(p[1] for p in pop_rates):,.0f} msgs/s"
            )
    finally:
        rig.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
