/**
 * The client's `server-unreachable-icmp` warning names the ICMPv6 code (RFC 4443 §3.1) the
 * Linux kernel on the way answered with, read from a raw ICMPv6 socket
 * (lib/client/unreachable_reason.ts), instead of "most often port unreachable" for every code
 * (Bun's UDP socket gives no code). Three cases the kernel makes, in a namespace made here
 * (dstmt-unr-…): nothing listens on UDP 4607 (code 4), an nftables rule rejects it with
 * admin-prohibited (code 1), no host holds the address on a link (neighbour discovery fails:
 * code 3). Plus the parser on crafted messages (no root).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseQuotedUdp, unreachableText } from "../lib/client/unreachable_reason.ts";
import { parseIPv6 } from "../lib/net/addr.ts";
import type { Netns } from "../lib/sys/netns.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { spawnDstm } from "./helpers/process.ts";

/** An ICMPv6 Destination Unreachable of `code` quoting a UDP datagram src:sport → dst:dport. */
function unreachable(code: number, src: string, dst: string, sport: number, dport: number) {
  const m = new Uint8Array(8 + 40 + 8);
  m[0] = 1;
  m[1] = code;
  m[8] = 0x60;
  m[8 + 6] = 17;
  m.set(parseIPv6(src)!, 8 + 8);
  m.set(parseIPv6(dst)!, 8 + 24);
  new DataView(m.buffer).setUint16(48, sport);
  new DataView(m.buffer).setUint16(50, dport);
  return m;
}

describe("parseQuotedUdp / unreachableText", () => {
  const from = parseIPv6("2001:db8:1::1")!;
  test("reads the code, the quoted addresses and ports", () => {
    const m = unreachable(4, "2001:db8:1::c", "2001:db8:1::1", 40000, 4607);
    const q = parseQuotedUdp(m, m.length, from)!;
    expect(q.code).toBe(4);
    expect(q.srcPort).toBe(40000);
    expect(q.dstPort).toBe(4607);
    expect(q.dst).toEqual(parseIPv6("2001:db8:1::1")!);
    expect(q.src).toEqual(parseIPv6("2001:db8:1::c")!);
  });
  test("another type, no UDP inside, or too short: null", () => {
    const m = unreachable(4, "2001:db8:1::c", "2001:db8:1::1", 40000, 4607);
    expect(parseQuotedUdp(Uint8Array.of(3, ...m.subarray(1)), m.length, from)).toBeNull();
    const tcp = m.slice();
    tcp[8 + 6] = 6;
    expect(parseQuotedUdp(tcp, tcp.length, from)).toBeNull();
    expect(parseQuotedUdp(m, 50, from)).toBeNull();
    const v4 = m.slice();
    v4[8] = 0x45;
    expect(parseQuotedUdp(v4, v4.length, from)).toBeNull();
  });
  test("each RFC 4443 §3.1 code in its own words; a router on the way is named", () => {
    const texts = [0, 1, 2, 3, 4, 5, 6, 9].map((code) =>
      unreachableText(code, "2001:db8:1::1", "2001:db8:1::1", 4607),
    );
    expect(new Set(texts).size).toBe(8);
    expect(texts[4]).toContain("nothing listens on UDP 4607 at 2001:db8:1::1");
    expect(texts[1]).toContain("firewall");
    expect(texts[7]).toContain("code 9");
    expect(unreachableText(3, "2001:db8:9::1", "2001:db8:1::1", 4607)).toContain(
      "said by 2001:db8:9::1",
    );
  });
});

const skip = netnsSkipReason({ tun: true });
announceSkip("the ICMPv6 code of an unreachable server, in words", skip);

describe.skipIf(skip !== null)("server-unreachable-icmp names the kernel's code", () => {
  let ns: Netns;
  let run: string;
  beforeAll(() => {
    ns = addressNetns("dstmt-unr-", ["2001:db8:1::c", "2001:db8:1::1", "2001:db8:1::2"]);
    run = mkdtempSync(join(tmpdir(), "dstm-unr-"));
    // 2001:db8:1::2: UDP 4607 rejected with admin-prohibited (code 1).
    const rules = join(run, "reject.nft");
    writeFileSync(
      rules,
      `table inet dstmt_unr {
        chain input {
          type filter hook input priority 0;
          ip6 daddr 2001:db8:1::2 udp dport 4607 reject with icmpv6 type admin-prohibited
        }
      }\n`,
    );
    const nft = ns.exec(["nft", "-f", rules]);
    if (nft.code !== 0) throw new Error(`nft: ${nft.stderr}`);
    // 2001:db8:5::/64 on a veth whose other end holds no 2001:db8:5::99 (code 3).
    ns.ip("link", "add", "unr0", "type", "veth", "peer", "name", "unr1");
    ns.ip("link", "set", "unr0", "up");
    ns.ip("link", "set", "unr1", "up");
    ns.ip("-6", "addr", "add", "2001:db8:5::c/64", "dev", "unr0", "nodad");
  });
  afterAll(() => {
    ns?.delete();
    if (run) rmSync(run, { recursive: true, force: true });
  });

  const cases = [
    {
      name: "nothing listens (port unreachable, code 4)",
      server: "2001:db8:1::1",
      host6: "2001:db8:1::c",
      says: ["ICMPv6 port unreachable", "nothing listens on UDP 4607 at 2001:db8:1::1"],
    },
    {
      name: "a firewall rejects (administratively prohibited, code 1)",
      server: "2001:db8:1::2",
      host6: "2001:db8:1::c",
      says: ["ICMPv6 administratively prohibited", "a firewall refuses UDP 4607"],
    },
    {
      name: "nobody holds the address (address unreachable, code 3)",
      server: "2001:db8:5::99",
      host6: "2001:db8:5::c",
      says: ["ICMPv6 address unreachable", "no host answers at 2001:db8:5::99"],
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const sock = join(run, `${c.server.replaceAll(":", "_")}.sock`);
      const client = spawnDstm(
        [
          ...["client", "--server", c.server, "--host6", c.host6],
          ...["--control", sock, "--ifname", "dtiunr"],
        ],
        { DSTM_RUNTIME_DIR: run },
        ns.name,
      );
      try {
        const line = await client.waitFor(/server-unreachable-icmp/, 40_000);
        expect(line).toContain("WARN");
        for (const text of c.says) expect(line).toContain(text);
        // Not the generic guess any more.
        expect(line).not.toContain("most often");
      } finally {
        client.proc.kill("SIGTERM");
        await client.exited;
      }
    }, 90_000);
  }
});
