#!/usr/bin/env bash
# Install bouncemilter on a Debian/Ubuntu host from this checkout, for production:
#   - system packages: python3-venv and python3-milter (Debian's build of pymilter: no compiler needed);
#     never an MTA - Postfix, Sendmail or Exim stay exactly as they are;
#   - the package (not editable, no test tools) in its own virtualenv, /opt/bouncemilter/venv;
#   - a system user "bouncemilter", /var/lib/bouncemilter for the database;
#   - /etc/bouncemilter/bouncemilter.toml from conf/ if there is none (never overwritten): the embedded
#     defaults, i.e. TCP on 127.0.0.1:9025 and /var/lib/bouncemilter/bouncemilter.db;
#   - the systemd unit, enabled and started (without systemd, e.g. in a container: started in the
#     background as the bouncemilter user).
# Run as root. Re-running it upgrades the package and restarts the milter; the config and database stay.
#
#   bash deploy/setup.sh              install, then start
#   bash deploy/setup.sh --no-start   install only
#
# Wiring it into Postfix is the next step of the README's admin guide (then: bouncemilter doctor).
# The test suite's prerequisites (a private Postfix, swaks, compilers) are tests/run.sh's business.
set -euo pipefail
cd "$(dirname "$0")/.."

start=1
[ "${1:-}" = "--no-start" ] && start=0
PREFIX=${BOUNCEMILTER_PREFIX:-/opt/bouncemilter}
ETC=/etc/bouncemilter
STATE=/var/lib/bouncemilter
USER_NAME=bouncemilter

[ "$(id -u)" = 0 ] || { echo "setup: run as root (it creates a user and installs into $PREFIX)" >&2; exit 1; }

need=()
for pkg in python3-venv python3-milter; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's python3 (the one python3-milter is built for), whatever python3 comes first in PATH.
PY=/usr/bin/python3
mkdir -p "$PREFIX"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$PREFIX/venv"
fi
if ! "$PREFIX/venv/bin/pip" install -q --upgrade . >"$PREFIX/pip-install.log" 2>&1; then
    cat "$PREFIX/pip-install.log" >&2
    echo "setup: pip install failed (log above, also in $PREFIX/pip-install.log)" >&2
    exit 1
fi
ln -sf "$PREFIX/venv/bin/bouncemilter" /usr/local/bin/bouncemilter

if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin --user-group "$USER_NAME"
fi
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ ! -e "$ETC/bouncemilter.toml" ]; then
    # the database by its full path: the unit runs in $STATE, but an admin's `bouncemilter stats` runs anywhere
    sed "s#^db = \"bouncemilter.db\"#db = \"$STATE/bouncemilter.db\"#" conf/bouncemilter.toml >"$ETC/bouncemilter.toml.new"
    install -m 0640 -o root -g "$USER_NAME" "$ETC/bouncemilter.toml.new" "$ETC/bouncemilter.toml"
    rm -f "$ETC/bouncemilter.toml.new"
fi
"$PREFIX/venv/bin/bouncemilter" check-config --config "$ETC/bouncemilter.toml" >/dev/null

unit=/etc/systemd/system/bouncemilter.service
sed "s#/opt/bouncemilter/venv#$PREFIX/venv#g" deploy/systemd/bouncemilter.service >"$unit.new"
mv "$unit.new" "$unit"
echo "setup: installed bouncemilter $("$PREFIX/venv/bin/bouncemilter" --version | awk '{print $NF}') in $PREFIX/venv"
[ "$start" = 1 ] || exit 0

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable -q bouncemilter
    systemctl restart bouncemilter  # Type=notify: returns once the socket listens, or fails with the reason
    how="systemctl status bouncemilter; journalctl -u bouncemilter"
else
    # No systemd (a container): what the unit does, by hand - as the service user, in its state directory.
    install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" /run/bouncemilter
    pidfile=/run/bouncemilter/bouncemilter.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 150); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    fi
    # one an earlier run left without a pid file (it was stopped before writing it) holds the port too; only
    # the milter this script starts (a second instance with its own config, README, is not ours to stop)
    ours="$PREFIX/venv/bin/bouncemilter run --config $ETC/bouncemilter.toml"
    if pkill -u "$USER_NAME" -f -x ".*$ours" 2>/dev/null; then
        for _ in $(seq 150); do pgrep -u "$USER_NAME" -f -x ".*$ours" >/dev/null || break; sleep 0.1; done
    fi
    log=$STATE/bouncemilter.log
    : >>"$log" && chown "$USER_NAME:$USER_NAME" "$log" && chmod 0640 "$log"
    lines=$(wc -l <"$log")
    (cd "$STATE" && exec setsid setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
        "$PREFIX/venv/bin/bouncemilter" run --config "$ETC/bouncemilter.toml" >>"$log" 2>&1 </dev/null) &
    launcher=$!
    pid=
    for _ in $(seq 150); do
        # the milter names its own pid in its start line (setsid may fork)
        pid=$(tail -n +"$((lines + 1))" "$log" | sed -n 's/.*"event": *"start".*"pid": *\([0-9]*\).*/\1/p' | tail -1)
        [ -n "$pid" ] && break
        if ! kill -0 "$launcher" 2>/dev/null && ! pgrep -u "$USER_NAME" -f -x ".*$ours" >/dev/null; then
            echo "setup: the milter did not start:" >&2
            tail -5 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    [ -n "$pid" ] || { echo "setup: the milter did not report its start in 15 s; see $log" >&2; exit 1; }
    echo "$pid" >"$pidfile"
    how="log $log; stop: kill \$(cat $pidfile)"
fi
echo "setup: bouncemilter is running with $ETC/bouncemilter.toml ($how)"
echo "  next: name your bounce addresses in $ETC/bouncemilter.toml ([bounce] addresses), wire Postfix"
echo "  (README, admin guide), then: bouncemilter doctor"
