/**
 * Run as an unprivileged user: every privileged call must fail with a SysError that says
 * what is needed. Prints one JSON object of {code, message} per call.
 */
import { SysError } from "../../lib/sys/libc.ts";
import { linkSetMtu } from "../../lib/sys/netlink.ts";
import { Raw6Socket } from "../../lib/sys/raw6.ts";
import { writeSysctl } from "../../lib/sys/sysctl.ts";
import { openTun } from "../../lib/sys/tun_linux.ts";

function attempt(f: () => unknown) {
  try {
    f();
    return { ok: true };
  } catch (error) {
    const e = error as SysError;
    return { ok: false, isSysError: e instanceof SysError, code: e.code, message: e.message };
  }
}

console.log(
  JSON.stringify({
    tun: attempt(() => openTun("dti0")),
    raw6: attempt(() => Raw6Socket.open()),
    mtu: attempt(() => linkSetMtu("lo", 1400)),
    sysctl: attempt(() => writeSysctl("net.ipv4.ip_forward", 1)),
  }),
);
