#!/usr/bin/env bash
# Set up bouncemilter on a fresh Debian/Ubuntu machine, from this checkout:
#   system packages (libmilter-dev for pymilter, postfix + swaks for the end-to-end tests),
#   a virtualenv in .venv with the package and its test tools, then start it with the
#   embedded defaults. Run as root (or with sudo). Re-running it is safe.
#
#   bash deploy/setup.sh            set up, then start
#   bash deploy/setup.sh --no-start set up only (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

start=1
[ "${1:-}" = "--no-start" ] && start=0

need=()
for pkg in libmilter-dev postfix swaks gcc python3-venv python3-dev; do
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
.venv/bin/pip install -q -e '.[test]'

echo "setup: installed bouncemilter $(.venv/bin/bouncemilter --version | awk '{print $NF}') in .venv"
if [ "$start" = 1 ]; then
    echo "setup: classifying the bundled sample bounce:"
    .venv/bin/bouncemilter classify bouncemilter/samples/hard-bounce.eml
fi
