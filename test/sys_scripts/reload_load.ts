/**
 * Reload under load, run inside a namespace whose lo carries TEP (2001:db8:ff::1):
 * a real `dstm server --config FILE` (SQLite), a TEP stand-in on [TEP]:4608 (answers
 * BIND/UNBIND, applies SNAPSHOTs, SYNCs every 300 ms with its digest) and HOSTS simulated
 * hosts each asking for a lease until they have one, while the config file is rewritten
 * and SIGHUP sent several times: a pool added, one resized, a refused change (--listen) in
 * between, the lease time changed. Prints one JSON line: what the hosts were acknowledged,
 * what the server's control socket, its database and the TEP hold afterwards.
 *
 * Usage: bun test/sys_scripts/reload_load.ts DIR HOSTS
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../../lib/client/protocol.ts";
import { formatIPv4 } from "../../lib/net/addr.ts";
import { bindUdp } from "../../lib/sys/udp.ts";
import { bindingsDigest } from "../../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../../lib/wire/dstm.ts";
import { MessageType, type WireBinding } from "../../lib/wire/dstm_types.ts";
import { eventually } from "../helpers/wait.ts";

const [dir = "/tmp", hostsText = "150"] = process.argv.slice(2);
const HOSTS = Number(hostsText);
const TEP = "2001:db8:ff::1";
const ROOT = join(import.meta.dir, "..", "..");
const file = join(dir, "reload.toml");
const db = join(dir, "reload.db");
const control = join(dir, "reload.sock");

const common = (extra: string) =>
  `listen = "[::]:0"\ndb = "${db}"\ncontrol = "${control}"\ntep = "${TEP}"\nsource-check = false\nmax-leases-per-prefix = 0\nprefix-rate = 0\n${extra}`;
const CONFIGS = {
  v1: common('pool = ["198.51.100.0/26"]\n'),
  v2: common('pool = ["198.51.100.0/26", "203.0.113.0/27"]\n'),
  bad: common('pool = ["198.51.100.0/25", "203.0.113.0/27"]\n').replace(
    'listen = "[::]:0"',
    'listen = "[::]:4999"',
  ),
  v3: common('pool = ["198.51.100.0/25", "203.0.113.0/27"]\n'),
  v4: common('pool = ["198.51.100.0/25", "203.0.113.0/27"]\nlease-time = "2h"\n').replace(
    "prefix-rate = 0",
    "prefix-rate = 500",
  ),
};

// ── the server ──────────────────────────────────────────────────────────────────────
writeFileSync(file, CONFIGS.v1);
const server = spawn(process.execPath, [join(ROOT, "mod.ts"), "server", "--config", file], {
  cwd: ROOT,
  stdio: ["ignore", "pipe", "inherit"],
});
const lines: string[] = [];
let rest = "";
server.stdout.on("data", (chunk: Buffer) => {
  rest += chunk.toString();
  for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
    lines.push(rest.slice(0, nl));
    rest = rest.slice(nl + 1);
  }
});
const deadline = Date.now() + 90_000;
/** Waits (../helpers/wait.ts) until `check` holds, by the run's deadline; the log on failure. */
async function until(what: string, check: () => boolean): Promise<void> {
  const timeoutMs = Math.max(0, deadline - Date.now());
  if (!(await eventually(check, { timeoutMs, intervalMs: 20 })))
    throw new Error(`timed out waiting for ${what}\n${lines.join("\n")}`);
}
const count = (re: RegExp) => lines.filter((l) => re.test(l)).length;
await until("start", () => count(/ start /) === 1);
const port = Number(/listen=\[::\]:(\d+)/.exec(lines.find((l) => / start /.test(l)) ?? "")?.[1]);

// ── the TEP stand-in ────────────────────────────────────────────────────────────────
const table = new Map<number, WireBinding>(); // by host4 (whole addresses)
let unbinds = 0;
const parts = new Map<number, WireBinding[][]>();
const tep = await bindUdp(TEP, 4608, (data, address, from) => {
  const decoded = decodeMessage(data);
  if (!decoded.ok) return;
  const m = decoded.value;
  if (m.type === MessageType.BIND || m.type === MessageType.UNBIND) {
    if (m.type === MessageType.BIND)
      table.set(m.host4!, {
        host4: m.host4!,
        host6: m.host6!,
        portSet: m.portSet ?? { offset: 0, psidLength: 0, psid: 0 }, // absent: the whole address
      });
    else {
      unbinds++;
      table.delete(m.host4!);
    }
    tep.send(
      encodeMessage({ type: MessageType.BIND_ACK, xid: m.xid, host4: m.host4! }),
      address,
      from,
    );
  } else if (m.type === MessageType.SNAPSHOT && m.snapshot) {
    const got = parts.get(m.snapshot.id) ?? [];
    got[m.snapshot.part] = [...(m.bindings ?? [])];
    parts.set(m.snapshot.id, got);
    if (got.filter(Boolean).length === m.snapshot.parts) {
      table.clear();
      for (const b of got.flat()) table.set(b.host4, b);
      parts.delete(m.snapshot.id);
    }
  }
});
let xid = 1;
const sync = setInterval(() => {
  const bindings = [...table.values()];
  tep.send(
    encodeMessage({
      type: MessageType.SYNC,
      xid: xid++,
      tep6: TEP,
      syncCount: bindings.length,
      syncDigest: bindingsDigest(bindings),
    }),
    TEP,
    port,
  );
}, 300);
await until("tep-connected", () => count(/ tep-connected /) >= 1);

// ── the hosts ───────────────────────────────────────────────────────────────────────
const transports = await Promise.all(
  Array.from({ length: 8 }, () =>
    DstmTransport.open({ server: TEP, port, retry: { initialMs: 200, tries: 6 } }),
  ),
);
const acked = new Map<string, number>(); // host6 → ipv4
let refusals = 0;
async function host(i: number): Promise<void> {
  const host6 = `2001:db8:1::${(i + 1).toString(16)}`;
  const client = new DstmClient(transports[i % transports.length]!, host6);
  while (Date.now() < deadline) {
    try {
      const lease = await client.discover();
      acked.set(host6, lease.ipv4);
      return;
    } catch {
      refusals++; // POOL_EXHAUSTED until a reload makes room
      await Bun.sleep(25); // a host's pause before it asks again (pacing, not a wait for state)
    }
  }
}
const hosts = Array.from({ length: HOSTS }, (_, i) => host(i));

// ── the reloads, while the hosts allocate ───────────────────────────────────────────
const reload = async (config: string, pattern: RegExp, n: number) => {
  writeFileSync(file, config);
  server.kill("SIGHUP");
  await until(`${pattern} #${n}`, () => count(pattern) >= n);
};
await until("some leases", () => acked.size >= 30);
await reload(CONFIGS.v2, / reload reason=SIGHUP /, 1);
await reload(CONFIGS.bad, / WARN reload-refused /, 1);
await reload(CONFIGS.v3, / reload reason=SIGHUP /, 2);
await reload(CONFIGS.v4, / reload reason=SIGHUP /, 3);
await Promise.all(hosts);

// ── afterwards: the store, the TEP ──────────────────────────────────────────────────
const live = (await (await fetch("http://localhost/v1/leases", { unix: control })).json()) as {
  leases: { hostIPv4: string; hostIPv6: string }[];
};
const inStore = new Map(live.leases.map((l) => [l.hostIPv6, l.hostIPv4]));
const ackedText = [...acked].map(([h, a]) => [h, formatIPv4(a)] as const);
const missingStore = ackedText.filter(([h, a]) => inStore.get(h) !== a).map(([h]) => h);
const atTep = () => ackedText.filter(([h, a]) => table.get(acked.get(h)!)?.host6 === h && a).length;
await until(
  "the TEP has every binding",
  () => atTep() === acked.size || Date.now() > deadline - 1000,
).catch(() => {});
const missingTep = ackedText.filter(([h]) => table.get(acked.get(h)!)?.host6 !== h).map(([h]) => h);
clearInterval(sync);
for (const t of transports) t.close();
tep.close();
server.kill("SIGTERM");
const code = await new Promise<number>((resolve) => server.on("exit", (c) => resolve(c ?? -1)));
const durable = Bun.spawnSync(
  [process.execPath, join(ROOT, "mod.ts"), "lease", "ls", "--db", db, "--json"],
  {
    cwd: ROOT,
  },
);
const stored = (
  JSON.parse(durable.stdout.toString()) as { leases: { hostIPv4: string; hostIPv6: string }[] }
).leases;
const inDb = new Map(stored.map((l) => [l.hostIPv6, l.hostIPv4]));
console.log(
  JSON.stringify({
    hosts: HOSTS,
    acked: acked.size,
    distinctAddresses: new Set(acked.values()).size,
    refusals,
    inStore: inStore.size,
    missingStore,
    missingDb: ackedText.filter(([h, a]) => inDb.get(h) !== a).map(([h]) => h),
    atTep: atTep(),
    missingTep,
    unbinds,
    reloads: count(/ reload reason=SIGHUP /),
    refused: lines.filter((l) => / reload-refused /.test(l)),
    pools: lines.filter((l) => / reload /.test(l)).at(-1),
    exit: code,
    stopLine: count(/ stop/) === 1,
  }),
);
