#!/usr/bin/env bash
# Set up bouncemilter on a fresh Debian/Ubuntu machine, from this checkout:
#   system packages (libmilter-dev for pymilter, postfix + swaks for the end-to-end tests),
#   a virtualenv in .venv with the package and its test tools, then start it with the
#   embedded defaults. Run as root (or with sudo). Re-running it is safe.
#
#   bash deploy/setup.sh            set up, then start the milter in the background
#   bash deploy/setup.sh --no-start set up only (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

start=1
[ "${1:-}" = "--no-start" ] && start=0

need=()
# libmilter-dev: pymilter compiles against it; postfix, swaks: the end-to-end tests run a private
# Postfix; e2fsprogs (chattr), mount, util-linux (setpriv): the store's fault tests.
# dovecot-imapd, dovecot-pop3d, openssl: the fetch tests run a private Dovecot on loopback ports of their own
# (test certificate, own config and base_dir), so a system Dovecot on 143/993 never clashes with them.
for pkg in libmilter-dev postfix swaks gcc python3-venv python3-dev e2fsprogs mount util-linux dovecot-imapd dovecot-pop3d openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "setup: run as root to install ${need[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    # No mail system is configured: the tests run their own private Postfix instances.
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/pip install -q -e '.[test]' >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "setup: pip install failed (log above, also in .venv/pip-install.log)" >&2
    exit 1
fi

echo "setup: installed bouncemilter $(.venv/bin/bouncemilter --version | awk '{print $NF}') in .venv"
[ "$start" = 1 ] || exit 0

# Start the milter in the background with the embedded defaults: TCP on 127.0.0.1:9025, the
# database ./bouncemilter.db, every null-sender (MAIL FROM:<>) message examined. A milter that
# this script started earlier is stopped first, so re-running the script restarts the milter.
pidfile=bouncemilter.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 150); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
fi
setsid .venv/bin/bouncemilter run >>bouncemilter.log 2>&1 </dev/null &
echo $! >"$pidfile"
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/9025) 2>/dev/null && break
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "setup: the milter did not start:" >&2
        tail -5 bouncemilter.log >&2
        exit 1
    fi
    sleep 0.1
done
echo "setup: bouncemilter is running (pid $(cat "$pidfile")), listening on inet:9025@127.0.0.1"
echo "  database   $(pwd)/bouncemilter.db"
echo "  log        $(pwd)/bouncemilter.log (one JSON line per handled message)"
echo "  Postfix    smtpd_milters = inet:127.0.0.1:9025 (see deploy/postfix/main.cf)"
echo "  stop       kill \$(cat $(pwd)/$pidfile)"
