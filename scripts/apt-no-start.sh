# Sourced by scripts/demo-deps.sh and scripts/test-deps.sh: apt_install_no_start PKG… installs
# the packages (quietly, without recommends) while no service may start: a policy-rc.d that
# refuses every start is put in place for the install unless one already decides.
apt_install_no_start() {
  export DEBIAN_FRONTEND=noninteractive
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [ -n "$policy" ]; then rm -f "$policy"; fi
}
