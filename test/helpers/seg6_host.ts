/**
 * A host whose own Linux kernel does 4over6 — the peer dstm's TEP must interoperate with,
 * not dstm talking to itself (test/kernel_peers.test.ts, test/tep_static_reload.test.ts):
 * IPv4 `ipv4` on its loopback, packets to `route4` leave in seg6 `encap.red` (an IPv6 header
 * and nothing else: IPv4-in-IPv6, next header 4, RFC 2473) from `sid` to the TEP at `tep6`,
 * and IPv4-in-IPv6 arriving for `sid` is decapsulated by the End.DX4 behaviour (RFC 8986
 * §4.6) and delivered locally.
 */
import type { Netns } from "../../lib/sys/netns.ts";

export interface Seg6HostOptions {
  /** The host's IPv4 address (put on lo, /32) and the source of what it sends. */
  readonly ipv4: string;
  /** Its tunnel address (the End.DX4 SID, also the outer source: `ip sr tunsrc`). */
  readonly sid: string;
  /** The TEP's IPv6 address (the one segment of encap.red). */
  readonly tep6: string;
  /** The IPv4 destinations sent through the tunnel (CIDR). */
  readonly route4: string;
  /** The host's link towards the TEP. */
  readonly dev: string;
}

/** Configures `host` as a kernel 4over6 host (see the module text). Throws when `ip` fails. */
export function seg6Host(host: Netns, o: Seg6HostOptions): void {
  host.up("lo");
  host.addAddress("lo", `${o.ipv4}/32`);
  host.ip("sr", "tunsrc", "set", o.sid);
  host.ip(
    "route",
    "add",
    o.route4,
    "encap",
    "seg6",
    "mode",
    "encap.red",
    "segs",
    o.tep6,
    "dev",
    o.dev,
    "src",
    o.ipv4,
  );
  host.ip(
    "-6",
    "route",
    "add",
    `${o.sid}/128`,
    "encap",
    "seg6local",
    "action",
    "End.DX4",
    "nh4",
    "0.0.0.0",
    "dev",
    o.dev,
  );
}
