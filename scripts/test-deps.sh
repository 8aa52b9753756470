#!/usr/bin/env bash
# Installs what the end-to-end tests drive, when missing and when we are root on Debian:
# ping, curl, a real FTP server (vsftpd), iperf3, python3 (web server), iproute2.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
command -v iperf3 >/dev/null || need+=(iperf3)
[ -x /usr/bin/python3 ] || need+=(python3)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: missing ${need[*]}; the end-to-end tests that need them will be skipped (run as root on Debian to install)" >&2
  exit 0
fi
echo "installing ${need[*]} for the end-to-end tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
