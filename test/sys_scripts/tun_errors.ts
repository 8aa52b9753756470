/**
 * Error paths inside a fresh namespace: a TUN named like an existing interface (veth "v0"
 * and, while it is open, the TUN "dti0" itself), and netlink calls on a missing interface.
 */
import { SysError } from "../../lib/sys/libc.ts";
import { linkSetMtu, linkSetUp } from "../../lib/sys/netlink.ts";
import { closeTun, openTun } from "../../lib/sys/tun_linux.ts";

function attempt(f: () => unknown) {
  try {
    const value = f();
    return { ok: true, value };
  } catch (error) {
    const e = error as SysError;
    return { ok: false, isSysError: e instanceof SysError, code: e.code, message: e.message };
  }
}

const first = openTun("dti0");
const results = {
  vethName: attempt(() => openTun("v0")),
  tunInUse: attempt(() => openTun("dti0")),
  badName: attempt(() => openTun("a-name-longer-than-15")),
  mtuMissing: attempt(() => linkSetMtu("nosuch0", 1400)),
  upMissing: attempt(() => linkSetUp("nosuch0")),
  mtuTooSmall: attempt(() => linkSetMtu(first.name, 10)),
  pattern: attempt(() => {
    const t = openTun("dti%d");
    closeTun(t.fd);
    return t.name;
  }),
};
closeTun(first.fd);
const reopened = attempt(() => closeTun(openTun("dti0").fd));
console.log(JSON.stringify({ ...results, reopened }));
