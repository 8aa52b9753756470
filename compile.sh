#!/usr/bin/env bash
# Builds the single dstm executable: dist/dstm (installs the pinned dependencies first when missing).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/bun ]; then
  npm ci --no-audit --no-fund >/dev/null 2>&1 || npm install --no-audit --no-fund
fi
mkdir -p dist
# `dstm --version` names the commit built (cli/build_info.ts); "-dirty" when the tree has changes.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then commit="$commit-dirty"; fi
# The forwarding Worker, the UDP PKTINFO receiver and the WAL checkpointer are extra entry points: they are loaded by
# path inside the executable.
node_modules/.bin/bun build --compile --minify --sourcemap=none --define "DSTM_COMMIT=\"$commit\"" \
  mod.ts lib/dataplane/forwarder_worker.ts lib/sys/udp_pktinfo_worker.ts lib/lease/wal_checkpoint_worker.ts --outfile dist/dstm
echo "built dist/dstm ($(du -h dist/dstm | cut -f1))"
