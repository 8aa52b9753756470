/**
 * A host whose own Linux kernel does 4over6 — the peer dstm's TEP must interoperate with,
 * not dstm talking to itself (test/kernel_peers.test.ts, test/tep_static_reload.test.ts,
 * bench/tep_alone.ts):
 * IPv4 `ipv4` on its loopback, packets to `route4` leave in seg6 `encap.red` (an IPv6 header
 * and nothing else: IPv4-in-IPv6, next header 4, RFC 2473) from `sid` to the TEP at `tep6`,
 * and IPv4-in-IPv6 arriving for `sid` is decapsulated by the End.DX4 behaviour (RFC 8986
 * §4.6) and delivered locally.
 */
import { type Netns, vethPair } from "../../lib/sys/netns.ts";
import { waitUntil } from "./wait.ts";

export interface Seg6HostOptions {
  /** The host's IPv4 address (put on lo, /32) and the source of what it sends. */
  readonly ipv4: string;
  /** Its tunnel address (the End.DX4 SID, also the outer source: `ip sr tunsrc`). Default 2001:db8:1::10. */
  readonly sid?: string;
  /** The TEP's IPv6 address (the one segment of encap.red). Default 2001:db8:1::1 (./tep_argv.ts). */
  readonly tep6?: string;
  /** The IPv4 destinations sent through the tunnel (CIDR). Default 192.0.2.0/24. */
  readonly route4?: string;
  /** The host's link towards the TEP. Default h0. */
  readonly dev?: string;
}

/** Configures `host` as a kernel 4over6 host (see the module text). Throws when `ip` fails. */
export function seg6Host(host: Netns, o: Seg6HostOptions): void {
  const sid = o.sid ?? "2001:db8:1::10";
  const dev = o.dev ?? "h0";
  host.up("lo");
  host.addAddress("lo", `${o.ipv4}/32`);
  host.ip("sr", "tunsrc", "set", sid);
  seg6EncapRed(
    host,
    "add",
    o.route4 ?? "192.0.2.0/24",
    o.tep6 ?? "2001:db8:1::1",
    dev,
    "src",
    o.ipv4,
  );
  seg6EndDx4(host, sid, dev);
}

/**
 * The kernel host of test/kernel_peers*.test.ts and test/tep_static_reload.test.ts: `host` is
 * {@link seg6Host} with IPv4 `ipv4` and the default SID 2001:db8:1::10, and `tep` routes that
 * SID via the host's link address 2001:db8:1::11. Returns the TEP's `--binding` for it.
 */
export function kernelHostBehindTep(host: Netns, tep: Netns, ipv4: string): string {
  seg6Host(host, { ipv4 });
  tep.addRoute("2001:db8:1::10/128", "via", "2001:db8:1::11");
  return `${ipv4}=2001:db8:1::10`;
}

/**
 * `ip route VERB route4 encap seg6 mode encap.red segs segment dev DEV …more` in `ns`: IPv4 to
 * `route4` leaves in an IPv6 header to `segment` and nothing else (IPv4-in-IPv6, next header
 * 4). `more` is the rest of the route (`src`, `mtu lock …`). Throws when `ip` fails.
 */
export function seg6EncapRed(
  ns: Netns,
  verb: "add" | "replace",
  route4: string,
  segment: string,
  dev: string,
  ...more: string[]
): void {
  ns.ip(
    "route",
    verb,
    route4,
    "encap",
    "seg6",
    "mode",
    "encap.red",
    "segs",
    segment,
    "dev",
    dev,
    ...more,
  );
}

/**
 * `ip -6 route add SID/128 encap seg6local action End.DX4 nh4 NH4 dev DEV` in `ns`: IPv4-in-IPv6
 * arriving for `sid` is decapsulated (RFC 8986 §4.6) and the IPv4 packet sent to `nh4`
 * (0.0.0.0: looked up in the IPv4 routing table). Throws when `ip` fails.
 */
export function seg6EndDx4(ns: Netns, sid: string, dev: string, nh4 = "0.0.0.0"): void {
  ns.ip(
    "-6",
    "route",
    "add",
    `${sid}/128`,
    "encap",
    "seg6local",
    "action",
    "End.DX4",
    "nh4",
    nh4,
    "dev",
    dev,
  );
}

/**
 * host ── tep ── web in three fresh namespaces from `ns`: the host a {@link kernelHostBehindTep}
 * kernel 4over6 host (h0 2001:db8:1::11/64, IPv4 198.51.100.10), the TEP t0 2001:db8:1::1/64
 * and t1 192.0.2.1/24, the IPv4 web server w0 192.0.2.80/24 routing through it. Returns them
 * and the TEP's `--binding` for the host. Throws when `ip` fails.
 */
export function kernelHostTepWeb(ns: () => Netns): {
  host: Netns;
  tep: Netns;
  web: Netns;
  binding: string;
} {
  const host = ns();
  const tep = ns();
  const web = ns();
  vethPair(host, "h0", tep, "t0");
  vethPair(tep, "t1", web, "w0");
  host.addAddress("h0", "2001:db8:1::11/64");
  tep.addAddress("t0", "2001:db8:1::1/64");
  tep.addAddress("t1", "192.0.2.1/24");
  web.addAddress("w0", "192.0.2.80/24");
  web.addRoute("default", "via", "192.0.2.1");
  return { host, tep, web, binding: kernelHostBehindTep(host, tep, "198.51.100.10") };
}

/** Pings 192.0.2.80 from `host` until one answers (neighbours resolved on every link), ≤ 20 s. */
export async function pingThroughTep(host: Netns): Promise<void> {
  await waitUntil(() => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0, {
    timeoutMs: 20_000,
    intervalMs: 200,
    what: "ping host → web through the TEP",
  });
}
