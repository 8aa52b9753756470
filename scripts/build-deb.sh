#!/usr/bin/env bash
# Builds dist/dstm_VERSION_ARCH.deb with dpkg-deb (offline): the dstm executable, the systemd
# units (server, TEP, client@IFNAME) with their sysusers.d/tmpfiles.d files, man pages, bash/zsh/
# fish completion, the Wireshark dissector and example configuration.
#
#   scripts/build-deb.sh [OUTDIR]     # default dist/; builds dist/dstm first when missing
#
# $SOURCE_DATE_EPOCH, when set, dates the man pages and the files (reproducible builds).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
bun=node_modules/.bin/bun
[ -x dist/dstm ] || ./compile.sh
version=$(sed -n 's/^export const VERSION = "\(.*\)";$/\1/p' cli/version.ts)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/dstm

install -D -m 0755 dist/dstm "$root/usr/bin/dstm"
for unit in dstm-server.service dstm-tep.service dstm-client@.service; do
  install -D -m 0644 "packaging/systemd/$unit" "$root/usr/lib/systemd/system/$unit"
done
install -D -m 0644 packaging/systemd/dstm.sysusers "$root/usr/lib/sysusers.d/dstm.conf"
install -D -m 0644 packaging/systemd/dstm.tmpfiles "$root/usr/lib/tmpfiles.d/dstm.conf"
mkdir -p "$root/usr/share/man/man1"
"$bun" scripts/man.ts "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$bun" mod.ts completion bash >"$root/usr/share/bash-completion/completions/dstm"
"$bun" mod.ts completion zsh >"$root/usr/share/zsh/vendor-completions/_dstm"
"$bun" mod.ts completion fish >"$root/usr/share/fish/vendor_completions.d/dstm.fish"
# Wireshark loads Lua dissectors from its global Lua plugin folder (`tshark -G folders`).
install -D -m 0644 contrib/wireshark/dstm.lua "$root/usr/lib/$multiarch/wireshark/plugins/dstm.lua"
install -D -m 0644 README.md "$root/usr/share/doc/dstm/README.md"
for doc in docs/*.md; do install -m 0644 "$doc" "$root/usr/share/doc/dstm/"; done
for example in packaging/examples/*; do
  install -D -m 0644 "$example" "$root/usr/share/doc/dstm/examples/$(basename "$example")"
done

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: dstm
Version: $version
Architecture: $arch
Maintainer: dstm developers <dstm@example.org>
Installed-Size: $size
Depends: libc6
Recommends: systemd
Suggests: wireshark | tshark
Section: net
Priority: optional
Homepage: https://example.org/dstm
Description: Dual Stack Transition Mechanism: IPv4 for hosts in IPv6-only networks
 One executable for the DSTM server (IPv4 address pool and lease table, native
 protocol on UDP 4607 and DHCPv4-over-DHCPv6), the client (lease and DTI, an
 IPv4-in-IPv6 tunnel interface) and the tunnel end point (TEP), with systemd
 units, man pages, shell completion and a Wireshark dissector.
EOF
# Services are installed disabled: each needs its configuration under /etc/dstm first.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null; then systemd-sysusers dstm.conf
  elif ! getent passwd dstm >/dev/null; then
    adduser --system --group --home /var/lib/dstm --no-create-home --gecos "DSTM services" dstm
  fi
  if command -v systemd-tmpfiles >/dev/null; then systemd-tmpfiles --create dstm.conf || true; fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop dstm-server.service dstm-tep.service 'dstm-client@*.service' || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; fi
mkdir -p "$out"
deb="$out/dstm_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "built $deb"
