/**
 * Red team of `dstm tep --rx-ring` (lib/sys/packet_ring.ts, ring_raw_socket.ts, nft_ring.ts),
 * as root in namespaces: att ── tep ── web, `att` an on-link attacker writing Ethernet frames
 * with an AF_PACKET socket (test/fixtures/rx_ring/redteam.py). An AF_PACKET tap sees packets
 * before ip6_rcv_core's checks and before netfilter; the raw IPv6 socket only what the IPv6
 * stack accepted. So the checks are DIFFERENTIAL: the same frames to a TEP with `--rx-ring`
 * and to one without; what reaches web and the TEP's counters (but the decap-ring* ones)
 * must be the same.
 *
 * - crafted cases, short and longer than a ring frame: runts, IPv6 version ≠ 6, payload
 *   length beyond / short of the frame or 0, a jumbogram claim, hop limit 0, outer sources
 *   the stack refuses (multicast, loopback) and ones it takes (the TEP's own, unspecified,
 *   link-local, v4-mapped), multicast destination, another host's MAC in promiscuous mode,
 *   broadcast and multicast frames, 802.1Q VID 0 and 5, 802.1ad VID 0, QinQ, the packet under
 *   the EtherTypes of IPv4, ARP and an unknown one, CE over not-ECT;
 * - what the TEP's host itself sends out of the interface (PACKET_OUTGOING to a tap);
 * - a local sender over loopback, from ::1 and from the TEP's own address;
 * - a flood of long (through the socket's queue) and short packets from two bindings mixed,
 *   overflowing the ring and the queue: nothing forwarded is wrong (each datagram's bytes and
 *   source are its own: a long packet never paired with another frame), losses counted;
 * - two TEPs in one namespace whose TUNs' names differ only in a character nft cannot name
 *   (`rr-a`, `rr_a`) get two tables: one never replaces nor removes the other's.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { ROOT, spawnDstm } from "./helpers/process.ts";
import { processScope } from "./helpers/process_scope.ts";
import { tepArgv, tepCounters } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("python3") && Bun.which("nft") ? null : "needs python3 and nft");
announceSkip("redteam_rx_ring", skip);

const scope = processScope("dstm-rxred-", "dstmrr-");
const { dir, ns } = scope;
const FIXTURES = join(ROOT, "test", "fixtures", "rx_ring");

/** Inner IPv4 sources bound to the outer ones redteam.py uses. */
const BINDINGS = [
  "198.51.100.11=2001:db8:1::11",
  "198.51.100.12=2001:db8:1::12",
  "198.51.100.21=ff02::1",
  "198.51.100.22=::1",
  "198.51.100.23=::ffff:198.51.100.23",
  "198.51.100.24=::",
  "198.51.100.25=2001:db8:1::1",
  "198.51.100.26=fe80::1",
];

interface Received {
  got: [string, number, string][];
  bad: [string, number, string][];
}

/** att ── tep ── web (both links of MTU `mtu`), t0 promiscuous. */
function topology(mtu = 1500) {
  const att = ns();
  const tep = ns();
  const web = ns();
  vethPair(att, "a0", tep, "t0", { mtu });
  vethPair(tep, "t1", web, "w0", { mtu });
  att.addAddress("a0", "2001:db8:1::11/64");
  att.addAddress("a0", "2001:db8:1::12/64");
  tep.addAddress("t0", "2001:db8:1::1/64");
  tep.ip("link", "set", "t0", "promisc", "on");
  tep.addAddress("t1", "192.0.2.1/24");
  web.addAddress("w0", "192.0.2.80/24");
  web.addRoute("default", "via", "192.0.2.1");
  const mac = tep.exec(["cat", "/sys/class/net/t0/address"]).stdout.trim();
  return { att, tep, web, mac };
}

/** Where a TEP sits and what it serves, besides the lab's defaults (test/helpers/tep_argv.ts). */
interface TepPlace {
  readonly ifname?: string;
  readonly ipv6?: string;
  readonly route?: string;
  readonly bindings?: readonly string[];
}

/** A TEP (with `--rx-ring` when `ring`) in `tep`; its process and control socket. */
async function startTep(tep: Netns, ring: boolean, at: TepPlace = {}) {
  const ifname = at.ifname ?? "tep0";
  const bindings = at.bindings ?? BINDINGS;
  const socket = join(dir, `${tep.name}-${ifname}.sock`);
  const proc = spawnDstm(
    [
      ...tepArgv({
        ipv6: at.ipv6,
        route: at.route,
        staticBinding: { binding: bindings[0]!, stats: socket },
      }),
      ...bindings.slice(1).flatMap((b) => ["--binding", b]),
      ...["--ifname", ifname],
      ...(ring ? ["--rx-ring"] : []),
    ],
    {},
    tep.name,
  );
  scope.track({ kill: (s) => proc.proc.kill(s), exited: proc.exited });
  const start = await proc.waitFor(/tep-start/, 20_000);
  expect(start).toContain(ring ? "rx-ring=on" : "rx-ring=off");
  return { proc, socket };
}

/**
 * Runs redteam.py `args` in att (or, when args[0] names another fixture, that one with the
 * rest of `args`, in the namespace passed as `att`) and redteam_receive.py in web; what web got.
 * `then`, when given, runs after and is followed by redteam.py's end markers, sent from
 * `markersFrom` (default `att`).
 */
async function craftedThrough(
  att: Netns,
  web: Netns,
  mac: string,
  args: string[],
  to6 = "2001:db8:1::1",
  then?: () => void,
  markersFrom: Netns = att,
): Promise<Received> {
  const rx = web.spawn(["python3", join(FIXTURES, "redteam_receive.py")], { timeoutMs: 60_000 });
  scope.track(rx);
  const reader = rx.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("ready\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`receive: ${await new Response(rx.stderr).text()}`);
    text += decoder.decode(chunk.value, { stream: true });
  }
  const sent = args[0]?.endsWith(".py")
    ? att.exec(["python3", join(FIXTURES, args[0]), ...args.slice(1)])
    : att.exec(["python3", join(FIXTURES, "redteam.py"), "a0", mac, to6, ...args], {
        timeoutMs: 60_000,
      });
  expect(sent.stderr).toBe("");
  if (then) {
    then();
    const markers = markersFrom.exec([
      "python3",
      join(FIXTURES, "redteam.py"),
      "a0",
      mac,
      to6,
      "markers",
    ]);
    expect(markers.stderr).toBe("");
  }
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
    text += decoder.decode(chunk.value, { stream: true });
  await rx.exited;
  return JSON.parse(text.trim().split("\n").at(-1)!) as Received;
}

/** The counters that changed between `a` and `b`, without the ring's own. */
function delta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(b).sort())
    if (!k.startsWith("decap-ring") && b[k] !== a[k]) out[k] = b[k]! - (a[k] ?? 0);
  return out;
}

/** The TEP's counters once they stopped changing (each batch is counted after it went). */
async function settledCounters(tep: Netns, socket: string): Promise<Record<string, number>> {
  let after = tepCounters(tep, socket);
  await waitUntil(
    () => {
      const prev = after;
      after = tepCounters(tep, socket);
      return JSON.stringify(prev) === JSON.stringify(after);
    },
    { what: "the counters to settle", intervalMs: 300, timeoutMs: 10_000 },
  );
  return after;
}

/** redteam.py's cases through the TEP at `socket`: what web got, the counters' change. */
async function cases(
  t: { att: Netns; tep: Netns; web: Netns; mac: string },
  socket: string,
  to6 = "2001:db8:1::1",
) {
  const before = tepCounters(t.tep, socket);
  const got = await craftedThrough(t.att, t.web, t.mac, ["cases"], to6);
  const after = await settledCounters(t.tep, socket);
  return {
    tags: got.got.map(([tag, size]) => `${tag}/${size}`).sort(),
    counters: delta(before, after),
    ringCounters: Object.fromEntries(
      Object.entries(after).filter(([k]) => k.startsWith("decap-ring")),
    ),
  };
}

/** The crafted cases through a new TEP with or without the ring. */
async function crafted(ring: boolean) {
  // MTU 9000: the long cases do not fit a ring frame.
  const t = topology(9000);
  const { socket } = await startTep(t.tep, ring);
  return cases(t, socket);
}

/**
 * What the IPv6 stack accepts of redteam.py's cases and the TEP's tunnel socket takes
 * (forwarded by the raw socket's TEP). Not "bcast", "mcast-l2" (the TEP's address in a link
 * broadcast / multicast frame) nor "dst-mc" (to ff02::1): the stack takes them, but the
 * tunnel socket refuses them (lib/sys/icmp6_socket.ts receiveUnicastOnly; else an attacker
 * gets the TEP to send ICMPv6 1/5 against RFC 4443 §2.4 (e.3), (e.4):
 * test/redteam_source_policy.test.ts).
 */
const ACCEPTED = [
  "ad0/40",
  "end-raw/40",
  "end-ring/40",
  "hlim0/40",
  "long-trailer/4000",
  "long/4000",
  "plain/40",
  "src-ll/40",
  "src-self/40",
  "src-unspec/40",
  "src-v4m/40",
  "trailer/40",
  "vlan0/40",
];

/** The tables of family ip6 in `where` and the destination each one's rule drops. */
function ringTables(where: Netns): Record<string, string> {
  const r = where.exec(["nft", "-j", "list", "tables", "ip6"]);
  const out: Record<string, string> = {};
  const items = (JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] }).nftables;
  for (const i of items) {
    const name = (i.table as { name: string } | undefined)?.name;
    if (name === undefined) continue;
    const listed = where.exec(["nft", "list", "table", "ip6", name]).stdout;
    out[name] = /ip6 daddr (\S+)/.exec(listed)?.[1] ?? "";
  }
  return out;
}

describe.skipIf(skip !== null)("red team: tep --rx-ring against an on-link attacker", () => {
  test("crafted frames: the ring forwards and counts exactly what the raw socket does", async () => {
    const [raw, ring] = await Promise.all([crafted(false), crafted(true)]);
    // What the IPv6 stack accepts, forwarded by both; nothing it refuses (version ≠ 6,
    // truncated, runts, multicast or loopback source, OTHERHOST, VLAN 5, QinQ, a jumbogram
    // claim, an IPv6 packet under another EtherType),
    // nor what the tunnel socket refuses (to a group, in a link broadcast/multicast frame).
    expect(raw.tags).toEqual(ACCEPTED);
    expect(ring.tags).toEqual(raw.tags);
    // The same drops counted for the same reasons (payload length 0: malformed, both ways).
    expect(ring.counters).toEqual(raw.counters);
    // Payload length 0 (zero, long-zero), an IPv6 header alone (empty), a cut datagram;
    // CE over not-ECT (RFC 6040).
    expect(raw.counters["decap-drop-malformed"]).toBe(4);
    expect(raw.counters["decap-drop-ecn"]).toBe(1);
    expect(ring.ringCounters["decap-ring"]).toBeGreaterThan(0);
    expect(ring.ringCounters["decap-ring-long"]).toBeGreaterThan(0);
    expect(ring.ringCounters["decap-ring-lost"]).toBe(0);
  }, 120_000);

  test("a local sender over loopback: from ::1 and from the TEP's own address, the ring forwards what the raw socket does", async () => {
    const run = async (ring: boolean) => {
      const t = topology();
      const { socket } = await startTep(t.tep, ring);
      const before = tepCounters(t.tep, socket);
      const got = await craftedThrough(t.tep, t.web, t.mac, ["redteam_local.py", "2001:db8:1::1"]);
      const after = await settledCounters(t.tep, socket);
      return { tags: got.got.map(([tag]) => tag).sort(), counters: delta(before, after) };
    };
    const [raw, ring] = await Promise.all([run(false), run(true)]);
    // The stack takes ::1 as a source on loopback (RFC 4291 §2.5.3 refuses it elsewhere).
    expect(raw.tags).toEqual(["end-raw", "end-ring", "lo-src", "self-src"]);
    expect(ring).toEqual(raw);
  }, 120_000);

  test("what the TEP's host sends out of the ring's interface is not forwarded, as without the ring", async () => {
    const run = async (ring: boolean) => {
      const t = topology();
      const { socket } = await startTep(t.tep, ring);
      const attMac = t.att.exec(["cat", "/sys/class/net/a0/address"]).stdout.trim();
      const before = tepCounters(t.tep, socket);
      const out = ["redteam.py", "t0", attMac, "2001:db8:1::1", "outgoing"];
      const got = await craftedThrough(t.tep, t.web, t.mac, out, undefined, () => {}, t.att);
      const after = await settledCounters(t.tep, socket);
      return {
        tags: got.got.map(([tag]) => tag).sort(),
        counters: delta(before, after),
        ringRead: (after["decap-ring"] ?? 0) - (before["decap-ring"] ?? 0),
      };
    };
    const [raw, ring] = await Promise.all([run(false), run(true)]);
    expect(raw.tags).toEqual(["end-raw", "end-ring"]);
    expect(ring.tags).toEqual(raw.tags);
    expect(ring.counters).toEqual(raw.counters);
    // The ring read end-ring alone.
    expect(ring.ringRead).toBe(1);
  }, 120_000);

  test("two TEPs whose TUN names differ only where nft cannot name them get a table each; stopping one leaves the other's", async () => {
    const t = topology(9000);
    t.tep.addAddress("t0", "2001:db8:1::2/64");
    const a = await startTep(t.tep, true, { ifname: "rr-a" });
    const b = await startTep(t.tep, true, {
      ifname: "rr_a",
      ipv6: "2001:db8:1::2",
      route: "203.0.113.0/24",
      bindings: ["203.0.113.11=2001:db8:1::11"],
    });
    const tables = ringTables(t.tep);
    expect(Object.values(tables).sort()).toEqual(["2001:db8:1::1", "2001:db8:1::2"]);
    // TEP a's ring packets are still kept from its raw socket: each forwarded once.
    const got = await cases(t, a.socket);
    expect(got.tags).toEqual(ACCEPTED);
    expect(got.counters["decap-forward"]).toBe(ACCEPTED.length);
    b.proc.proc.kill("SIGTERM");
    expect(await b.proc.exited).toBe(0);
    expect(Object.values(ringTables(t.tep))).toEqual(["2001:db8:1::1"]);
    a.proc.proc.kill("SIGTERM");
    expect(await a.proc.exited).toBe(0);
    expect(ringTables(t.tep)).toEqual({});
  }, 120_000);
  test("a flood of long and short packets overflowing the ring and its queue (the TEP stopped): nothing forwarded is wrong, in order, each once; losses counted", async () => {
    await flood(true);
  }, 120_000);

  test("the same flood while the TEP reads: nothing wrong, in order, each once", async () => {
    await flood(false);
  }, 120_000);
});

/**
 * FLOOD long (through the socket's queue) and short packets from two bindings, to a TEP with
 * the ring, stopped (SIGSTOP) during the flood when `stop`; then the end markers.
 */
async function flood(stop: boolean): Promise<void> {
  const FLOOD = 6000;
  const t = topology(9000);
  const { proc, socket } = await startTep(t.tep, true, {
    bindings: ["198.51.100.11=2001:db8:1::11", "198.51.100.12=2001:db8:1::12"],
  });
  const before = tepCounters(t.tep, socket);
  // Stopped: more packets than frames, more long bytes than the queue holds; then the TEP
  // reads what the kernel kept, and the end markers.
  if (stop) proc.proc.kill("SIGSTOP");
  let resumed = !stop;
  try {
    const got = await craftedThrough(
      t.att,
      t.web,
      t.mac,
      ["flood", String(FLOOD)],
      undefined,
      () => {
        if (!resumed) proc.proc.kill("SIGCONT");
        resumed = true;
      },
    );
    const after = await settledCounters(t.tep, socket);
    const d = (k: string) => after[k]! - before[k]!;
    // Not one datagram with another's bytes, size or source (a long packet taken from the
    // queue for the wrong frame would be one).
    expect(got.bad).toEqual([]);
    const seqs = got.got
      .filter(([tag]) => tag.startsWith("f"))
      .map(([tag]) => Number(tag.slice(1).split("/")[0]));
    // Each once, in the order sent (one flow, through the ring whatever its size).
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(got.got.filter(([tag]) => tag.startsWith("end-")).length).toBe(2);
    expect(seqs.length).toBeGreaterThan(0);
    expect(d("decap-ring-long")).toBeGreaterThan(0);
    if (stop) {
      // The ring overflowed (frames and queue) and said so.
      expect(seqs.length).toBeLessThan(FLOOD);
      expect(d("decap-ring-lost")).toBeGreaterThan(0);
    }
    // What the ring read and what it lost: at most the flood and end-ring (the kernel's
    // backlog may drop some before the ring sees them).
    expect(d("decap-ring") + d("decap-ring-lost")).toBeLessThanOrEqual(FLOOD + 1);
    // Nothing refused (a mispaired frame would be a spoofed or malformed drop); every packet
    // the ring read forwarded (end-raw came the raw socket's way) and at web.
    expect(Object.keys(delta(before, after)).sort()).toEqual([
      "decap-forward",
      "decap-forward-bytes",
    ]);
    expect(d("decap-forward")).toBe(d("decap-ring") + 1);
    expect(seqs.length + 2).toBe(d("decap-forward"));
  } finally {
    if (!resumed) proc.proc.kill("SIGCONT");
  }
}
