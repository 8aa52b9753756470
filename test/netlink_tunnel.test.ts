/**
 * The rtnetlink requests of the kernel DTI (lib/sys/netlink_tunnel.ts, lib/sys/netlink.ts's
 * seg6 routes) against the bytes iproute2 sends for the same commands
 * (test/fixtures/iproute2_4over6_requests.txt, captured with strace): what we did not write.
 * No root needed.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { encodeRouteAdd } from "../lib/sys/netlink.ts";
import { encodeIp6tnlCreate, encodeRuleAdd } from "../lib/sys/netlink_tunnel.ts";

const fixtures = new Map<string, Uint8Array>();
for (const line of readFileSync(`${import.meta.dir}/fixtures/iproute2_4over6_requests.txt`, "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "" && !l.startsWith("#"))) {
  const [name, hex] = line.split(" ");
  fixtures.set(name!, Uint8Array.from(Buffer.from(hex!, "hex")));
}

function iproute2(name: string): Uint8Array {
  const bytes = fixtures.get(name);
  if (!bytes) throw new Error(`no fixture ${name}`);
  return bytes;
}

/** The message with its sequence number (bytes 8–11) zeroed. */
function withoutSeq(bytes: Uint8Array): string {
  const copy = bytes.slice();
  copy.fill(0, 8, 12);
  return Buffer.from(copy).toString("hex");
}

/** The top-level attributes after a fixed header of `headerLength` bytes: type → payload hex. */
function attributes(bytes: Uint8Array, headerLength: number): Map<number, string> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<number, string>();
  for (let at = 16 + headerLength; at + 4 <= bytes.length; ) {
    const length = view.getUint16(at, true);
    const type = view.getUint16(at + 2, true);
    expect(length).toBeGreaterThanOrEqual(4);
    out.set(type, Buffer.from(bytes.subarray(at + 4, at + length)).toString("hex"));
    at += (length + 3) & ~3;
  }
  return out;
}

describe("ip6tnl link (mode ipip6)", () => {
  test("encodeIp6tnlCreate() sends iproute2's bytes for tclass inherit (DSCP copied)", () => {
    const ours = encodeIp6tnlCreate({
      name: "dti0",
      local: "2001:db8:1::2",
      remote: "2001:db8:2::1",
      hopLimit: 64,
      dscp: -1,
    });
    expect(withoutSeq(ours)).toBe(withoutSeq(iproute2("ip6tnl_inherit")));
  });

  test("encodeIp6tnlCreate() sends iproute2's bytes for a fixed tclass and an MTU", () => {
    const ours = encodeIp6tnlCreate({
      name: "dti0",
      local: "2001:db8:1::2",
      remote: "2001:db8:2::1",
      hopLimit: 64,
      dscp: 0x28 >> 2, // tclass 0x28 = DSCP 10 (AF11)
      mtu: 1452,
    });
    expect(withoutSeq(ours)).toBe(withoutSeq(iproute2("ip6tnl_tclass")));
  });

  test("encodeIp6tnlCreate() refuses a bad DSCP, hop limit or address", () => {
    const base = { name: "dti0", local: "2001:db8:1::2", remote: "2001:db8:2::1" };
    expect(() => encodeIp6tnlCreate({ ...base, hopLimit: 64, dscp: 64 })).toThrow(/DSCP 64/);
    expect(() => encodeIp6tnlCreate({ ...base, hopLimit: 0, dscp: -1 })).toThrow(/hop limit/);
    expect(() =>
      encodeIp6tnlCreate({ ...base, remote: "192.0.2.1", hopLimit: 64, dscp: -1 }),
    ).toThrow(/not an IPv6 address/);
  });
});

describe("seg6 routes and the IPv4-in-IPv6 rule", () => {
  test("encodeRouteAdd() with seg6 encap.red: iproute2's header and attributes", () => {
    const ours = encodeRouteAdd({
      dst: "0.0.0.0/0",
      dev: "lo",
      mtu: 1460,
      advmss: 1420,
      encap: { kind: "seg6-encap-red", segment: "2001:db8:2::1" },
    });
    const theirs = iproute2("seg6_encap_red");
    // struct rtmsg: all equal but the protocol (iproute2: boot, 3; dstm: static, 4).
    const header = (b: Uint8Array) => [...b.subarray(16, 28)].map((x, i) => (i === 5 ? -1 : x));
    expect(header(ours)).toEqual(header(theirs));
    expect(ours[21]).toBe(4);
    const mine = attributes(ours, 12);
    const reference = attributes(theirs, 12);
    // iproute2 spells out RTA_DST 0.0.0.0 for a /0; dst_len 0 says the same without it.
    expect(reference.get(1)).toBe("00000000");
    reference.delete(1);
    for (const [type, payload] of reference) expect(mine.get(type)).toBe(payload);
    // The only extra: RTA_TABLE (15) naming main (254), as the header does.
    expect([...mine.keys()].sort((a, b) => a - b)).toEqual([4, 8, 15, 21, 0x8000 | 22]); // RTA_ENCAP is flagged nested
    expect(mine.get(15)).toBe("fe000000");
  });

  test("encodeRouteAdd() with seg6local End.DX4: iproute2's attributes", () => {
    const ours = encodeRouteAdd({
      dst: "2001:db8:1::2/128",
      dev: "lo",
      table: 4600,
      encap: { kind: "seg6local-end-dx4" },
    });
    const theirs = iproute2("seg6local_end_dx4");
    const mine = attributes(ours, 12);
    for (const [type, payload] of attributes(theirs, 12)) expect(mine.get(type)).toBe(payload);
    expect(mine.size).toBe(attributes(theirs, 12).size);
    // family, dst_len, scope, type as iproute2 (table: 252 "compat" here, 0 there; both
    // defer to RTA_TABLE).
    expect([ours[16], ours[17], ours[22], ours[23]]).toEqual([
      theirs[16],
      theirs[17],
      theirs[22],
      theirs[23],
    ]);
  });

  test("encodeRuleAdd() sends iproute2's bytes for `to H ipproto 4 lookup T`", () => {
    const ours = encodeRuleAdd({
      priority: 90,
      dst: "2001:db8:1::2/128",
      ipProto: 4,
      table: 4600,
    });
    expect(withoutSeq(ours)).toBe(withoutSeq(iproute2("rule_ipproto")));
  });
});
