/**
 * A TEP binding table for tests of the TEP's control plane (lib/tep/control.ts): it holds
 * what the data plane would read, as IPv4 address → host IPv6 text.
 */
import { formatIPv6 } from "../../lib/net/addr.ts";
import type { BindingWriter } from "../../lib/tep/control.ts";
import type { WirePortSet } from "../../lib/wire/dstm_types.ts";

export class RecordingTable implements BindingWriter {
  readonly map = new Map<number, string>();
  set(ipv4: number, _ps: WirePortSet, host6: Uint8Array) {
    this.map.set(ipv4, formatIPv6(host6));
  }
  delete(ipv4: number) {
    this.map.delete(ipv4);
  }
  replaceAll(entries: readonly { ipv4: number; host6: Uint8Array }[]) {
    this.map.clear();
    for (const e of entries) this.map.set(e.ipv4, formatIPv6(e.host6));
  }
}
