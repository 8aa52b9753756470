/**
 * The nftables rule that goes with a TEP's packet ring (./packet_ring.ts): at prerouting, before
 * defragmentation (priority -450; nf_defrag_ipv6 is -400), drop exactly what the ring forwards
 * — for this host, next header 4 directly, to the TEP's address — so that the kernel neither delivers those packets to the raw IPv6 socket as
 * well nor answers them with an ICMPv6 Parameter Problem (RFC 8200 §4: an unrecognized next
 * header) when no socket takes them. Outer fragments (next header 44; the ring keeps only a
 * mark of each, never forwarded) and packets with extension headers pass and reach the raw
 * socket after reassembly.
 *
 * One table per TEP, named after its TUN (`dstm_ring_tep0`), made with nft(8) from a script
 * (https://wiki.nftables.org/wiki-nftables/index.php/Scripting): `table … {}` then `delete
 * table` first, so a table a killed TEP left behind is replaced, never doubled. Setup path only.
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
 * nft's first line of complaint (nft missing, no nf_tables in the kernel, no CAP_NET_ADMIN).
 */
export function installRingDrop(table: string, dst6: string, iif: string): void {
  const r = nft(
    [
      `table ip6 ${table} {}`,
      `delete table ip6 ${table}`,
      `table ip6 ${table} {`,
      "  chain prerouting {",
      "    type filter hook prerouting priority -450; policy accept;",
      `    iifname ${JSON.stringify(iif)} meta pkttype host ip6 nexthdr 4 ip6 daddr ${dst6} counter drop`,
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
    const p = Bun.spawn(["nft", "list", "table", "ip6", table], {
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
  return nft(`table ip6 ${table} {}\ndelete table ip6 ${table}\n`).ok;
}
