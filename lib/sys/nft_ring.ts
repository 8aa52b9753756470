/**
 * The nftables rule that goes with a TEP's packet ring (./packet_ring.ts): at the ring's
 * interface's netdev ingress hook — after the ring's tap saw the packet, before the IPv6
 * stack (net/core/dev.c, __netif_receive_skb_core) — drop exactly what the ring's filter
 * takes: for this host, EtherType IPv6 untagged, next header 4 directly, to the TEP's address;
 * so that the kernel neither delivers those packets to the raw IPv6 socket as well nor
 * answers them with an ICMPv6 Parameter Problem (RFC 8200 §4: an unrecognized next header)
 * when no socket takes them. Outer fragments (next header 44) and packets with extension
 * headers pass and reach the raw socket after reassembly; so do VLAN-tagged frames, which the
 * stack hands to a VLAN device or refuses (`ether type ip6` reads 0x8100 for a tag the
 * driver took off, nft_payload_copy_vlan). Dropped there, a packet costs none of ipv6_rcv,
 * ip6_rcv_core and the prerouting hook (the ring's first version dropped at prerouting).
 *
 * One table per TEP, named after its TUN (`dstm_ring_tep0`), made with nft(8) from a script
 * (https://wiki.nftables.org/wiki-nftables/index.php/Scripting): `table … {}` then `delete
 * table` first, so a table a killed TEP left behind is replaced, never doubled (also a family
 * ip6 table of the same name, the prerouting rule of an older dstm). Setup path only.
 *
 * @module
 */

/**
 * The table of the TEP whose TUN is `ifname`: ASCII letters and digits as they are, any other
 * byte of its UTF-8 as `_` and two hex digits (`rr-a` → `dstm_ring_rr_2da`, `rr_a` →
 * `dstm_ring_rr_5fa`), so two TUNs never share a table (a shared one would be replaced by the
 * second TEP and removed by the first to stop, letting the other's ring packets reach its raw
 * socket too: each forwarded twice).
 */
export function ringTableName(ifname: string): string {
  let name = "dstm_ring_";
  for (const byte of new TextEncoder().encode(ifname)) {
    const c = String.fromCharCode(byte);
    name += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, "0")}`;
  }
  return name;
}

function nft(script: string): { ok: boolean; error: string } {
  try {
    const r = Bun.spawnSync(["nft", "-f", "-"], {
      stdin: new TextEncoder().encode(script),
      stdout: "ignore",
      stderr: "pipe",
    });
    return { ok: r.exitCode === 0, error: r.stderr.toString().trim().split("\n")[0] ?? "" };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

/**
 * Installs (or replaces) the table that drops the ring's packets: those coming in by the
 * interface `iif` (the ring's, where the address is) for `dst6` (text) with next header 4
 * directly; the same packets on another interface go the kernel's way. Throws an Error naming
 * nft's first line of complaint (nft missing, no nf_tables or netdev ingress in the kernel,
 * no CAP_NET_ADMIN, no such interface).
 */
export function installRingDrop(table: string, dst6: string, iif: string): void {
  const r = nft(
    [
      `table ip6 ${table} {}`,
      `delete table ip6 ${table}`,
      `table netdev ${table} {}`,
      `delete table netdev ${table}`,
      `table netdev ${table} {`,
      "  chain ingress {",
      `    type filter hook ingress device ${JSON.stringify(iif)} priority -500; policy accept;`,
      `    meta pkttype host ether type ip6 ip6 nexthdr 4 ip6 daddr ${dst6} counter drop`,
      "  }",
      "}",
      "",
    ].join("\n"),
  );
  if (!r.ok) throw new Error(`nft: ${r.error || "failed"}`);
}

/**
 * Whether the table is there (`nft list table`; run asynchronously, off the event loop's
 * way). False also when nft cannot run.
 */
export async function ringDropPresent(table: string): Promise<boolean> {
  try {
    const p = Bun.spawn(["nft", "list", "table", "netdev", table], {
      stdout: "ignore",
      stderr: "ignore",
    });
    return (await p.exited) === 0;
  } catch {
    return false;
  }
}

/** Removes the table (nothing when it is gone already). Returns false when nft failed. */
export function removeRingDrop(table: string): boolean {
  return nft(`table netdev ${table} {}\ndelete table netdev ${table}\n`).ok;
}
