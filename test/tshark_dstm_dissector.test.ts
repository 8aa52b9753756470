/**
 * contrib/wireshark/dstm.lua through tshark, without root: captures written from the codecs'
 * own bytes (every DSTM message type, option and status; DHCPV4-QUERY/RESPONSE with option 87
 * handed to Wireshark's DHCP dissector and option 88) are dissected with every field decoded to
 * the value encoded and no malformed packet or expert warning; and for each malformed message,
 * the dissector names the same decode error as lib/wire/dstm.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatIPv4, parseIPv4 } from "../lib/net/addr.ts";
import { signMessage } from "../lib/wire/auth.ts";
import { type Dhcp4Message, Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { DHCP4O6_FLAG_UNICAST, encodeDhcp4o6, encodeDhcp6 } from "../lib/wire/dhcp4o6.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, Status } from "../lib/wire/dstm_types.ts";
import { dhcp4Message } from "./helpers/dhcp4.ts";
import { malformedCases } from "./helpers/dstm_malformed.ts";
import { toHex } from "./helpers/packets.ts";
import { tshark, tsharkFields, udp6Packet, writeCapture } from "./helpers/tshark.ts";

const skip = Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh installs it)";
if (skip) console.warn(`[skip] tshark_dstm_dissector: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), "dstm-lua-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ip = (text: string) => parseIPv4(text) as number;
const HOST6 = "2001:db8:1::25";
const SERVER6 = "2001:db8::53";
const TEP6 = "2001:db8::1";
const KEY = { id: 7, secret: Uint8Array.from({ length: 32 }, (_, i) => i) };
const NONCE = Uint8Array.of(0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8);
const NOW = 1_764_150_000_123;

/** [message, from server (else to server), on the TEP port]. */
const MESSAGES: [DstmMessage, boolean, boolean][] = [
  [
    {
      type: MessageType.DISCOVER,
      xid: 0x1a2b3c4d,
      host6: HOST6,
      host4: ip("192.0.2.129"),
      leaseTime: 3600,
    },
    false,
    false,
  ],
  [
    {
      type: MessageType.DISCOVER_ACK,
      xid: 0x1a2b3c4d,
      host4: ip("192.0.2.129"),
      host6: HOST6,
      tep4: ip("192.0.2.1"),
      tep6: TEP6,
      portSet: { offset: 6, psidLength: 2, psid: 1 },
      leaseTime: 3600,
    },
    true,
    false,
  ],
  [
    {
      type: MessageType.DISCOVER_ACK,
      xid: 0x1a2b3c4f,
      host4: ip("192.0.2.130"),
      host6: HOST6,
      tep6: TEP6,
      leaseTime: 1234,
      existingLease: true,
    },
    true,
    false,
  ],
  [
    { type: MessageType.REQUEST, xid: 2, host4: ip("192.0.2.129"), host6: HOST6, leaseTime: 600 },
    false,
    false,
  ],
  [
    {
      type: MessageType.REQUEST_ACK,
      xid: 2,
      host4: ip("192.0.2.129"),
      host6: HOST6,
      tep6: TEP6,
      leaseTime: 600,
    },
    true,
    false,
  ],
  [
    { type: MessageType.RELEASE, xid: 0x1a2b3c4e, host4: ip("192.0.2.129"), host6: HOST6 },
    false,
    false,
  ],
  [
    {
      type: MessageType.RELEASE_ACK,
      xid: 0x1a2b3c4e,
      host4: ip("192.0.2.129"),
      host6: HOST6,
      status: Status.SUCCESS,
      statusText: "released",
    },
    true,
    false,
  ],
  ...Object.values(Status)
    .filter((status) => status !== Status.SUCCESS)
    .map((status): [DstmMessage, boolean, boolean] => [
      { type: MessageType.NAK, xid: 100 + status, status, statusText: `status ${status} – é ⇄` },
      true,
      false,
    ]),
  [
    {
      type: MessageType.NAK,
      xid: 9,
      status: Status.ADDRESS_IN_USE,
      host4: ip("192.0.2.7"),
      host6: HOST6,
    },
    true,
    false,
  ],
  [
    {
      type: MessageType.BIND,
      xid: 10,
      host4: ip("198.51.100.9"),
      host6: HOST6,
      portSet: { offset: 6, psidLength: 6, psid: 63 },
      leaseTime: 7200,
      generation: 2 ** 40 + 5,
    },
    true,
    true,
  ],
  [
    {
      type: MessageType.UNBIND,
      xid: 11,
      host4: ip("198.51.100.9"),
      host6: HOST6,
      portSet: { offset: 0, psidLength: 16, psid: 0xfffe },
      generation: 12,
    },
    true,
    true,
  ],
  [
    {
      type: MessageType.BIND_ACK,
      xid: 11,
      host4: ip("198.51.100.9"),
      host6: HOST6,
      portSet: { offset: 4, psidLength: 0, psid: 0 },
    },
    false,
    true,
  ],
  [
    {
      type: MessageType.SYNC,
      xid: 12,
      tep6: TEP6,
      tep4: ip("192.0.2.1"),
      syncCount: 2,
      syncDigest: 0xdeadbeef,
    },
    false,
    true,
  ],
  [
    {
      type: MessageType.SYNC,
      xid: 15,
      tep6: TEP6,
      syncCount: 0,
      syncDigest: 0,
      snapshotMissing: {
        id: 0xc0ffee,
        parts: 370,
        ranges: [
          { first: 3, last: 3 },
          { first: 40, last: 369 },
        ],
      },
    },
    false,
    true,
  ],
  [
    {
      type: MessageType.SNAPSHOT,
      xid: 13,
      snapshot: { id: 0xc0ffee, part: 1, parts: 3 },
      generation: 2 ** 53 - 1,
      bindings: [
        { host4: ip("198.51.100.9"), host6: HOST6, portSet: { offset: 6, psidLength: 2, psid: 3 } },
        {
          host4: ip("203.0.113.77"),
          host6: "2001:db8:2::1",
          portSet: { offset: 0, psidLength: 0, psid: 0 },
        },
      ],
    },
    true,
    true,
  ],
  [{ type: MessageType.SNAPSHOT, xid: 14, snapshot: { id: 1, part: 0, parts: 1 } }, true, true],
];
/** Messages sent signed (AUTH last). */
const SIGNED = new Set<number>([MessageType.RELEASE, MessageType.SYNC, MessageType.BIND_ACK]);

function bytesOf(msg: DstmMessage): Uint8Array {
  return SIGNED.has(msg.type) ? signMessage(msg, KEY, NOW, NONCE) : encodeMessage(msg);
}

/** Option codes in `bytes`, read from the TLVs (not from the dissector). */
function optionCodes(bytes: Uint8Array): number[] {
  const codes: number[] = [];
  for (let p = 12; p < bytes.length; p += 2 + bytes[p + 1]!) codes.push(bytes[p]!);
  return codes;
}

const hex32 = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;
const join_ = (values: (string | number)[]) => values.join(";");

/** What tshark must print for `msg` encoded as `bytes`, field by field. */
function expected(msg: DstmMessage, bytes: Uint8Array): Record<string, string> {
  const decoded = decodeMessage(bytes);
  if (!decoded.ok) throw new Error(decoded.error.message);
  const auth = decoded.value.auth;
  const portSets = [
    ...(msg.portSet ? [msg.portSet] : []),
    ...(msg.bindings ?? []).map((b) => b.portSet),
  ];
  const opt = (v: number | string | undefined) => (v === undefined ? "" : String(v));
  return {
    "dstm.version": "1",
    "dstm.type": String(msg.type),
    "dstm.xid": hex32(msg.xid),
    "dstm.length": String(bytes.length),
    "dstm.option.code": join_(optionCodes(bytes)),
    "dstm.host_ipv4": msg.host4 === undefined ? "" : formatIPv4(msg.host4),
    "dstm.host_ipv6": opt(msg.host6),
    "dstm.tep_ipv4": msg.tep4 === undefined ? "" : formatIPv4(msg.tep4),
    "dstm.tep_ipv6": opt(msg.tep6),
    "dstm.port_set.offset": join_(portSets.map((p) => p.offset)),
    "dstm.port_set.psid_length": join_(portSets.map((p) => p.psidLength)),
    "dstm.port_set.psid": join_(portSets.map((p) => p.psid)),
    "dstm.lease_time": opt(msg.leaseTime),
    "dstm.status.code": opt(msg.status),
    "dstm.status.text": opt(msg.statusText),
    "dstm.auth.key_id": opt(auth?.keyId),
    "dstm.auth.timestamp": opt(auth?.timestamp),
    "dstm.auth.nonce": auth ? toHex(auth.nonce) : "",
    "dstm.auth.mac": auth ? toHex(auth.mac) : "",
    "dstm.sync.count": opt(msg.syncCount),
    "dstm.sync.digest": msg.syncDigest === undefined ? "" : hex32(msg.syncDigest),
    "dstm.snapshot.id": msg.snapshot ? hex32(msg.snapshot.id) : "",
    "dstm.snapshot.part": opt(msg.snapshot?.part),
    "dstm.snapshot.parts": opt(msg.snapshot?.parts),
    "dstm.binding.host_ipv4": join_((msg.bindings ?? []).map((b) => formatIPv4(b.host4))),
    "dstm.binding.host_ipv6": join_((msg.bindings ?? []).map((b) => b.host6)),
    "dstm.existing_lease": decoded.value.existingLease ? "1" : "",
    "dstm.missing.id": msg.snapshotMissing ? hex32(msg.snapshotMissing.id) : "",
    "dstm.missing.parts": opt(msg.snapshotMissing?.parts),
    "dstm.missing.first": join_((msg.snapshotMissing?.ranges ?? []).map((r) => r.first)),
    "dstm.missing.last": join_((msg.snapshotMissing?.ranges ?? []).map((r) => r.last)),
    "dstm.generation": opt(msg.generation),
  };
}

/** A DISCOVER with extension options 0x80 (3 bytes) and 0xff (empty), which receivers skip. */
function withExtensions(): Uint8Array {
  const base = encodeMessage({ type: MessageType.DISCOVER, xid: 77, host6: HOST6 });
  const out = new Uint8Array(base.length + 7);
  out.set(base);
  out.set([0x80, 3, 1, 2, 3, 0xff, 0], base.length);
  new DataView(out.buffer).setUint16(8, out.length);
  return out;
}

function dhcp4(type: Dhcp4MessageType, yiaddr = 0): Dhcp4Message {
  const reply = type === Dhcp4MessageType.OFFER || type === Dhcp4MessageType.ACK;
  const options: Partial<Dhcp4Options> = reply
    ? {
        leaseTime: 600,
        serverId: ip("192.0.2.1"),
        portParams: { offset: 6, psidLength: 2, psid: 1 },
      }
    : { parameterRequestList: [1, 3, 51, 54, 159] };
  return dhcp4Message(type, options, { yiaddr });
}

describe.skipIf(skip !== null)("Wireshark dissector contrib/wireshark/dstm.lua", () => {
  test("every DSTM message, option and status decodes to the values encoded; no malformed packet, no warning", async () => {
    const pcap = join(dir, "dstm.pcap");
    const packets = MESSAGES.map(([msg, fromServer, tep]) => {
      const far = tep ? 4608 : 40000;
      const near = tep ? 40001 : 4607;
      const bytes = bytesOf(msg);
      return fromServer
        ? udp6Packet(SERVER6, tep ? TEP6 : HOST6, near, far, bytes)
        : udp6Packet(tep ? TEP6 : HOST6, SERVER6, far, near, bytes);
    });
    const extension = withExtensions();
    expect(decodeMessage(extension).ok).toBe(true);
    packets.push(udp6Packet(HOST6, SERVER6, 40000, 4607, extension));
    // Bytes after the length field's end are not part of the message (docs/protocol.md, Header).
    const padded = Uint8Array.from([...extension, 0xde, 0xad]);
    expect(decodeMessage(padded).ok).toBe(true);
    packets.push(udp6Packet(HOST6, SERVER6, 40000, 4607, padded));
    await writeCapture(pcap, packets);

    const names = Object.keys(expected(MESSAGES[0]![0], bytesOf(MESSAGES[0]![0])));
    const rows = tsharkFields(pcap, ["frame.protocols", ...names]);
    expect(rows.length).toBe(MESSAGES.length + 2);
    MESSAGES.forEach(([msg], i) => {
      const { "frame.protocols": protocols, ...got } = rows[i]!;
      expect(protocols).toBe("raw:ipv6:udp:dstm");
      expect(got).toEqual(expected(msg, bytesOf(msg)));
    });
    // Every type 1–12, every option 1–11, every status 0–8 appeared.
    const all = (field: string) =>
      new Set(rows.flatMap((r) => r[field]!.split(";")).filter(Boolean));
    expect([...all("dstm.type")].map(Number).sort((a, b) => a - b)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ]);
    expect([...all("dstm.option.code")].map(Number).sort((a, b) => a - b)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 128, 129, 130, 255,
    ]);
    expect([...all("dstm.status.code")].map(Number).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(rows.at(-2)!["dstm.option.code"]).toBe("2;128;255");
    expect(rows.at(-1)!["dstm.option.code"]).toBe("2;128;255");
    const trailing = tsharkFields(pcap, ["dstm.trailing", "dstm.length"], "dstm.trailing");
    expect(trailing).toEqual([
      { "dstm.trailing": "dead", "dstm.length": String(extension.length) },
    ]);

    const details = tshark(["-r", pcap, "-V"]);
    expect(details).toContain("Option: AUTH: key 7");
    expect(details).toContain("[Timestamp: Nov 26, 2025 09:40:00.123000000 UTC]");
    expect(details).toContain("Option: PORT_SET: a=6 k=2 PSID 1");
    expect(details).toContain("Status code: POOL_EXHAUSTED (1)");
    expect(details).toContain("Option: extension 128");
    expect(details).toContain(
      "Option: EXISTING_LEASE: the host held this lease before the DISCOVER",
    );
    expect(details.match(/\[Malformed Packet|Expert Info \((Warning|Error)/g)).toBeNull();
    expect(tshark(["-r", pcap, "-Y", "_ws.malformed || _ws.expert.severity >= 0x600000"])).toBe("");
    const summary = tshark(["-r", pcap]);
    expect(summary).toContain("DISCOVER_ACK xid=0x1a2b3c4d HOST_IPV4 192.0.2.129");
    expect(summary).toContain("NAK xid=0x00000065 STATUS POOL_EXHAUSTED");
    expect(summary).toContain("DISCOVER_ACK xid=0x1a2b3c4f HOST_IPV4 192.0.2.130 EXISTING_LEASE");
  });

  test("each malformed message gets the decode error lib/wire/dstm.ts gives it", async () => {
    const cases = malformedCases();
    const pcap = join(dir, "malformed.pcap");
    await writeCapture(
      pcap,
      cases.map(([, bytes]) => udp6Packet(HOST6, SERVER6, 40000, 4607, bytes)),
    );
    const rows = tsharkFields(pcap, ["dstm.type", "_ws.expert.message"]);
    expect(rows.length).toBe(cases.length);
    cases.forEach(([code, bytes], i) => {
      const decoded = decodeMessage(bytes);
      expect(decoded.ok ? "ok" : decoded.error.code).toBe(code);
      expect(rows[i]!["_ws.expert.message"]).toStartWith(`${code}: `);
    });
    // The dissector marks them as errors of group Malformed, which `tshark -Y` finds.
    const flagged = tshark([
      "-r",
      pcap,
      "-Y",
      "dstm.malformed",
      "-T",
      "fields",
      "-e",
      "frame.number",
    ]);
    expect(flagged.trim().split("\n").length).toBe(cases.length);
  });

  test("DHCPV4-QUERY/RESPONSE: option 87 goes to Wireshark's DHCP dissector, option 88 lists servers; other DHCPv6 is left to Wireshark", async () => {
    const pcap = join(dir, "dhcp4o6.pcap");
    const client = "fe80::5eff:fe10:1";
    const query = encodeDhcp4o6({ type: 20, flags: 0, dhcp4: dhcp4(Dhcp4MessageType.DISCOVER) });
    const response = encodeDhcp4o6({
      type: 21,
      flags: DHCP4O6_FLAG_UNICAST,
      clientId: Uint8Array.of(0, 3, 0, 1, 2, 0, 0x5e, 0x10, 0, 1),
      serverId: Uint8Array.of(0, 3, 0, 1, 2, 0, 0x5e, 0, 0, 2),
      dhcp4o6Servers: [SERVER6, "2001:db8::54"],
      dhcp4: dhcp4(Dhcp4MessageType.OFFER, ip("198.51.100.1")),
    });
    const solicit = encodeDhcp6({
      type: 1,
      xid: 0x123456,
      oro: [88],
      elapsedTime: 0,
      clientId: Uint8Array.of(0, 3, 0, 1, 2, 0, 0x5e, 0x10, 0, 1),
    });
    await writeCapture(pcap, [
      udp6Packet(client, "ff02::1:2", 546, 547, query),
      udp6Packet(SERVER6, client, 547, 546, response),
      udp6Packet(client, "ff02::1:2", 546, 547, solicit),
    ]);
    const rows = tsharkFields(pcap, [
      "frame.protocols",
      "dhcp4o6.msgtype",
      "dhcp4o6.flags.unicast",
      "dhcp4o6.option.code",
      "dhcp4o6.server",
      "dhcp4o6.duid.type",
      "dhcp.option.dhcp",
      "dhcp.id",
      "dhcp.ip.your",
      "dhcp.option.ip_address_lease_time",
      "dhcpv6.msgtype",
    ]);
    expect(rows.map((r) => r["frame.protocols"])).toEqual([
      "raw:ipv6:udp:dhcp4o6:dhcp",
      "raw:ipv6:udp:dhcp4o6:dhcp",
      "raw:ipv6:udp:dhcp4o6:dhcpv6", // passed on untouched
    ]);
    expect(rows[0]).toMatchObject({
      "dhcp4o6.msgtype": "20",
      "dhcp4o6.flags.unicast": "0",
      "dhcp4o6.option.code": "87",
      "dhcp.option.dhcp": "1",
      "dhcp.id": "0x3903f326",
    });
    expect(rows[1]).toMatchObject({
      "dhcp4o6.msgtype": "21",
      "dhcp4o6.flags.unicast": "1",
      "dhcp4o6.option.code": "1;2;87;88",
      "dhcp4o6.server": `${SERVER6};2001:db8::54`,
      "dhcp4o6.duid.type": "3;3",
      "dhcp.option.dhcp": "2",
      "dhcp.ip.your": "198.51.100.1",
      "dhcp.option.ip_address_lease_time": "600",
    });
    expect(rows[2]!["dhcpv6.msgtype"]).toBe("1");
    const details = tshark(["-r", pcap, "-V"]);
    expect(details).toContain("DHCPv4-over-DHCPv6 (RFC 7341), DHCPV4-RESPONSE");
    expect(details).toContain("Dynamic Host Configuration Protocol (Offer)");
    expect(
      details.match(/\[Malformed Packet|Unknown \(2[01]\)|Expert Info \((Warning|Error)/g),
    ).toBeNull();
    expect(tshark(["-r", pcap, "-Y", "_ws.malformed || _ws.expert.severity >= 0x600000"])).toBe("");
  });
});
