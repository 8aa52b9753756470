/**
 * A TEP on a lossy path still gets the whole table (docs/protocol.md, "SNAPSHOT_MISSING"):
 * real `dstm server` and `dstm tep` processes (from source) in network namespaces, the TEP's
 * kernel dropping every 25th SNAPSHOT datagram of the server (nftables, `numgen inc mod 25`,
 * on UDP 4607 → 4608 longer than 600 bytes: the full parts, not the SYNC answers). The table:
 * 203.0.113.0/24 shared by 64 (16,256 bindings, 370 parts), written to the server's SQLite
 * store beforehand; once with the channel signed with a TEP key, once unauthenticated.
 *
 * Before SNAPSHOT_MISSING, every snapshot lost about 14 of its 370 parts, so the TEP never
 * held a whole one: each SYNC after it started a new full snapshot, which lost parts again,
 * without end. Now the TEP asks for the parts it lacks in its next SYNC and the server sends
 * those again from the snapshot it cut: the TEP reaches the server's table with ONE full
 * snapshot and some re-sends, and its SYNCs then match (no further snapshot nor re-send).
 *
 *   server ns: dstm server [2001:db8:1::53]:4607 ── tep ns: dstm tep 2001:db8:1::1 (+ the
 *   nftables drop rule) / 192.0.2.1 ── web ns 192.0.2.80
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, writeFileSync } from "node:fs";
import type { Lease, PortSet } from "../lib/lease/lease.ts";
import { SqliteLeaseStore } from "../lib/lease/sqlite.ts";
import { vethPair } from "../lib/sys/netns.ts";
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { metricsAt } from "./helpers/channel_attack.ts";
import { daemonScope, metric } from "./helpers/daemon.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { tepArgv } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

const SHARE = 64;
const ADDRESSES = 254; // 203.0.113.1 … .254
const BINDINGS = ADDRESSES * SHARE; // 16,256: 370 SNAPSHOT parts of 44
const TEP6 = "2001:db8:1::1";
const SERVER6 = "2001:db8:1::53";

/** Every 25th SNAPSHOT-sized datagram from the server's port to the TEP's control port is dropped. */
const LOSS_RULES = `table ip6 dstm_loss {
  counter snapshot_drops { }
  chain input {
    type filter hook input priority 0; policy accept;
    udp sport 4607 udp dport 4608 udp length > 600 numgen inc mod 25 == 0 counter name "snapshot_drops" drop
  }
}
`;

/** Writes the 16,256 active shared leases of 203.0.113.0/24 (TEP {@link TEP6}) to `path`. */
async function fillStore(path: string): Promise<void> {
  const store = SqliteLeaseStore.open(path);
  const now = Date.now();
  const rows: Lease[] = [];
  for (let a = 0; a < ADDRESSES; a++) {
    for (let psid = 0; psid < SHARE; psid++) {
      const i = a * SHARE + psid;
      const portSet: PortSet = { offset: 6, psidLength: 6, psid };
      rows.push({
        ipv4: 0xcb007100 + a + 1,
        portSet,
        host6: `2001:db8:2:${(i >>> 16).toString(16)}::${(i & 0xffff).toString(16)}`,
        tep4: 0,
        tep6: TEP6,
        pool: "203.0.113.0/24",
        state: "active",
        grantedAt: now,
        expiresAt: now + 86_400_000,
      });
    }
  }
  await store.write(rows.map((lease) => ({ op: "put" as const, lease })));
  await store.close();
}

const skip = netnsSkipReason({ tun: true }) ?? (Bun.which("nft") ? null : "needs nft (nftables)");
announceSkip("tep_snapshot_loss", skip);

describe.skipIf(skip !== null)("a TEP whose path loses SNAPSHOT parts", () => {
  const scope = daemonScope("dstm-snaploss-", { timeoutMs: 180_000, stderrOnFailure: true });
  const { file } = scope;

  beforeAll(async () => {
    writeFileSync(file("loss.nft"), LOSS_RULES);
    writeFileSync(file("tep.key"), generateKeyFileText(1), { mode: 0o600 });
    await fillStore(file("leases.db"));
  }, 60_000);

  /**
   * The server (a copy of the filled store) and the TEP of `run` in their own namespaces, the
   * TEP's dropping every 25th SNAPSHOT datagram; `signed`: with the TEP key, else
   * unauthenticated (`--insecure-control`: the re-sends then draw on the snapshot allowance).
   */
  async function start(run: string, signed: boolean) {
    const serverNs = scope.netns("dstml-");
    const tepNs = scope.netns("dstml-");
    const web = scope.netns("dstml-");
    vethPair(serverNs, "s0", tepNs, "t0");
    vethPair(tepNs, "t1", web, "w0");
    serverNs.addAddress("s0", `${SERVER6}/64`);
    tepNs.addAddress("t0", `${TEP6}/64`);
    tepNs.addAddress("t1", "192.0.2.1/24");
    web.addAddress("w0", "192.0.2.80/24");
    const nft = tepNs.exec(["nft", "-f", file("loss.nft")]);
    if (nft.code !== 0) throw new Error(`nft: ${nft.stderr}`);
    copyFileSync(file("leases.db"), file(`${run}.db`));
    const server = scope.dstm(serverNs, [
      ...["server", "--listen", `[${SERVER6}]:4607`, "--pool", "203.0.113.0/24"],
      ...["--share", String(SHARE), "--psid-offset", "6", "--tep", `${TEP6},192.0.2.1`],
      ...["--db", file(`${run}.db`), "--no-source-check", "--lease-time", "1d"],
      ...["--control", file(`${run}-server.sock`)],
      ...(signed ? ["--tep-key", file("tep.key")] : []),
    ]);
    await server.waitFor(/ start /, 60_000);
    const tep = scope.dstm(tepNs, [
      ...tepArgv({ route: "203.0.113.0/24" }),
      ...["--control", file(`${run}-tep.sock`)],
      ...(signed ? ["--key", file("tep.key")] : ["--insecure-control"]),
    ]);
    await tep.waitFor(/ tep-start /);
    const drops = () => {
      const r = tepNs.exec(["nft", "-j", "list", "counter", "ip6", "dstm_loss", "snapshot_drops"]);
      const json = JSON.parse(r.stdout) as { nftables: { counter?: { packets: number } }[] };
      return json.nftables.find((e) => e.counter)?.counter?.packets ?? -1;
    };
    return { tep, drops };
  }

  /** Runs `run` and checks the TEP gets in step from one snapshot and re-sends. */
  async function inStepFromOneSnapshot(run: string, signed: boolean): Promise<void> {
    const { tep, drops } = await start(run, signed);
    const serverCount = async (kind: string) =>
      metric(await metricsAt(file(`${run}-server.sock`)), "dstm_tep_messages_total", { kind });
    const tepMetrics = () => metricsAt(file(`${run}-tep.sock`));
    const held = async () => metric(await tepMetrics(), "dstm_tep_bindings", { origin: "server" });
    await waitUntil(async () => (await held()) === BINDINGS, {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: `the TEP holding all ${BINDINGS} bindings`,
    });
    expect(await tep.waitFor(new RegExp(` snapshot bindings=${BINDINGS} parts=370 `))).toBeTruthy();
    const dropped = drops();
    expect(dropped).toBeGreaterThan(0); // parts were lost on the way…
    expect(await serverCount("snapshot")).toBe(1); // …yet one full snapshot was enough
    const requests = await serverCount("snapshot_request");
    expect(requests).toBeGreaterThanOrEqual(1);
    // Every dropped part was sent again (a dropped re-send too), and asked for by the TEP.
    expect(await serverCount("snapshot_part_resent")).toBeGreaterThanOrEqual(dropped);
    const requested = metric(await tepMetrics(), "dstm_tep_control_total", {
      kind: "snapshot",
      result: "parts-requested",
    });
    expect(requested).toBeGreaterThanOrEqual(dropped);
    expect(await serverCount("snapshot_request_malformed")).toBe(0);
    expect(await serverCount("snapshot_request_unknown")).toBe(0);
    // In step: the TEP's next SYNCs match the server's view (count and digest), so they bring
    // no snapshot, no re-send, not even a busy or deferred one.
    const syncs = await serverCount("sync");
    const unsettled = async () =>
      (await serverCount("snapshot")) +
      (await serverCount("snapshot_request")) +
      (await serverCount("snapshot_busy")) +
      (await serverCount("snapshot_deferred"));
    const before = await unsettled();
    await waitUntil(async () => (await serverCount("sync")) >= syncs + 2, {
      timeoutMs: 20_000,
      intervalMs: 200,
      what: "two more SYNCs of the TEP",
    });
    expect(await unsettled()).toBe(before);
    expect(await serverCount("snapshot_request")).toBe(requests);
    expect(await held()).toBe(BINDINGS);
  }

  test("signed channel: the whole table from one snapshot and re-sends of the parts it lost", async () => {
    await inStepFromOneSnapshot("signed", true);
  }, 120_000);

  test("unauthenticated channel: the same, the re-sends within the snapshot allowance", async () => {
    await inStepFromOneSnapshot("open", false);
  }, 120_000);
});
