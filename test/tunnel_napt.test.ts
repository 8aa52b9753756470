import { describe, expect, test } from "bun:test";
import { internetChecksum } from "../lib/net/checksum.ts";
import { buildEcho, buildFragmentationNeeded, IcmpType } from "../lib/net/icmp4.ts";
import {
  IpProtocol,
  ipv4Destination,
  ipv4HeaderChecksumValid,
  ipv4Source,
} from "../lib/net/ipv4.ts";
import { portInSet } from "../lib/net/portset.ts";
import { ClientTranslator, NaptTable, PLACEHOLDER_IPV4, Translation } from "../lib/tunnel/napt.ts";
import { checksumsValid, l4Packet } from "./helpers/napt_packets.ts";

const LEASED = 0xc6336407; // 198.51.100.7
const WEB = 0xc0000250; // 192.0.2.80
const SET = { offset: 6, psidLength: 2, psid: 1 };

const port = (p: Uint8Array, at: number) => (p[at]! << 8) | p[at + 1]!;

describe("ClientTranslator", () => {
  test("on-demand, whole address: 192.0.0.2 ⇄ leased address with valid checksums, ports untouched", () => {
    const t = new ClientTranslator(NaptTable.create());
    t.configure(LEASED, PLACEHOLDER_IPV4, undefined);
    for (const protocol of [IpProtocol.TCP, IpProtocol.UDP]) {
      const out = l4Packet(protocol, PLACEHOLDER_IPV4, WEB, 40000, 80);
      expect(t.outbound(out, 0, out.length, 1000)).toBe(Translation.OK);
      expect(ipv4Source(out, 0)).toBe(LEASED);
      expect(port(out, 20)).toBe(40000);
      expect(checksumsValid(out)).toBe(true);
      const back = l4Packet(protocol, WEB, LEASED, 80, 40000);
      expect(t.inbound(back, 0, back.length, 1000)).toBe(Translation.OK);
      expect(ipv4Destination(back, 0)).toBe(PLACEHOLDER_IPV4);
      expect(checksumsValid(back)).toBe(true);
    }
  });

  test("shared lease: each flow's source port is mapped into the set and back, consistently", () => {
    const t = new ClientTranslator(NaptTable.create());
    t.configure(LEASED, 0, SET);
    const seen = new Map<number, number>();
    for (const sport of [40000, 40001, 51234, 1500]) {
      const out = l4Packet(IpProtocol.TCP, LEASED, WEB, sport, 443);
      expect(t.outbound(out, 0, out.length, 10)).toBe(Translation.OK);
      const external = port(out, 20);
      expect(portInSet(external, SET)).toBe(true);
      expect(checksumsValid(out)).toBe(true);
      seen.set(sport, external);
      const again = l4Packet(IpProtocol.TCP, LEASED, WEB, sport, 443);
      t.outbound(again, 0, again.length, 11);
      expect(port(again, 20)).toBe(external);
      const back = l4Packet(IpProtocol.TCP, WEB, LEASED, 443, external);
      expect(t.inbound(back, 0, back.length, 12)).toBe(Translation.OK);
      expect(port(back, 22)).toBe(sport);
      expect(checksumsValid(back)).toBe(true);
    }
    expect(new Set(seen.values()).size).toBe(4);
  });

  test("a port already in the set is kept", () => {
    const t = new ClientTranslator(NaptTable.create());
    t.configure(LEASED, 0, SET);
    const inSet = 1280 + 5; // a = 6, k = 2, psid 1: A=1 gives 1024 | 1 << 8 | j = 1280..1535
    expect(portInSet(inSet, SET)).toBe(true);
    const out = l4Packet(IpProtocol.UDP, LEASED, WEB, inSet, 53);
    t.outbound(out, 0, out.length, 1);
    expect(port(out, 20)).toBe(inSet);
  });

  test("ICMP echo identifiers are translated like ports", () => {
    const t = new ClientTranslator(NaptTable.create());
    t.configure(LEASED, PLACEHOLDER_IPV4, SET);
    const echo = new Uint8Array(64);
    const n = buildEcho(echo, 0, IcmpType.ECHO_REQUEST, PLACEHOLDER_IPV4, WEB, 7, 1, 36);
    expect(t.outbound(echo, 0, n, 1)).toBe(Translation.OK);
    const id = port(echo, 24);
    expect(portInSet(id, SET)).toBe(true);
    expect(ipv4Source(echo, 0)).toBe(LEASED);
    expect(checksumsValid(echo.subarray(0, n))).toBe(true);
    const reply = new Uint8Array(64);
    buildEcho(reply, 0, IcmpType.ECHO_REPLY, WEB, LEASED, id, 1, 36);
    expect(t.inbound(reply, 0, n, 2)).toBe(Translation.OK);
    expect(port(reply, 24)).toBe(7);
    expect(ipv4Destination(reply, 0)).toBe(PLACEHOLDER_IPV4);
    expect(checksumsValid(reply.subarray(0, n))).toBe(true);
  });

  test("an ICMP error quoting a translated packet is translated back inside", () => {
    const t = new ClientTranslator(NaptTable.create());
    t.configure(LEASED, PLACEHOLDER_IPV4, SET);
    const out = l4Packet(IpProtocol.TCP, PLACEHOLDER_IPV4, WEB, 40000, 80, 1400);
    t.outbound(out, 0, out.length, 1);
    const external = port(out, 20);
    const error = new Uint8Array(100);
    const n = buildFragmentationNeeded(error, 0, 0xc0000201, out, 0, out.length, 1280);
    expect(n).toBeGreaterThan(0);
    expect(t.inbound(error, 0, n, 2)).toBe(Translation.OK);
    expect(port(error, 28 + 20)).toBe(40000); // quoted TCP source port
    expect(ipv4Source(error, 28)).toBe(PLACEHOLDER_IPV4); // quoted source address
    expect(ipv4Destination(error, 0)).toBe(PLACEHOLDER_IPV4);
    expect(ipv4HeaderChecksumValid(error, 28)).toBe(true);
    expect(internetChecksum(error, 20, n - 20)).toBe(0);
    expect(external).not.toBe(40000);
  });

  test("inbound traffic to an unmapped port is refused; a full set refuses new flows until mappings idle out", () => {
    const t = new ClientTranslator(NaptTable.create());
    const tiny = { offset: 6, psidLength: 10, psid: 3 }; // m = 0: 63 ports
    t.configure(LEASED, 0, tiny);
    const stray = l4Packet(IpProtocol.UDP, WEB, LEASED, 53, 1024 * 5 + 3);
    expect(t.inbound(stray, 0, stray.length, 1)).toBe(Translation.NO_MAPPING);
    for (let i = 0; i < 63; i++) {
      const p = l4Packet(IpProtocol.UDP, LEASED, WEB, 50000 + i, 53);
      expect(t.outbound(p, 0, p.length, 100)).toBe(Translation.OK);
    }
    const extra = l4Packet(IpProtocol.UDP, LEASED, WEB, 60000, 53);
    expect(t.outbound(extra, 0, extra.length, 150)).toBe(Translation.NO_PORT);
    // UDP mappings idle for more than 300 s (RFC 4787 REQ-5's recommended value) may be taken over.
    expect(t.outbound(extra, 0, extra.length, 399)).toBe(Translation.NO_PORT);
    expect(t.outbound(extra, 0, extra.length, 401)).toBe(Translation.OK);
    expect(t.table.count()).toBe(63);
  });
});
