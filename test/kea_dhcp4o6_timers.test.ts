/**
 * `dstm client --protocol dhcp4o6` follows the server's timers (RFC 2131 §4.4.5), against ISC
 * Kea with lease 24 s, T1 4 s, T2 12 s and unicast to Kea lost (sent to a MAC address no one
 * has): timed from a packet capture, the client renews at T1 (unicast, U flag),
 * rebinds at T2 (ff02::1:2, U clear: Kea answers), and once Kea's DHCPv4 side is gone, drops
 * the address the moment the lease ends. As root, in namespaces made for this run.
 *
 * Before that, with no server address given, the client asks for option 88 in an
 * INFORMATION-REQUEST (RFC 7341 §5); Kea's is empty ("use ff02::1:2").
 *
 * A lease, and so its T1, T2 and end, counts from when the REQUEST that the ACK answers was
 * sent, not from the ACK (RFC 2131 §4.4.1, §4.4.5: "the sum of the time at which the client
 * sent the DHCPREQUEST message and the duration of the lease"): the selecting REQUEST for the
 * first lease, the rebinding REQUEST for the second. So the timers are measured from those
 * REQUESTs in the capture; measured from the ACKs, a Kea slow to answer (tens of ms on a busy
 * machine) would make them look early.
 *
 * Timers never fire early, so the lower bounds are exact (less the capture's clock jitter);
 * the upper bounds are the next state's start, seconds away, not a guess at scheduling delay.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatIPv4 } from "../lib/net/addr.ts";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { DHCP4O6_FLAG_UNICAST, decodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import {
  createNoDadNetns,
  haveKea,
  KEA4,
  KEA6,
  netnsStarter,
  stopProcess,
  tearDown,
} from "./helpers/kea.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (haveKea() ? null : "needs ISC Kea (scripts/test-deps.sh)") ??
  (Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh)");
announceSkip("kea_dhcp4o6_timers", skip);

const LEASE = 24;
const T1 = 4;
const T2 = 12;
const KEA6_ADDR = "2001:db8:2::547";
const LEASED = "198.51.100.200";
const FIXTURES = join(ROOT, "test", "fixtures", "kea");
let dir = "";
const ns: Record<"host" | "kea", Netns> = {} as never;
const procs = new Map<string, Bun.Subprocess>();

const start = netnsStarter(procs, () => dir);

/** Stops process `name` (./helpers/kea.ts). */
const stop = (name: string, signal: "SIGTERM" | "SIGINT" = "SIGTERM") =>
  stopProcess(procs, name, signal);

function render(text: string, values: Record<string, string | number>): string {
  let out = text;
  for (const [key, value] of Object.entries(values))
    out = out.replaceAll(`"@${key}@"`, JSON.stringify(value)).replaceAll(`@${key}@`, String(value));
  return out;
}

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "dstm-ktimers-"));
  for (const role of ["host", "kea"] as const) {
    ns[role] = createNoDadNetns(`dstmt-t${role[0]}-`);
  }
  vethPair(ns.host, "eth0", ns.kea, "eth0");
  ns.host.addAddress("eth0", "2001:db8:2::10/64");
  ns.kea.addAddress("eth0", `${KEA6_ADDR}/64`);
  ns.kea.addAddress("eth0", "203.0.113.67/24");
  // Unicast to Kea is lost on the wire (so the capture sees it): the host sends it to a MAC
  // no one has, which Kea's interface drops; ff02::1:2 still reaches Kea.
  ns.host.ip(
    "-6",
    "neigh",
    "replace",
    KEA6_ADDR,
    "lladdr",
    "02:00:5e:00:53:99",
    "nud",
    "permanent",
    "dev",
    "eth0",
  );
  // Kea still reaches the host: its neighbour entry is set (the host's own answers to Kea's
  // neighbour solicitations would go to the wrong MAC too).
  const hostMac = ns.host.exec(["cat", "/sys/class/net/eth0/address"]).stdout.trim();
  ns.kea.ip(
    "-6",
    "neigh",
    "replace",
    "2001:db8:2::10",
    "lladdr",
    hostMac,
    "nud",
    "permanent",
    "dev",
    "eth0",
  );
  const data = join(dir, "kea");
  mkdirSync(data);
  const values = {
    IFACE: "eth0",
    SERVER6: KEA6_ADDR,
    SUBNET6: "2001:db8:2::/64",
    SUBNET4: "198.51.100.0/24",
    POOL4: `${LEASED}-${LEASED}`,
    DHCP4O6_PORT: 6767,
    DATA_DIR: data,
    VALID_LIFETIME: LEASE,
    RENEW_TIMER: T1,
    REBIND_TIMER: T2,
  };
  for (const v of ["4", "6"]) {
    const text = render(readFileSync(join(FIXTURES, `kea-dhcp${v}.json`), "utf8"), values);
    const config = JSON.parse(text);
    // Option 88 of length 0: "send to ff02::1:2" (RFC 7341 §5), so that rebinding is multicast.
    if (v === "6") config.Dhcp6["option-data"][0].data = "";
    writeFileSync(join(dir, `kea-dhcp${v}.json`), JSON.stringify(config));
  }
  const env = { KEA_PIDFILE_DIR: data, KEA_LOCKFILE_DIR: data };
  for (const v of ["6", "4"]) {
    await start(
      `kea${v}`,
      ns.kea,
      [v === "6" ? KEA6 : KEA4, "-c", join(dir, `kea-dhcp${v}.json`)],
      new RegExp(`DHCP${v}_STARTED`),
      { log: join(data, `kea-dhcp${v}.log`), env },
    );
  }
  const filter = "udp port 547 or udp port 546";
  await start(
    "dumpcap",
    ns.host,
    ["dumpcap", "-q", "-i", "eth0", "-f", filter, "-w", join(dir, "timers.pcapng")],
    /Capturing on/,
  );
}, 60_000);

afterAll(async () => {
  if (skip) return;
  await tearDown(procs, Object.values(ns), dir);
}, 60_000);

interface Frame {
  time: number;
  dst: string;
  type: number;
  u: boolean;
  dhcp4: number;
  ciaddr: string;
}

test.skipIf(skip !== null)(
  "renew at T1 (unicast, U), rebind at T2 (ff02::1:2), the address dropped at the lease end, timed from the capture",
  async () => {
    const out = join(dir, "client.out");
    const log = () => readFileSync(out, "utf8");
    await start(
      "client",
      ns.host,
      [
        BUN,
        join(ROOT, "mod.ts"),
        "client",
        "--protocol",
        "dhcp4o6",
        "--server",
        "ff02::1:2%eth0",
        "--tep",
        "2001:db8:2::1",
        "--control",
        join(dir, "client.sock"),
      ],
      / bound ipv4=/,
    );
    // The first rebinding ACK renews the lease; then Kea's DHCPv4 side goes away.
    await waitUntil(() => / renewed ipv4=/.test(log()), {
      timeoutMs: (T2 + 10) * 1000,
      what: "the client to rebind at T2 (Kea answers ff02::1:2)",
    });
    await stop("kea4");
    await waitUntil(() => / lease-lost /.test(log()), {
      timeoutMs: (LEASE + 10) * 1000,
      what: "the client to give the lease up at its end",
    });
    const lostAt = Date.parse(/^(\S+) WARN lease-lost /m.exec(log())![1]!) / 1000;
    await waitUntil(() => ns.host.exec(["ip", "link", "show", "dti0"]).code !== 0, {
      what: "dti0 to go with the lease",
    });
    await stop("client");
    await stop("dumpcap", "SIGINT");
    const pcap = join(dir, "timers.pcapng");
    const text = ns.host.exec(["tshark", "-r", pcap, "-V"]).stdout;
    expect(text).not.toMatch(/Malformed/i);
    expect(text).not.toMatch(/Expert Info \((Warning|Error)/);
    const frames: Frame[] = ns.host
      .exec([
        ...["tshark", "-r", pcap, "-T", "fields", "-E", "separator=,"],
        ...["-e", "frame.time_epoch", "-e", "ipv6.dst", "-e", "udp.payload"],
      ])
      .stdout.trim()
      .split("\n")
      .map((line) => {
        const [time = "", dst = "", hex = ""] = line.split(",");
        const payload = Uint8Array.from(Buffer.from(hex.replaceAll(":", ""), "hex"));
        if (payload[0] !== 20 && payload[0] !== 21) {
          const plain = { time: Number(time), dst, type: payload[0]!, u: false, dhcp4: 0 };
          return { ...plain, ciaddr: "0.0.0.0" };
        }
        const r = decodeDhcp4o6(payload);
        if (!r.ok) throw new Error(`capture: ${r.error.message}`);
        return {
          time: Number(time),
          dst,
          type: r.value.type,
          u: (r.value.flags & DHCP4O6_FLAG_UNICAST) !== 0,
          dhcp4: r.value.dhcp4.options.messageType,
          ciaddr: formatIPv4(r.value.dhcp4.ciaddr),
        };
      });
    // RFC 7341 §5: no server address given, so the client first asks for option 88 (Kea's
    // is empty: ff02::1:2), then DISCOVERs there. It asks from its link-local address (RFC
    // 8415 §14.1), so the REPLY goes there.
    expect(frames.slice(0, 3).map((f) => [f.type, f.dst.replace(/^fe80:.*/, "fe80::…")])).toEqual([
      [11, "ff02::1:2"],
      [7, "fe80::…"],
      [20, "ff02::1:2"],
    ]);
    const acks = frames.filter((f) => f.type === 21 && f.dhcp4 === Dhcp4MessageType.ACK);
    const renewals = frames.filter((f) => f.type === 20 && f.ciaddr === LEASED);
    expect(acks.length).toBe(2); // the selecting REQUEST's, the first rebinding's
    const [a0, a1] = acks.map((a) => a.time) as [number, number];
    const jitter = 0.05;
    const during = (from: number, to: number) =>
      renewals.filter((r) => r.time >= from && r.time < to);
    // Lease 1 counts from the (first) selecting REQUEST.
    const selecting = frames.find(
      (f) => f.type === 20 && f.dhcp4 === Dhcp4MessageType.REQUEST && f.ciaddr === "0.0.0.0",
    );
    expect(selecting!.time).toBeLessThan(a0);
    const s0 = selecting!.time;
    // Lease 1: one renewing REQUEST at T1 (the 60 s retransmission is cut at T2), unicast
    // with U; then at T2 the rebinding REQUEST, U clear, to ff02::1:2, which Kea ACKs.
    const first = during(a0, a1);
    expect(first.map((r) => [r.u, r.dst])).toEqual([
      [true, KEA6_ADDR],
      [false, "ff02::1:2"],
    ]);
    expect(first[0]!.time - s0).toBeGreaterThanOrEqual(T1 - jitter);
    expect(first[0]!.time - s0).toBeLessThan(T2);
    expect(first[1]!.time - s0).toBeGreaterThanOrEqual(T2 - jitter);
    expect(first[1]!.time - s0).toBeLessThan(LEASE);
    // Lease 2 counts from the rebinding REQUEST that Kea ACKed (sent at T2), not from the
    // renewing one before it (sent at T1, unanswered): from that, T1 would be past at a1.
    const s1 = first[1]!.time;
    // Lease 2 (Kea's DHCPv4 side gone): the same, then nothing: the address is given up.
    const second = during(a1, Number.POSITIVE_INFINITY);
    expect(second.map((r) => [r.u, r.dst])).toEqual([
      [true, KEA6_ADDR],
      [false, "ff02::1:2"],
    ]);
    expect(second[0]!.time - s1).toBeGreaterThanOrEqual(T1 - jitter);
    expect(second[0]!.time - s1).toBeLessThan(T2);
    expect(second[1]!.time - s1).toBeGreaterThanOrEqual(T2 - jitter);
    // Dropped at the lease end: not before, and well before a renewal timer could have fired.
    expect(lostAt - s1).toBeGreaterThanOrEqual(LEASE - jitter);
    expect(lostAt - s1).toBeLessThan(LEASE + T1);
    // Afterwards the client starts again from DISCOVER (no ciaddr).
    expect(frames.filter((f) => f.time > lostAt && f.ciaddr !== "0.0.0.0")).toEqual([]);
  },
  120_000,
);
