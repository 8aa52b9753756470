#!/usr/bin/env bash
# Installs what `dstm lab demo` drives, when missing and when we are root on Debian, and nothing
# else: iproute2 (ip), iputils-ping (ping), curl (the web and FTP client), vsftpd (the real FTP
# server) and python3 (the web server); the list of lib/lab/services.ts LAB_PROGRAMS
# (test/demo_deps.test.ts keeps the two equal). The whole test suite's tools are
# scripts/test-deps.sh (./test.sh runs it).
# vsftpd's package would start the machine's own FTP server on port 21: no service is started
# during the install (policy-rc.d), and the vsftpd unit this install added is disabled. The
# lab starts its own vsftpd inside its namespaces.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null || need+=(python3)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "demo-deps: missing ${need[*]}; install them (Debian: apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "installing ${need[*]} for the lab (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck source=scripts/apt-no-start.sh
source "$(dirname "$0")/apt-no-start.sh"
apt_install_no_start "${need[@]}"
# Only a vsftpd this install brought: one that was there before is left as it was.
if [[ " ${need[*]} " == *" vsftpd "* ]] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl disable --now vsftpd 2>/dev/null || true
fi
