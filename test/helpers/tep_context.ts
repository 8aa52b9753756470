/**
 * A TEP's per-packet context for the batch-loop tests (no root, no Workers): a binding table
 * with the given bindings, one counter slice, TEP IPv4 192.0.2.1, MSS clamping off.
 */
import { parseIPv4 } from "../../lib/net/addr.ts";
import type { PortSetValue } from "../../lib/net/portset.ts";
import { BindingTable } from "../../lib/tunnel/binding.ts";
import { Counters } from "../../lib/tunnel/counters.ts";
import { TepContext } from "../../lib/tunnel/pipeline.ts";

/** A whole address: no port set. */
export const WHOLE: PortSetValue = { offset: 0, psidLength: 0, psid: 0 };

/** What a fake raw socket hands the TEP: the IPv4 packet, its outer source, traffic class. */
export interface Arrival {
  packet: Uint8Array;
  src6: Uint8Array;
  trafficClass: number;
}

/** The context and its counters, with `bindings` (IPv4 text, port set, host IPv6 bytes). */
export function tepContext(bindings: readonly (readonly [string, PortSetValue, Uint8Array])[]): {
  tep: TepContext;
  counters: Counters;
} {
  const table = BindingTable.create({ maxEntries: 16 });
  for (const [ipv4, portSet, host6] of bindings) table.set(parseIPv4(ipv4)!, portSet, host6);
  const counters = Counters.create({ slices: 1 });
  const tep = new TepContext({
    bindings: table,
    counters: counters.slice(0),
    tepIPv4: parseIPv4("192.0.2.1")!,
    mssClamp: false,
  });
  return { tep, counters };
}
