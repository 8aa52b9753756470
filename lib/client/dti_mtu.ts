/**
 * The DTI's MTU (RFC 2473 §6.7: the tunnel MTU is the path MTU towards the TEP less the 40-byte
 * IPv6 header): `--mtu` when given, else the host's IPv6 link MTU − 40. A `--mtu` above that
 * is taken as asked (the path may be wider than the link says, e.g. jumbo frames beyond it)
 * but said once per DTI up at warn (`mtu-above-link`): every packet that fills it is refused
 * on the way out, and TCP stalls until Packet Too Big or PMTU probing lowers it.
 *
 * @module
 */
import type { Logger } from "../control/log.ts";
import { linkMtu } from "../sys/ifinfo.ts";

/** The IPv6 header the tunnel adds (RFC 2473), in bytes. */
export const TUNNEL_OVERHEAD = 40;

/**
 * The MTU for the DTI `ifname` (bytes): `configured` (`--mtu`), or the MTU of `hostLink` (the
 * host's IPv6 interface; 1500 when unknown) − 40. Warns on `log` when `configured` + 40 is
 * more than the link's MTU.
 */
export function dtiMtu(
  configured: number | undefined,
  hostLink: string | null | undefined,
  ifname: string,
  log: Logger | undefined,
): number {
  const link = (hostLink ? linkMtu(hostLink) : null) ?? 1500;
  if (configured === undefined) return link - TUNNEL_OVERHEAD;
  if (configured + TUNNEL_OVERHEAD > link)
    log?.warn("mtu-above-link", {
      ifname,
      mtu: configured,
      "link-mtu": link,
      detail: `--mtu ${configured} + the 40-byte IPv6 header is more than ${hostLink ?? "the IPv6 link"}'s MTU ${link}: full-size packets will not fit (at most ${link - TUNNEL_OVERHEAD})`,
    });
  return configured;
}
