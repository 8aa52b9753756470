#!/usr/bin/env bash
# Runs the whole test suite (unit tests, and as root the namespace end-to-end tests).
# Installs the pinned dependencies first when they are missing. Extra arguments go to `bun test`.
set -uo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/bun ]; then
  npm ci --no-audit --no-fund >/dev/null 2>&1 || npm install --no-audit --no-fund || exit 1
fi
scripts/test-deps.sh
log=$(mktemp)
# A server a test starts without --db must never write the machine's /var/lib/dstm.
state=$(mktemp -d)
export DSTM_STATE_DIR="$state"
# Nor a control socket in the machine's /run/dstm (a daemon started without --control).
run=$(mktemp -d)
export DSTM_RUNTIME_DIR="$run"
trap 'rm -f "$log"; rm -rf "$state" "$run"' EXIT
# Tests change sysctls only inside their own namespaces: the machine's own must be as they were
# (a new namespace inherits IPv4 settings from this one, so a leak would also skew later tests).
sysctls() {
  for k in net/ipv4/ip_forward net/ipv6/conf/all/forwarding net/ipv4/conf/all/rp_filter \
    net/ipv4/conf/all/accept_local net/ipv6/ip_nonlocal_bind; do
    [ -r "/proc/sys/$k" ] && echo "$k=$(cat "/proc/sys/$k")"
  done
}
before=$(sysctls)
node_modules/.bin/bun test --timeout 120000 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
after=$(sysctls)
if [ "$before" != "$after" ]; then
  echo "FAIL: a test changed the machine's own sysctls:"
  diff <(echo "$before") <(echo "$after")
  status=1
fi
pass=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | grep -Eo '[0-9]+')
fail=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | grep -Eo '[0-9]+')
skip=$(grep -Eo '^ *[0-9]+ skip$' "$log" | tail -1 | grep -Eo '[0-9]+')
echo "${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit "$status"
