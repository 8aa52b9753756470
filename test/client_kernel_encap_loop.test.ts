/**
 * The `--kernel-encap` out loop (lib/dataplane/client_kernel_encap.ts) on an in-memory DTI:
 * a TCP super-packet read whole (virtio_net_hdr TCPV4, NEEDS_CSUM, the pseudo-header sum in
 * its checksum field) is checked and written back whole with its header; a shared lease's
 * NAPT rewrites its source port into the set and the checksums still finish right the
 * kernel's way; a foreign source, a too-big DF super-packet and a malformed header are dropped
 * and counted, never handed to the kernel. No root needed; the namespace test is
 * test/client_kernel_encap.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { ClientKernelEncapOut } from "../lib/dataplane/client_kernel_encap.ts";
import { parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { portInSet } from "../lib/net/portset.ts";
import { ClientState } from "../lib/tunnel/client_state.ts";
import { COUNTER_NAMES, Counter } from "../lib/tunnel/counters.ts";
import { NaptTable } from "../lib/tunnel/napt.ts";
import { PathMtuTable } from "../lib/tunnel/pmtu.ts";
import { FakeFrameTun } from "./helpers/fake_devices.ts";
import { internetChecksum } from "./helpers/packets.ts";
import { ACK, FIN, PSH, tcp, tcpChecksumOf } from "./helpers/tcp_packets.ts";

const LEASED = [198, 51, 100, 10];
const WEB4 = [203, 0, 113, 80];
const TEP6 = parseIPv6("2001:db8:7e9::1")!;
/** a = 6, k = 10, PSID 3: 63 ports. */
const TINY = { offset: 6, psidLength: 10, psid: 3 };
const GSO = 1400;
const H = 10;

function setup(o: { portSet?: typeof TINY; tunnelMtu?: number } = {}) {
  const counters = new Float64Array(COUNTER_NAMES.length);
  const state = ClientState.create();
  state.setLease(parseIPv4("198.51.100.10")!, o.portSet, TEP6);
  const init = {
    state,
    napt: NaptTable.create(),
    counters,
    onDemand: false,
    client: { tunnelMtu: o.tunnelMtu ?? 1460, mssClamp: false },
    pathMtu: PathMtuTable.create({ capacity: 4 }),
  };
  const tun = new FakeFrameTun();
  const loop = new ClientKernelEncapOut(init, tun);
  const count = (name: (typeof COUNTER_NAMES)[number]) => counters[Counter[name]]!;
  return { tun, loop, count };
}

/**
 * The frame the kernel hands over for a host's TCP super-packet of `segments` × GSO bytes:
 * NEEDS_CSUM at the TCP checksum (start 20, offset 16), TCPV4, the pseudo-header sum in the field.
 */
function superFrame(src = LEASED, segments = 20, flags = ACK | PSH): Uint8Array {
  const p = tcp({ payload: segments * GSO, src, dst: WEB4, flags });
  const total = p.length;
  let sum = 6 + (total - 20);
  for (let i = 12; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p[36] = sum >>> 8;
  p[37] = sum;
  const f = new Uint8Array(H + total);
  f.set([1, 1, 52, 0, GSO & 0xff, GSO >>> 8, 20, 0, 16, 0]);
  f.set(p, H);
  return f;
}

/** Finishes the partial checksum as the kernel (or a NIC) does: ~sum from csum_start. */
function finished(frame: Uint8Array): Uint8Array {
  const p = frame.slice(H);
  const total = (p[2]! << 8) | p[3]!;
  const c = internetChecksum(p, 20, total);
  p[36] = c >>> 8;
  p[37] = c;
  return p.subarray(0, total);
}

const sport = (p: Uint8Array) => (p[H + 20]! << 8) | p[H + 21]!;

describe("ClientKernelEncapOut: DTI super-packet → checks → back into the DTI whole", () => {
  test("a whole-address lease: the super-packet goes back as read, counted by segments", () => {
    const { tun, loop, count } = setup();
    const frame = superFrame();
    tun.frames.push(frame);
    expect(loop.step()).toBe(1);
    expect(tun.back.length).toBe(1);
    const out = tun.back[0]!;
    // The same virtio_net_hdr (TCPV4, gso_size, NEEDS_CSUM), the same bytes: nothing to rewrite.
    expect([...out]).toEqual([...frame]);
    expect(internetChecksum(out, H, H + 20)).toBe(0);
    expect(tcpChecksumOf(finished(out))).toBe(0);
    expect(count("client-kernel-encap")).toBe(1);
    expect(count("client-kernel-encap-segments")).toBe(20);
    expect(count("client-kernel-encap-bytes")).toBe(frame.length - H);
    expect(count("client-encap-forward")).toBe(0);
    expect(tun.written.length).toBe(0);
  });

  test("a shared lease: NAPT puts the source port in the set; both checksums finish right", () => {
    const { tun, loop, count } = setup({ portSet: TINY });
    tun.frames.push(superFrame(), superFrame(LEASED, 3, ACK | FIN));
    expect(loop.step()).toBe(1);
    expect(loop.step()).toBe(1);
    expect(tun.back.length).toBe(2);
    for (const out of tun.back) {
      expect(sport(out)).not.toBe(40000);
      expect(portInSet(sport(out), TINY)).toBe(true);
      expect(internetChecksum(out, H, H + 20)).toBe(0);
      expect(tcpChecksumOf(finished(out))).toBe(0);
      expect(out[1]).toBe(1); // still TCPV4
    }
    // One flow, one mapping: the same port both times.
    expect(sport(tun.back[1]!)).toBe(sport(tun.back[0]!));
    expect(count("client-kernel-encap-segments")).toBe(23);
  });

  test("a foreign source is dropped and counted once, never handed to the kernel", () => {
    const { tun, loop, count } = setup();
    tun.frames.push(superFrame([203, 0, 113, 9]));
    expect(loop.step()).toBe(1);
    expect(tun.back.length).toBe(0);
    expect(count("client-encap-drop-wrong-source")).toBe(1);
    expect(count("client-kernel-encap")).toBe(0);
  });

  test("DF segments above the tunnel MTU: ICMPv4 'fragmentation needed' into the DTI, nothing to the kernel", () => {
    const { tun, loop, count } = setup({ tunnelMtu: 1280 });
    tun.frames.push(superFrame());
    expect(loop.step()).toBe(1);
    expect(tun.back.length).toBe(0);
    expect(count("client-encap-drop-too-big")).toBe(1);
    expect(tun.written.length).toBe(1);
    const icmp = tun.written[0]!.packet;
    expect([icmp[9], icmp[20], icmp[21]]).toEqual([1, 3, 4]);
    expect((icmp[26]! << 8) | icmp[27]!).toBe(1280);
  });

  test("a packet without GSO and with NEEDS_CSUM goes back finished, with a zero header", () => {
    const { tun, loop, count } = setup();
    const frame = superFrame(LEASED, 1);
    frame[1] = 0; // GSO_NONE, still NEEDS_CSUM
    tun.frames.push(frame);
    expect(loop.step()).toBe(1);
    const out = tun.back[0]!;
    expect([...out.subarray(0, H)]).toEqual(new Array(H).fill(0));
    expect(tcpChecksumOf(out.subarray(H))).toBe(0);
    expect(count("client-kernel-encap-segments")).toBe(1);
  });

  test("a super-packet whose header says no NEEDS_CSUM is malformed: dropped and counted", () => {
    const { tun, loop, count } = setup();
    const frame = superFrame();
    frame[0] = 0;
    tun.frames.push(frame);
    expect(loop.step()).toBe(1);
    expect(tun.back.length).toBe(0);
    expect(count("client-encap-drop-malformed")).toBe(1);
  });
});
