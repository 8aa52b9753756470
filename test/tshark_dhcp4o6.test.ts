/**
 * dstm's DHCPv4-over-DHCPv6 exchanges, captured and dissected by tshark (Wireshark), show no
 * malformed packets or expert warnings, and the fields are what was intended. As root, in a
 * namespace of its own (the capture is on that namespace's loopback only).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const skip =
  netnsSkipReason() ??
  (Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh installs it)");
announceSkip("tshark_dhcp4o6", skip);
const dir = mkdtempSync(join(tmpdir(), "dstm-tshark-"));
let ns: Netns | undefined;
afterAll(() => {
  ns?.delete();
  rmSync(dir, { recursive: true, force: true });
});

test.skipIf(skip !== null)(
  "tshark dissects dstm's DHCPv4-over-DHCPv6 exchange cleanly",
  async () => {
    ns = createNetns("dstmt-");
    const pcap = join(dir, "dhcp4o6.pcap");
    // The exchange is 7 datagrams; tshark stops (and closes the file) after the 7th, so the
    // test never has to guess how long writing the capture takes.
    const capture = ns.spawn(
      [
        "tshark",
        "-q",
        "-F",
        "pcap",
        "-i",
        "lo",
        "-c",
        "7",
        "-f",
        "udp port 547 or udp port 546",
        "-w",
        pcap,
      ],
      { timeoutMs: 30_000 },
    );
    // tshark prints "Capturing on 'Loopback: lo'" on stderr once it listens.
    const reader = (capture.stderr as ReadableStream<Uint8Array>).getReader();
    let started = "";
    while (!started.includes("Capturing on")) {
      const { value, done } = await reader.read();
      if (done) break;
      started += new TextDecoder().decode(value);
    }
    const run = ns.exec([BUN, join(ROOT, "test", "e2e_scripts", "dhcp4o6_exchange.ts")], {
      cwd: ROOT,
    });
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as {
      offered: string;
      acked: boolean;
      portParams: unknown;
    };
    expect(result.offered).toBe("198.51.100.1");
    expect(result.acked).toBe(true);
    expect(await capture.exited).toBe(0);
    // Stage 1: tshark dissects the captured DHCPv6 envelopes.
    const outer = ns.exec(["tshark", "-r", pcap, "-V"]).stdout;
    expect(outer).not.toMatch(/Malformed/i);
    expect(outer).not.toMatch(/Expert Info \((Warning|Error)/);
    const types = ns
      .exec(["tshark", "-r", pcap, "-T", "fields", "-e", "dhcpv6.msgtype"])
      .stdout.trim()
      .split("\n");
    // DISCOVER, OFFER, REQUEST, ACK, REQUEST (renewing), ACK, RELEASE in DHCPV4-QUERY (20) / -RESPONSE (21).
    expect(types).toEqual(["20", "21", "20", "21", "20", "21", "20"]);
    // Stage 2: Wireshark 4.0 does not open option 87 (DHCPv4 Message), so its payloads, taken from
    // the capture, are dissected by tshark's DHCP dissector on their own (text2pcap wraps them in UDP 68→67).
    const inner = dhcp4Payloads(await Bun.file(pcap).bytes());
    expect(inner.length).toBe(7);
    const hexdump = inner.map((bytes) => `${hexLines(bytes)}\n`).join("\n");
    const dump = join(dir, "dhcp4.txt");
    await Bun.write(dump, hexdump);
    const dhcp4pcap = join(dir, "dhcp4.pcap");
    expect(ns.exec(["text2pcap", "-q", "-u", "68,67", dump, dhcp4pcap]).code).toBe(0);
    const details = ns.exec(["tshark", "-r", dhcp4pcap, "-V"]).stdout;
    expect(details).not.toMatch(/Malformed/i);
    expect(details).not.toMatch(/Expert Info \((Warning|Error)/);
    expect(details).toContain("Dynamic Host Configuration Protocol (ACK)");
    const fields = ns
      .exec([
        "tshark",
        "-r",
        dhcp4pcap,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "dhcp.option.dhcp",
        "-e",
        "dhcp.ip.your",
        "-e",
        "dhcp.option.ip_address_lease_time",
        "-e",
        "dhcp.ip.client",
      ])
      .stdout.trim()
      .split("\n")
      .map((line) => line.split("|"));
    expect(fields.map((f) => f[0])).toEqual(["1", "2", "3", "5", "3", "5", "7"]);
    expect(fields[3]![1]).toBe("198.51.100.1"); // ACK yiaddr
    expect(fields[3]![2]).toBe("600"); // lease time
    expect(fields[4]![3]).toBe("198.51.100.1"); // the renewing REQUEST's ciaddr
    expect(details).toMatch(/Option: \(159\)/); // OPTION_V4_PORTPARAMS in the OFFER and ACK
  },
  60_000,
);

/** The OPTION_DHCPV4_MSG (87) payloads of the DHCPv6 messages in a pcap (Ethernet or Linux cooked). */
function dhcp4Payloads(file: Uint8Array): Uint8Array[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const little = view.getUint32(0, true) === 0xa1b2c3d4 || view.getUint32(0, true) === 0xa1b23c4d;
  const link = view.getUint32(20, little);
  const linkHeader = link === 1 ? 14 : link === 113 ? 16 : link === 276 ? 20 : 0;
  const out: Uint8Array[] = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const captured = view.getUint32(at + 8, little);
    const packet = file.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    const ip6 = linkHeader;
    if (packet[ip6]! >> 4 !== 6 || packet[ip6 + 6] !== 17) continue;
    const dhcp = ip6 + 40 + 8;
    for (let p = dhcp + 4; p + 4 <= packet.length; ) {
      const code = (packet[p]! << 8) | packet[p + 1]!;
      const length = (packet[p + 2]! << 8) | packet[p + 3]!;
      if (code === 87) out.push(packet.slice(p + 4, p + 4 + length));
      p += 4 + length;
    }
  }
  return out;
}

/** od-style offsets and hex bytes, the input text2pcap reads. */
function hexLines(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const chunk = Array.from(bytes.subarray(i, i + 16), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join(" ");
    lines.push(`${i.toString(16).padStart(6, "0")} ${chunk}`);
  }
  return lines.join("\n");
}
