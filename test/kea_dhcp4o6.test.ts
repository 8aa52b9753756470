/**
 * DHCPv4-over-DHCPv6 against ISC Kea (kea-dhcp6 + kea-dhcp4 linked by "dhcp4o6-port"), as
 * root, in namespaces made for this run and removed afterwards, also on failure:
 *
 * ```
 *   IPv6 link 2001:db8:2::/64 (bridge in "sw")                  IPv4 192.0.2.0/24
 *   ┌──────────────┐ ┌───────────────────────┐ ┌─────────────────────┐     ┌────────────────┐
 *   │ host ::10    │ │ kea ::547             │ │ tep ::1 / 192.0.2.1 │ ─── │ web 192.0.2.80 │
 *   │ (the client) │ │ + 203.0.113.67 (4o6   │ │ static binding      │     └────────────────┘
 *   └──────────────┘ │   interface, server id)│ │ .200 = host ::10    │
 *                    └───────────────────────┘ └─────────────────────┘
 * ```
 *
 * Kea's pool is the single address 198.51.100.200, so the TEP's static binding can be set up
 * before Kea hands it out. Kea's own evidence is read back: its memfile lease file (one row
 * per grant, renewal and release) and its DHCPv6 debug log, where the 4o6 flags show up as
 * the "transid" of the DHCPV4-QUERY (0x800000 = U flag).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, stopPid } from "../lib/lab/services.ts";
import { createNetns, deleteNetns, type Netns, vethPair } from "../lib/sys/netns.ts";
import { createNoDadNetns, haveKea, KEA4, KEA6, netnsStarter, stopProcess } from "./helpers/kea.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (haveKea()
    ? null
    : "needs ISC Kea (apt-get install kea-dhcp4-server kea-dhcp6-server; scripts/test-deps.sh installs them)") ??
  (Bun.which("curl") && existsSync("/usr/bin/python3")
    ? null
    : "needs curl and python3 (scripts/test-deps.sh)");
announceSkip("kea_dhcp4o6", skip);

const NET = {
  host6: "2001:db8:2::10",
  kea6: "2001:db8:2::547",
  tep6: "2001:db8:2::1",
  kea4: "203.0.113.67",
  tep4: "192.0.2.1",
  web4: "192.0.2.80",
  subnet4: "198.51.100.0/24",
  leased: "198.51.100.200",
  leaseTime: 120,
};
const FIXTURES = join(ROOT, "test", "fixtures", "kea");
const PAGE = "dstm over DHCPv4-over-DHCPv6: IPv4 web server 192.0.2.80\n";

let dir = "";
const ns: Record<"sw" | "host" | "kea" | "tep" | "web", Netns> = {} as never;
const procs = new Map<string, Bun.Subprocess>();

/** Fills a fixture: `"@KEY@"` becomes the JSON value, `@KEY@` inside a string the text. */
function renderTemplate(text: string, values: Record<string, string | number>): string {
  let out = text;
  for (const [key, value] of Object.entries(values)) {
    out = out.replaceAll(`"@${key}@"`, JSON.stringify(value)).replaceAll(`@${key}@`, String(value));
  }
  const left = /@[A-Z0-9_]+@/.exec(out);
  if (left) throw new Error(`template placeholder ${left[0]} has no value`);
  return out;
}

/** Starts a daemon in a namespace (test/helpers/kea.ts); 10 s to be ready. */
const start = netnsStarter(procs, () => dir, 10_000);

/** SIGTERM (then SIGKILL) to a process this test started; waits for it to go. */
const stop = (name: string) => stopProcess(procs, name);

function buildNetwork(): void {
  ns.sw = createNetns("dstmt-ksw-");
  for (const role of ["host", "kea", "tep", "web"] as const) {
    ns[role] = createNoDadNetns(`dstmt-k${role[0]}-`);
  }
  ns.sw.ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "0");
  ns.sw.up("br0");
  for (const [role, ifname, address] of [
    ["host", "eth0", NET.host6],
    ["kea", "eth0", NET.kea6],
    ["tep", "eth6", NET.tep6],
  ] as const) {
    vethPair(ns.sw, `p-${role}`, ns[role], ifname);
    ns.sw.ip("link", "set", `p-${role}`, "master", "br0");
    ns[role].addAddress(ifname, `${address}/64`);
  }
  // kea-dhcp4 drops every 4o6 packet unless the 4o6 interface has an IPv4 address.
  ns.kea.addAddress("eth0", `${NET.kea4}/24`);
  vethPair(ns.tep, "eth4", ns.web, "eth0");
  ns.tep.addAddress("eth4", `${NET.tep4}/24`);
  ns.web.addAddress("eth0", `${NET.web4}/24`);
  ns.web.addRoute(NET.subnet4, "via", NET.tep4);
}

async function startKea(): Promise<void> {
  const values = {
    IFACE: "eth0",
    SERVER6: NET.kea6,
    SUBNET6: "2001:db8:2::/64",
    SUBNET4: NET.subnet4,
    POOL4: `${NET.leased}-${NET.leased}`,
    DHCP4O6_PORT: 6767,
    DATA_DIR: join(dir, "kea"),
    VALID_LIFETIME: NET.leaseTime,
    RENEW_TIMER: 60,
    REBIND_TIMER: 105,
  };
  mkdirSync(values.DATA_DIR);
  for (const v of ["4", "6"]) {
    const text = readFileSync(join(FIXTURES, `kea-dhcp${v}.json`), "utf8");
    writeFileSync(join(dir, `kea-dhcp${v}.json`), renderTemplate(text, values));
  }
  // Kea's PID and lock files go to our directory, not /run/kea.
  const env = { KEA_PIDFILE_DIR: values.DATA_DIR, KEA_LOCKFILE_DIR: values.DATA_DIR };
  for (const [v, binary] of [
    ["6", KEA6],
    ["4", KEA4],
  ] as const) {
    await start(
      `kea-dhcp${v}`,
      ns.kea,
      [binary, "-c", join(dir, `kea-dhcp${v}.json`)],
      new RegExp(`DHCP${v}_STARTED`),
      { log: join(values.DATA_DIR, `kea-dhcp${v}.log`), env },
    );
  }
}

interface LeaseRow {
  address: string;
  validLifetime: number;
  expire: number;
}

/** Kea's memfile rows (appended on every change), from row `from` on. */
function leaseRows(from = 0): LeaseRow[] {
  const file = join(dir, "kea", "kea-leases4.csv");
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, "utf8").trim().split("\n").slice(1);
  return lines.slice(from).map((line) => {
    const f = line.split(",");
    return { address: f[0]!, validLifetime: Number(f[3]), expire: Number(f[4]) };
  });
}

/** How many DHCPV4-QUERYs kea-dhcp6 logged with the U flag (its "transid" is the flags). */
function keaQueries(): { u: number; plain: number } {
  const log = readFileSync(join(dir, "kea", "kea-dhcp6.log"), "utf8");
  return {
    u: log.split("msgtype=20(DHCPV4_QUERY), transid=0x800000").length - 1,
    plain: log.split("msgtype=20(DHCPV4_QUERY), transid=0x0\n").length - 1,
  };
}

interface Session {
  servers?: string[] | null;
  lease: { ipv4: string; leaseTime: number; tep6: string };
  binding: { responder: string; t1: number; t2: number };
  renewed: { ipv4: string; leaseTime: number };
  rebound?: { ipv4: string; leaseTime: number };
  sent: { message: string; u: boolean; to: string }[];
}

function session(mode: "unicast" | "multicast", target: string): Promise<Session> {
  return runScript<Session>(
    ns.host,
    "../e2e_scripts/dhcp4o6_session.ts",
    [mode, target, NET.host6, NET.tep6],
    30_000,
  );
}

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), "dstm-kea-"));
  buildNetwork();
  await startKea();
}, 60_000);

afterAll(async () => {
  if (skip) return;
  // Ours first, by PID, newest first (clients, TEP, web, Kea); then anything still inside our
  // namespaces (started by this test).
  for (const name of [...procs.keys()].reverse()) await stop(name);
  for (const n of Object.values(ns)) {
    const pids = Bun.spawnSync(["ip", "netns", "pids", n.name], { stdout: "pipe" })
      .stdout.toString()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    for (const pid of pids) await stopPid(pid, 2000);
    deleteNetns(n.name);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe.skipIf(skip !== null)("DHCPv4-over-DHCPv6 with ISC Kea", () => {
  test("unicast: lease, renewal with the U flag, rebinding via ff02::1:2, release (Kea's lease file agrees); option 88", async () => {
    const rowsBefore = leaseRows().length;
    const keaBefore = keaQueries();
    const s = await session("unicast", NET.kea6);
    expect(s.lease).toEqual({ ipv4: NET.leased, leaseTime: NET.leaseTime, tep6: NET.tep6 });
    expect(s.servers).toEqual([NET.kea6]);
    expect(s.binding).toMatchObject({ responder: NET.kea6, t1: 60, t2: 105 });
    expect(s.renewed).toEqual({ ipv4: NET.leased, leaseTime: NET.leaseTime });
    expect(s.rebound).toEqual({ ipv4: NET.leased, leaseTime: NET.leaseTime });
    expect(s.sent).toEqual([
      { message: "DISCOVER", u: false, to: NET.kea6 },
      { message: "REQUEST", u: false, to: NET.kea6 },
      { message: "REQUEST", u: true, to: NET.kea6 }, // renewing
      { message: "REQUEST", u: false, to: "ff02::1:2%eth0" }, // rebinding
      { message: "RELEASE", u: true, to: NET.kea6 },
    ]);
    // Kea saw the U flag on the renewal and the RELEASE, and not on the others.
    const kea = keaQueries();
    expect(kea.u - keaBefore.u).toBe(2);
    expect(kea.plain - keaBefore.plain).toBe(3);
    // One row per ACK, each expiring later; the release writes valid lifetime 0.
    // The RELEASE has no answer: Kea's lease file shows it once Kea has handled it.
    const released = () => leaseRows(rowsBefore).some((r) => r.validLifetime === 0);
    await waitUntil(released, { timeoutMs: 10_000, what: "Kea to write the released lease" });
    const rows = leaseRows(rowsBefore).filter((r) => r.address === NET.leased);
    expect(rows.map((r) => r.validLifetime)).toEqual([120, 120, 120, 0]);
    expect(rows[1]!.expire).toBeGreaterThan(rows[0]!.expire);
    expect(rows[2]!.expire).toBeGreaterThan(rows[1]!.expire);
  }, 40_000);

  test("multicast: option 88 names Kea; lease via ff02::1:2, renewal unicast to the answering server, release", async () => {
    const rowsBefore = leaseRows().length;
    const s = await session("multicast", "eth0");
    expect(s.servers).toEqual([NET.kea6]);
    expect(s.lease.ipv4).toBe(NET.leased);
    expect(s.sent).toEqual([
      { message: "DISCOVER", u: false, to: "ff02::1:2%eth0" },
      { message: "REQUEST", u: false, to: "ff02::1:2%eth0" },
      { message: "REQUEST", u: true, to: s.binding.responder },
      { message: "RELEASE", u: true, to: s.binding.responder },
    ]);
    // Kea answers a multicast query from its unicast address when it has one.
    expect(s.binding.responder).toBe(NET.kea6);
    await waitUntil(() => leaseRows(rowsBefore).some((r) => r.validLifetime === 0), {
      timeoutMs: 10_000,
      what: "Kea to write the released lease",
    });
    const rows = leaseRows(rowsBefore).filter((r) => r.address === NET.leased);
    expect(rows.map((r) => r.validLifetime)).toEqual([120, 120, 0]);
    expect(rows[1]!.expire).toBeGreaterThan(rows[0]!.expire);
  }, 40_000);

  const dstm = [BUN, join(ROOT, "mod.ts")];

  /** The IPv4 side: the web server and a TEP whose only binding is Kea's single address. */
  async function tunnelSide(): Promise<void> {
    if (procs.has("tep")) return;
    mkdirSync(join(dir, "www"), { recursive: true });
    writeFileSync(join(dir, "www", "index.html"), PAGE);
    await start(
      "web",
      ns.web,
      [
        "/usr/bin/python3",
        "-u",
        "-m",
        "http.server",
        "80",
        "--bind",
        NET.web4,
        "--directory",
        join(dir, "www"),
      ],
      /Serving HTTP/,
      { env: { PYTHONUNBUFFERED: "1" } },
    );
    await start(
      "tep",
      ns.tep,
      [
        ...dstm,
        "tep",
        "--ipv6",
        NET.tep6,
        "--ipv4",
        NET.tep4,
        // No DSTM server here: the only binding is the static one for Kea's single address.
        "--server",
        "2001:db8:2::53",
        "--insecure-control",
        "--route",
        NET.subnet4,
        "--binding",
        `${NET.leased}=${NET.host6}`,
        "--stats",
        join(dir, "tep.sock"),
      ],
      / tep-start /,
    );
  }

  /** `dstm client --protocol dhcp4o6 --server SERVER`: bound, curl through the TEP, SIGTERM releases. */
  async function clientEndToEnd(server: string, tag: string): Promise<void> {
    await tunnelSide();
    const rowsBefore = leaseRows().length;
    const name = `client-${tag}`;
    const out = join(dir, `${name}.out`);
    try {
      await start(
        name,
        ns.host,
        [
          ...dstm,
          "client",
          "--protocol",
          "dhcp4o6",
          "--server",
          server,
          "--tep",
          NET.tep6,
          "--tep4",
          NET.tep4,
          "--control",
          join(dir, `${name}.sock`),
        ],
        / bound ipv4=/,
      );
      const clientLog = () => readFileSync(out, "utf8");
      // RFC 7341 §5: without a server address the client asks for option 88 first (Kea's
      // names its address); with one it does not.
      if (server === "ff02::1:2")
        expect(clientLog()).toMatch(/ dhcp4o6-servers servers=2001:db8:2::547\n/);
      else expect(clientLog()).not.toMatch(/ dhcp4o6-servers /);
      expect(clientLog()).toMatch(
        new RegExp(` bound ipv4=${NET.leased} ifname=dti0 tep6=${NET.tep6} .*lease-time-s=120`),
      );
      const status = ns.host.exec([
        ...dstm,
        "client",
        "status",
        "--control",
        join(dir, `${name}.sock`),
      ]);
      expect(status.stdout).toContain(`tep       ${NET.tep6} (${NET.tep4})`);
      const webLog = () => readFileSync(join(dir, "web.out"), "utf8").split(`${NET.leased} - - `);
      const served = webLog().length;
      const curl = ns.host.exec(["curl", "-sS", "--max-time", "10", `http://${NET.web4}/`]);
      expect(curl.stderr).toBe("");
      expect(curl.stdout).toBe(PAGE);
      // The web server saw the leased address: the TEP decapsulated it unchanged.
      expect(webLog().length).toBe(served + 1);
      // SIGTERM: the client releases the lease (Kea writes valid lifetime 0) and removes dti0.
      const pid = procs.get(name)!.pid;
      await stop(name);
      expect(alive(pid)).toBe(false);
      expect(clientLog()).toMatch(new RegExp(` release ipv4=${NET.leased}`));
      const rows = leaseRows(rowsBefore).filter((r) => r.address === NET.leased);
      expect(rows.map((r) => r.validLifetime)).toEqual([120, 0]);
      expect(ns.host.exec(["ip", "link", "show", "dti0"]).code).not.toBe(0);
    } finally {
      await stop(name);
    }
  }

  test("end to end: `dstm client --protocol dhcp4o6 --server KEA` gets Kea's address and reaches the IPv4 web server through the TEP", async () => {
    await clientEndToEnd(NET.kea6, "unicast");
  }, 60_000);

  test("end to end with `--server ff02::1:2` (the interface found from the source towards the TEP)", async () => {
    await clientEndToEnd("ff02::1:2", "multicast");
  }, 60_000);
});
