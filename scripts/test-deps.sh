#!/usr/bin/env bash
# Installs what the end-to-end tests drive, when missing and when we are root on Debian:
# ping, curl, a real FTP server (vsftpd), iperf3, python3 (web server), iproute2, ISC Kea's
# DHCPv4 and DHCPv6 servers (the DHCPv4-over-DHCPv6 test), tshark, libfaketime (the clock-step
# test), and the packaging tools.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
command -v iperf3 >/dev/null || need+=(iperf3)
[ -x /usr/bin/python3 ] || need+=(python3)
[ -x /usr/sbin/kea-dhcp4 ] || need+=(kea-dhcp4-server)
[ -x /usr/sbin/kea-dhcp6 ] || need+=(kea-dhcp6-server)
command -v tshark >/dev/null || need+=(tshark)
# ethtool: offloads of a veth off in a namespace (redteam_udp_gro.test.ts, kernel_peers*.test.ts).
[ -x /usr/sbin/ethtool ] || need+=(ethtool)
# nftables: a host firewall behind the client's DTI (redteam_client_udp_gro_kernel.test.ts), and
# a TEP namespace's kernel dropping some SNAPSHOT datagrams (tep_snapshot_loss.test.ts).
command -v nft >/dev/null || need+=(nftables)
# ISC dhcrelay: the packaged relay agent in front of `dstm server --dhcp4o6` (relay_dhcp4o6.test.ts).
[ -x /usr/sbin/dhcrelay ] || need+=(isc-dhcp-relay)
# libfaketime: the server test that steps the wall clock under a running `dstm server`.
command -v faketime >/dev/null || need+=(faketime)
# Packaging and system integration: systemd-analyze verify (systemd), the completion scripts
# in their shells (zsh, fish), man pages (groff, man-db), the .deb (dpkg-deb), the units'
# system-call filter against what the daemons call (strace).
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
command -v groff >/dev/null || need+=(groff-base)
command -v man >/dev/null || need+=(man-db)
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v strace >/dev/null || need+=(strace)
# PostgreSQL (initdb, pg_ctl): the shared lease store's tests start a throwaway server.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# kea-admin: Kea's PostgreSQL schema (`kea-admin db-init pgsql`) for bench/kea_compare.ts.
[ -x /usr/sbin/kea-admin ] || need+=(kea-admin)
# promtool (Debian's prometheus package): every metrics endpoint is checked with
# `promtool check metrics`. The package's own daemon is never started by the tests.
command -v promtool >/dev/null || need+=(prometheus)
# A C compiler: bench/c/flood4in6.c, the TEP bench's load generator, is built and read back by
# tshark (bench_flood4in6.test.ts).
command -v cc >/dev/null || need+=(gcc libc6-dev)
# The sqlite3 shell: reads a running server's lease database (lease_admin tests).
command -v sqlite3 >/dev/null || need+=(sqlite3)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: missing ${need[*]}; the end-to-end tests that need them will be skipped (run as root on Debian to install)" >&2
  exit 0
fi
echo "installing ${need[*]} for the end-to-end tests" >&2
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture: no.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
# isc-dhcp-relay's postinst starts dhcrelay (v4, on eth0, to a default server) through
# invoke-rc.d: forbid service starts during the install unless a policy already decides.
# shellcheck source=scripts/apt-no-start.sh
source "$(dirname "$0")/apt-no-start.sh"
apt_install_no_start "${need[@]}"
# The relay is started by the tests inside namespaces, never as the host's service.
if command -v update-rc.d >/dev/null && [ -x /etc/init.d/isc-dhcp-relay ]; then
  update-rc.d isc-dhcp-relay disable >/dev/null 2>&1 || true
fi
# Where systemd runs, the Kea packages start their daemons with the default configuration:
# the tests start their own Kea inside namespaces, so stop the ones this install started.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl disable --now kea-dhcp4-server kea-dhcp6-server kea-ctrl-agent kea-dhcp-ddns-server isc-dhcp-relay 2>/dev/null || true
  # Likewise PostgreSQL's own cluster: the tests run a throwaway server of their own.
  systemctl disable --now postgresql 2>/dev/null || true
  systemctl disable --now prometheus prometheus-node-exporter 2>/dev/null || true
fi
