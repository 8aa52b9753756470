/**
 * The seg6 tunnel source of this network namespace (`ip sr tunsrc`, iproute2's ip-sr(8)):
 * the outer IPv6 source the kernel writes for seg6 encapsulation (H.Encaps / H.Encaps.Red,
 * RFC 8986 §5) when it is set, instead of the address it would pick towards the segment.
 * Read through iproute2 (the generic-netlink SEG6 family's SEG6_CMD_GET_TUNSRC), which the
 * kernel DTIs already need; once per DTI up, never on the data path.
 *
 * @module
 */
import { formatIPv6, parseIPv6 } from "../net/addr.ts";

/**
 * The tunnel source as canonical text, or null when none is set (`::`) or it cannot be read
 * (no iproute2, no seg6): then the kernel picks the source by route, as for any packet.
 */
export function seg6TunnelSource(): string | null {
  let out: string;
  try {
    const r = Bun.spawnSync(["ip", "sr", "tunsrc", "show"], { stdout: "pipe", stderr: "ignore" });
    if (r.exitCode !== 0) return null;
    out = r.stdout.toString();
  } catch {
    return null;
  }
  const text = /tunsrc addr (\S+)/.exec(out)?.[1];
  const bytes = text === undefined ? null : parseIPv6(text);
  if (!bytes || bytes.every((b) => b === 0)) return null;
  return formatIPv6(bytes);
}
