#!/usr/bin/env bash
# Builds dist/dstm and shows the DSTM server at work on loopback: three hosts take leases,
# the lease table is listed live, one host releases, a restart keeps the leases.
set -euo pipefail
cd "$(dirname "$0")/.."
./compile.sh
dstm=dist/dstm
dir=$(mktemp -d /tmp/dstm-demo.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

start_server() {
  local before
  before=$(grep -c ' start ' "$dir/server.log" 2>/dev/null || true)
  $dstm server --pool 192.168.20.0/24 --exclude 192.168.20.1 --tep 2001:db8:1::1,192.0.2.1 \
    --listen '[::1]:0' --db "$dir/leases.db" --control "$dir/server.sock" --no-source-check \
    --lease-time 10m >>"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    [ "$(grep -c ' start ' "$dir/server.log" 2>/dev/null || true)" -gt "${before:-0}" ] && break
    sleep 0.1
  done
  port=$(grep -o 'listen=\[::1\]:[0-9]*' "$dir/server.log" | tail -1 | cut -d: -f4)
}

step "DSTM server: pool 192.168.20.0/24 (the paper's), TEP 2001:db8:1::1 / 192.0.2.1, SQLite leases"
start_server
grep -m1 " start " "$dir/server.log"

step "Nodes A, B and C send DSTM_DISCOVER"
for host in 2001:db8:a::a 2001:db8:a::b 2001:db8:a::c; do
  $dstm lease get --server ::1 --server-port "$port" --host6 "$host"
done

step "dstm lease ls (live, from the control socket)"
$dstm lease ls --control "$dir/server.sock"

step "Node B releases its address"
$dstm lease release --server ::1 --server-port "$port" --host6 2001:db8:a::b --ipv4 192.168.20.3

step "Server restart: the leases were on disk before each ACK"
kill "$pid"; wait "$pid" || true
start_server
$dstm lease ls --control "$dir/server.sock"

step "Node B comes back and gets its previous address (sticky allocation)"
$dstm lease get --server ::1 --server-port "$port" --host6 2001:db8:a::b

step "Server log"
cat "$dir/server.log"
