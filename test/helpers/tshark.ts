/**
 * Captures for tshark made without root: UDP/IPv6 datagrams with a correct checksum, written as
 * a pcap (LINKTYPE_RAW) with lib/net/pcap.ts; and tshark runs that load dstm's Lua dissector.
 */
import { join } from "node:path";
import { parseIPv6 } from "../../lib/net/addr.ts";
import { checksumSum, finishChecksum } from "../../lib/net/checksum.ts";
import { encodePcap } from "../../lib/net/pcap.ts";
import { ROOT } from "./process.ts";

/** The Wireshark dissector under test. */
export const DISSECTOR = join(ROOT, "contrib", "wireshark", "dstm.lua");

/** One UDP datagram in an IPv6 packet (hop limit 64), UDP checksum filled in (RFC 8200 §8.1). */
export function udp6Packet(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  payload: Uint8Array,
): Uint8Array {
  const udpLength = 8 + payload.length;
  const p = new Uint8Array(40 + udpLength);
  const view = new DataView(p.buffer);
  view.setUint32(0, 0x60000000);
  view.setUint16(4, udpLength);
  p[6] = 17;
  p[7] = 64;
  p.set(parseIPv6(src)!, 8);
  p.set(parseIPv6(dst)!, 24);
  view.setUint16(40, sport);
  view.setUint16(42, dport);
  view.setUint16(44, udpLength);
  p.set(payload, 48);
  // Pseudo-header: source, destination, upper-layer length, next header 17.
  let sum = checksumSum(p, 8, 32);
  sum = checksumSum(Uint8Array.of(0, 0, udpLength >> 8, udpLength & 0xff, 0, 0, 0, 17), 0, 8, sum);
  sum = checksumSum(p, 40, udpLength, sum);
  view.setUint16(46, finishChecksum(sum) || 0xffff);
  return p;
}

/** Writes `packets` as a pcap file, 1 ms apart. */
export async function writeCapture(path: string, packets: readonly Uint8Array[]): Promise<void> {
  await Bun.write(
    path,
    encodePcap(packets.map((data, i) => ({ timeMs: 1_764_150_000_000 + i, data }))),
  );
}

/** Runs tshark with the dissector loaded; throws with stderr when it fails. */
export function tshark(args: readonly string[]): string {
  const run = Bun.spawnSync(["tshark", "-n", "-X", `lua_script:${DISSECTOR}`, ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const stderr = run.stderr.toString().replace(/^Running as user "root".*\n/m, "");
  if (run.exitCode !== 0 || /Lua: Error|lua_script/i.test(stderr))
    throw new Error(`tshark ${args.join(" ")} failed (${run.exitCode}): ${stderr}`);
  return run.stdout.toString();
}

/**
 * Per frame, the values of `fields` (`-T fields`; several occurrences joined with `;`).
 * Rows are keyed by field name; an absent field is "".
 */
export function tsharkFields(
  pcap: string,
  fields: readonly string[],
  filter?: string,
): Record<string, string>[] {
  const args = ["-r", pcap, "-T", "fields", "-E", "separator=|", "-E", "aggregator=;"];
  if (filter) args.push("-Y", filter);
  for (const field of fields) args.push("-e", field);
  const out = tshark(args).replace(/\n$/, "");
  if (out === "") return [];
  return out.split("\n").map((line) => {
    const values = line.split("|");
    return Object.fromEntries(fields.map((field, i) => [field, values[i] ?? ""]));
  });
}
