#!/usr/bin/env bash
# The main job: build dist/dstm and run the paper's test network (dstm lab demo) as root.
# Installs what the lab drives when missing (iproute2, iputils-ping, curl, vsftpd, python3) on
# Debian, and nothing else: scripts/demo-deps.sh. Arguments go to `dstm lab demo`
# (./demo.sh --name b: a second lab beside the first; ./demo.sh --keep: leave it up).
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: the lab builds network namespaces and TUN devices; run it as root (sudo ./demo.sh)" >&2
  exit 2
fi
scripts/demo-deps.sh
./compile.sh
exec dist/dstm lab demo "$@"
