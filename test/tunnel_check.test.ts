/**
 * Check mode: every scenario in test/fixtures/tunnel/*.json is replayed through the pipeline
 * steps and its output packets and counters are compared with <name>.expected.json.
 *
 *   DSTM_REGEN=1 bun test test/tunnel_check.test.ts       # rewrite the expectations
 *   DSTM_PCAP_DIR=/tmp/x bun test test/tunnel_check.test.ts  # also write <name>.{in,out}.pcap
 *
 * Besides the golden comparison, the tests below check the facts that matter by hand, so a
 * careless regeneration cannot bless a wrong packet.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseIPv4 } from "../lib/net/addr.ts";
import { icmpChecksumValid, icmpCode, icmpNextHopMtu, icmpType } from "../lib/net/icmp4.ts";
import {
  IPv4Problem,
  IpProtocol,
  ipv4Destination,
  ipv4Protocol,
  ipv4Source,
  ipv4TotalLength,
  validateIPv4,
} from "../lib/net/ipv4.ts";
import {
  buildPacket,
  bytesToHex,
  type CheckResult,
  type CheckScenario,
  checkPcaps,
  hexToBytes,
  runCheck,
} from "../lib/tunnel/check.ts";

const DIR = join(import.meta.dir, "fixtures", "tunnel");
const REGEN = process.env.DSTM_REGEN === "1";
const PCAP_DIR = process.env.DSTM_PCAP_DIR;
const names = readdirSync(DIR)
  .filter((f) => f.endsWith(".json") && !f.endsWith(".expected.json"))
  .map((f) => f.slice(0, -".json".length))
  .sort();

function load(name: string): CheckScenario {
  return JSON.parse(readFileSync(join(DIR, `${name}.json`), "utf8")) as CheckScenario;
}

function inputBytes(s: CheckScenario, i: number): Uint8Array {
  const p = s.packets[i]!;
  return p.hex !== undefined ? hexToBytes(p.hex) : buildPacket(p.packet!);
}

const verdicts = (r: CheckResult) => r.outputs.map((o) => o.verdict);

describe("check mode: stored packets against stored expectations", () => {
  test("there are scenarios", () => {
    expect(names.length).toBeGreaterThanOrEqual(8);
  });

  for (const name of names) {
    test(`${name}: outputs and counters match ${name}.expected.json`, () => {
      const scenario = load(name);
      const actual = runCheck(scenario);
      const file = join(DIR, `${name}.expected.json`);
      if (PCAP_DIR) {
        mkdirSync(PCAP_DIR, { recursive: true });
        const { input, output } = checkPcaps(scenario);
        writeFileSync(join(PCAP_DIR, `${name}.in.pcap`), input);
        writeFileSync(join(PCAP_DIR, `${name}.out.pcap`), output);
      }
      if (REGEN) {
        writeFileSync(file, `${JSON.stringify(actual, null, 2)}\n`);
        return;
      }
      let expected: CheckResult;
      try {
        expected = JSON.parse(readFileSync(file, "utf8")) as CheckResult;
      } catch {
        throw new Error(`${file} is missing: run DSTM_REGEN=1 bun test ${import.meta.path}`);
      }
      expect(actual).toEqual(expected);
    });
  }
});

describe("check mode: what the scenarios must show", () => {
  test("basic: decapsulated packets leave unchanged; encapsulated ones go to the bound host", () => {
    const s = load("basic");
    const r = runCheck(s);
    expect(verdicts(r).every((v) => v === "FORWARD")).toBe(true);
    for (const i of [0, 2, 4, 7]) {
      expect(r.outputs[i]!.to).toBe("tun");
      expect(r.outputs[i]!.hex).toBe(s.packets[i]!.hex!);
    }
    expect(r.outputs.filter((o) => o.to === "raw").map((o) => o.dst6)).toEqual([
      "2001:db8:a::1",
      "2001:db8:a::1",
      "2001:db8:b::1",
      "2001:db8:ffff::1", // client A sends to its TEP
    ]);
    expect(r.counters["decap-forward"]).toBe(3);
    expect(r.counters["encap-forward"]).toBe(3);
    expect(r.counters["client-encap-forward"]).toBe(1);
    expect(r.counters["client-decap-forward"]).toBe(1);
    expect(r.counters["decap-forward-bytes"]).toBe(60 + 84 + 48);
  });

  test("spoofing: another host using A's address is dropped and counted, never forwarded", () => {
    const r = runCheck(load("spoofing"));
    expect(verdicts(r)).toEqual([
      "DROP_SPOOFED_SOURCE",
      "DROP_SPOOFED_SOURCE",
      "DROP_NO_BINDING",
      "FORWARD",
      "DROP_NO_BINDING",
    ]);
    expect(r.counters).toMatchObject({
      "decap-drop-spoofed-source": 2,
      "decap-drop-no-binding": 1,
      "encap-drop-no-binding": 1,
      "decap-forward": 1,
    });
    expect(r.outputs.filter((o) => o.hex !== undefined)).toHaveLength(1);
  });

  test("shared: ports pick the host both ways; foreign or unbound ports are dropped", () => {
    const r = runCheck(load("shared"));
    expect(verdicts(r)).toEqual([
      "FORWARD",
      "FORWARD",
      "FORWARD",
      "DROP_NO_BINDING",
      "DROP_NO_BINDING",
      "DROP_SPOOFED_SOURCE",
      "DROP_BAD_PORT",
      "DROP_BAD_PORT",
      "FORWARD",
      "FORWARD",
      "FORWARD",
      "HELD",
      "FORWARD",
      "DROP_BAD_PORT",
      "FORWARD",
      "DROP_WRONG_DESTINATION",
    ]);
    expect([1, 2, 9, 10].map((i) => r.outputs[i]!.dst6)).toEqual([
      "2001:db8:c::1",
      "2001:db8:d::1",
      "2001:db8:c::1",
      "2001:db8:d::1",
    ]);
  });

  test("hairpin: host to host is forwarded and counted; switched off it is dropped", () => {
    const on = runCheck(load("hairpin"));
    expect(verdicts(on)).toEqual(["FORWARD", "FORWARD", "FORWARD", "FORWARD", "FORWARD"]);
    expect(on.outputs[1]!.dst6).toBe("2001:db8:b::1");
    expect(on.outputs[3]!.dst6).toBe("2001:db8:c::1");
    expect(on.counters["decap-hairpin"]).toBe(2);
    const off = runCheck(load("hairpin_disabled"));
    expect(verdicts(off)).toEqual(["DROP_HAIRPIN_DISABLED", "DROP_HAIRPIN_DISABLED", "FORWARD"]);
    expect(off.counters["decap-drop-hairpin-disabled"]).toBe(2);
    expect(off.counters["decap-hairpin"]).toBeUndefined();
  });

  test("mtu: 1600 bytes with DF → ICMPv4 3/4 with MTU 1460, right checksum and quoted header", () => {
    const s = load("mtu");
    const r = runCheck(s);
    expect(verdicts(r)).toEqual([
      "ICMP",
      "FORWARD_FRAGMENT",
      "FORWARD",
      "ICMP",
      "DROP_TOO_BIG",
      "FORWARD",
    ]);
    const input = inputBytes(s, 0);
    const icmp = hexToBytes(r.outputs[0]!.hex!);
    expect(r.outputs[0]!.to).toBe("tun");
    expect(icmp.length).toBe(56);
    expect(validateIPv4(icmp, 0, icmp.length)).toBe(IPv4Problem.NONE);
    expect(ipv4TotalLength(icmp, 0)).toBe(56);
    expect(ipv4Protocol(icmp, 0)).toBe(IpProtocol.ICMP);
    expect(ipv4Source(icmp, 0)).toBe(parseIPv4("192.0.2.1")!);
    expect(ipv4Destination(icmp, 0)).toBe(parseIPv4("203.0.113.80")!);
    expect(icmpType(icmp, 0)).toBe(3);
    expect(icmpCode(icmp, 0)).toBe(4);
    expect(icmpNextHopMtu(icmp, 0)).toBe(1460);
    expect(icmpChecksumValid(icmp, 0, icmp.length)).toBe(true);
    expect([...icmp.subarray(28)]).toEqual([...input.subarray(0, 28)]); // header + 8 bytes
    // DF clear: the packet itself goes on, whole (the kernel fragments the IPv6 packet).
    expect(r.outputs[1]!.hex).toBe(bytesToHex(inputBytes(s, 1)));
    expect(r.outputs[1]!.dst6).toBe("2001:db8:a::1");
    expect(r.counters).toMatchObject({
      "encap-drop-too-big": 3,
      "encap-icmp-too-big": 2,
      "encap-fragmented": 1,
      "encap-forward": 2,
    });
  });

  test("malformed: every malformed packet is dropped and counted; padding is trimmed", () => {
    const s = load("malformed");
    const r = runCheck(s);
    expect(verdicts(r)).toEqual([
      ...Array(6).fill("DROP_MALFORMED"),
      "FORWARD",
      ...Array(3).fill("DROP_MALFORMED"),
      "DROP_MALFORMED",
      "DROP_WRONG_SOURCE",
      "DROP_WRONG_TEP",
      "DROP_WRONG_DESTINATION",
      "DROP_MALFORMED",
    ]);
    expect(r.outputs[6]!.hex).toBe(s.packets[6]!.hex!.slice(0, -8));
    expect(r.counters).toMatchObject({
      "decap-drop-malformed": 6,
      "encap-drop-malformed": 3,
      "client-encap-drop-malformed": 1,
      "client-encap-drop-wrong-source": 1,
      "client-decap-drop-wrong-tep": 1,
      "client-decap-drop-wrong-destination": 1,
      "client-decap-drop-malformed": 1,
    });
  });

  test("rate_limit: a burst of 2, then one error a second", () => {
    const r = runCheck(load("rate_limit"));
    expect(verdicts(r)).toEqual([
      "ICMP",
      "ICMP",
      "DROP_RATE_LIMITED",
      "DROP_RATE_LIMITED",
      "DROP_RATE_LIMITED",
      "ICMP",
      "DROP_RATE_LIMITED",
      "ICMP",
      "ICMP",
      "DROP_RATE_LIMITED",
    ]);
    expect(r.counters["icmp-rate-limited"]).toBe(5);
    expect(r.counters["encap-icmp-too-big"]).toBe(5);
    expect(r.counters["encap-drop-too-big"]).toBe(10);
  });

  test("host_unreachable: 3/1 back when enabled, rate limited, never about ICMP errors or multicast", () => {
    const r = runCheck(load("host_unreachable"));
    expect(verdicts(r)).toEqual([
      "ICMP",
      "DROP_RATE_LIMITED",
      "DROP_NO_BINDING",
      "DROP_NO_BINDING",
    ]);
    const icmp = hexToBytes(r.outputs[0]!.hex!);
    expect(icmpType(icmp, 0)).toBe(3);
    expect(icmpCode(icmp, 0)).toBe(1);
    expect(icmpChecksumValid(icmp, 0, icmp.length)).toBe(true);
    expect(r.counters["encap-drop-no-binding"]).toBe(4);
    expect(r.counters["encap-icmp-host-unreachable"]).toBe(1);
  });

  test("a scenario that does not make sense is refused with the packet's index", () => {
    const s = load("basic");
    s.packets = [{ step: "tep-decap", hex: "4500" }];
    expect(() => runCheck(s)).toThrow("packet 0 from6");
    s.packets = [{ step: "tep-encap", hex: "45z0" }];
    expect(() => runCheck(s)).toThrow("packet 0");
    delete s.client;
    s.packets = [{ step: "client-encap", hex: "4500" }];
    expect(() => runCheck(s)).toThrow("client");
  });

  test("checkPcaps(): input 4over6 packets carry next header 4 and the outer addresses", () => {
    const { input, output } = checkPcaps(load("basic"));
    const v = new DataView(input.buffer);
    expect(v.getUint32(0, true)).toBe(0xa1b2c3d4);
    const firstLen = v.getUint32(24 + 8, true);
    expect(firstLen).toBe(40 + 60); // IPv6 header + the 60-byte TCP packet
    expect(input[40]! >> 4).toBe(6);
    expect(input[40 + 6]).toBe(4);
    expect(output.length).toBeGreaterThan(24);
  });
});
