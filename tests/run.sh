#!/usr/bin/env bash
# Run the whole test suite from this checkout, installing what it needs first (Debian/Ubuntu, as root):
#   - libmilter-dev, gcc, python3-dev, python3-venv: pymilter is compiled into .venv;
#   - postfix, swaks: the end-to-end tests run private Postfix instances on 127.0.0.1 (the system
#     Postfix is not configured or started). Where another MTA (Sendmail, Exim, ...) is installed,
#     Postfix is NOT installed - apt would remove that MTA - and the Postfix tests skip, saying why;
#   - e2fsprogs, mount, util-linux: chattr, mount and setpriv for the store's fault tests;
#   - dovecot-imapd, dovecot-pop3d, openssl: the fetch tests run a private Dovecot with a test certificate
#     on loopback ports, config and base_dir of their own (a system Dovecot on 143/993 never clashes);
#   - postgresql: every store and CLI test also runs on PostgreSQL; the tests initdb a private server into a
#     temp dir (as the postgres user when run as root), on a loopback port, torn down after. The package's
#     own cluster is not started (no init system here, and the tests never use it);
#   - jq, sqlite3: the docs' recipes use them, and tests/test_docs_blocks.py runs every block of the docs;
#   - .venv with the package (editable) and its test tools.
# Then: .venv/bin/python -m pytest with any arguments given here. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

other_mta() {
    # the package that provides /usr/sbin/sendmail, if it is not Postfix
    local owner
    [ -e /usr/sbin/sendmail ] || return 1
    owner=$(dpkg -S "$(readlink -f /usr/sbin/sendmail)" 2>/dev/null | cut -d: -f1 | head -1)
    [ -n "$owner" ] && [ "$owner" != postfix ] && echo "$owner"
}

need=()
pkgs=(libmilter-dev gcc python3-dev python3-venv swaks e2fsprogs mount util-linux dovecot-imapd dovecot-pop3d openssl
      jq sqlite3 postgresql)
if mta=$(other_mta); then
    echo "tests/run.sh: $mta provides the MTA here: Postfix is not installed, the Postfix tests will skip" >&2
else
    pkgs+=(postfix)
fi
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "tests/run.sh: run as root to install ${need[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    # No mail system is configured: the tests run their own private Postfix instances.
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
if ! .venv/bin/pip install -q -e '.[test]' >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "tests/run.sh: pip install failed (log above, also in .venv/pip-install.log)" >&2
    exit 1
fi
exec .venv/bin/python -m pytest "$@"
