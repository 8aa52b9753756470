#!/bin/bash
# One million leases, before and after, one after the other in one run (docs/benchmarks.md):
#   git worktree add --detach /tmp/million-before REV && ln -s "$PWD/node_modules" /tmp/million-before/
#   bench/million_compare.sh /tmp/million-before
set -u
before=${1:?usage: bench/million_compare.sh BEFORE_WORKTREE}
after=$(cd "$(dirname "$0")/.." && pwd)
for tree in "$before" "$after"; do
  echo "== server $tree ($(git -C "$tree" rev-parse --short HEAD))"
  (cd "$tree" && node_modules/.bin/bun bench/million_server.ts 2>&1 | tail -3)
done
for tree in "$before" "$after"; do
  echo "== engine $tree ($(git -C "$tree" rev-parse --short HEAD))"
  (cd "$tree" && node_modules/.bin/bun bench/million.ts 2>&1 | tail -5)
done
