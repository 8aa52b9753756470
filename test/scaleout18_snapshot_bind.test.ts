/**
 * Scale-out, gen18 fault 2: a BIND the TEP received before the first part of a server's
 * snapshot is dropped by that snapshot, until the next SYNC.
 *
 * The TEP restarts (its table empty) and SYNCs both servers; each answers with a snapshot of
 * three parts (100 bindings). B's arrives; A's is held back in the network. Then host H2 gets
 * a lease through B, which BINDs it at the TEP before ACKing it. A's snapshot, cut before that
 * grant, arrives after the BIND. Before: the TEP took A's snapshot as the whole truth and its
 * `snapshot` line said bindings=100 (H2's binding, of an acknowledged lease, gone until a SYNC
 * brought another snapshot). With GENERATION (docs/protocol.md, "Generations") A's snapshot
 * carries its cut, the version of the shared lease table it holds through, and B's BIND the
 * version of H2's grant, above the cut: the TEP keeps H2's binding (bindings=101).
 *
 * The delay is test/sys_scripts/g18_hold.ts behind nftables, as in
 * test/scaleout18_unbind_order.test.ts. Namespaces g18s-*.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AA, AaLab, controlGet, metric } from "./helpers/aa_lab.ts";
import { announceSkip, netnsSkipReason, startScript } from "./helpers/netns.ts";
import { postgresBin, startPostgres } from "./helpers/postgres.ts";
import { waitUntil } from "./helpers/wait.ts";

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
}, 60_000);
const dir = mkdtempSync(join(tmpdir(), "dstm-g18s-"));
cleanup.push(() => rmSync(dir, { recursive: true, force: true }));

const skip =
  netnsSkipReason({ tun: true }) ??
  (postgresBin() ? null : "needs PostgreSQL (scripts/test-deps.sh installs it)") ??
  (Bun.which("nft") ? null : "needs nft");
announceSkip("scaleout18_snapshot_bind", skip);

/** Where A's held datagrams go in the TEP's namespace, and the port A's replays leave from. */
const HOLD_PORT = 4699;
const REPLAY_PORT = 4698;
const HOSTS = 100;

interface Held {
  n: number;
  type: string;
  snapshot?: { id: number; part: number; parts: number };
  generation?: number;
}

describe.skipIf(skip !== null)("a BIND received before a snapshot's first part", () => {
  test("survives A's snapshot cut before it (TEP restarted, A's parts late)", async () => {
    const pg = await startPostgres();
    cleanup.push(() => pg.stop());
    const url = await pg.createDatabase();
    const lab = new AaLab({ dir, db: url, pool: "198.18.0.0/24", nsPrefix: "g18s-" });
    cleanup.push(() => lab.down());
    const [a, b] = await Promise.all([lab.startServer(0), lab.startServer(1)]);
    await lab.startTep();
    const serverMetric = async (s: typeof a, name: string, labels?: Record<string, string>) =>
      metric(await controlGet(s.control, "/metrics"), name, labels);
    const connected = () =>
      waitUntil(
        async () =>
          (await serverMetric(a, "dstm_tep_connected", { tep: AA.tep6 })) === 1 &&
          (await serverMetric(b, "dstm_tep_connected", { tep: AA.tep6 })) === 1,
        { timeoutMs: 20_000, what: "the TEP's SYNC at both servers" },
      );
    await connected();
    const servers = `${AA.server6(0)},${AA.server6(1)}`;
    const plan = (server: number, from: number, to: number) =>
      startScript<{ leases: Record<string, string> }>(
        lab.srv,
        "aa_hosts.ts",
        ["plan", servers, JSON.stringify([{ op: "discover", server, from, to }])],
        60_000,
      ).result;
    await plan(0, 1, HOSTS + 1);
    const tepBindings = async () =>
      metric(await lab.tepMetrics(), "dstm_tep_bindings", { origin: "server" });
    await waitUntil(
      async () =>
        (await serverMetric(b, "dstm_leases_active")) === HOSTS && (await tepBindings()) === HOSTS,
      { timeoutMs: 20_000, what: "B and the TEP holding every lease" },
    );

    // The network holds back everything A sends the TEP from now on.
    const heldDir = join(dir, "held");
    mkdirSync(heldDir);
    const hold = startScript<never>(
      lab.tepNs,
      "g18_hold.ts",
      ["hold", AA.tep6, String(HOLD_PORT), heldDir],
      110_000,
    );
    cleanup.push(() => hold.kill());
    await hold.waitFor(/^holding$/, 20_000);
    const nft = (...args: string[]) => {
      const r = lab.tepNs.exec(["nft", ...args]);
      if (r.code !== 0) throw new Error(`nft ${args.join(" ")}: ${r.stderr}`);
    };
    nft("add", "table", "ip6", "g18");
    nft("add", "chain", "ip6", "g18", "pre", "{ type filter hook prerouting priority -300; }");
    nft(
      ..."add rule ip6 g18 pre ip6 saddr".split(" "),
      AA.server6(0),
      ..."udp dport 4608 udp dport set".split(" "),
      String(HOLD_PORT),
    );

    // The TEP restarts: both servers send it a snapshot; B's arrives, A's is held.
    await lab.stop(lab.tep);
    const tep = await lab.startTep();
    const snapshotLine = (server: string, from = 0) =>
      tep.lines.slice(from).find((l) => / snapshot /.test(l) && l.includes(`server=${server}`));
    await waitUntil(() => snapshotLine(AA.server6(1)) !== undefined, {
      timeoutMs: 20_000,
      what: "B's snapshot applied at the restarted TEP",
    });
    const parts = () => {
      const held = hold.lines
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Held)
        .filter((m) => m.type === "SNAPSHOT");
      const id = held[0]?.snapshot?.id;
      return held.filter((m) => m.snapshot?.id === id);
    };
    await waitUntil(() => parts().length === 3, {
      timeoutMs: 20_000,
      what: "A's snapshot (3 parts), held in the network",
    });
    expect(await tepBindings()).toBe(HOSTS);

    // H2's lease through B: B BINDs it at the TEP before the ACK, after A cut its snapshot.
    const h2 = await plan(1, HOSTS + 1, HOSTS + 2);
    expect(Object.keys(h2.leases)).toHaveLength(1);
    expect(await tepBindings()).toBe(HOSTS + 1);

    // Now A's snapshot arrives, every part after that BIND.
    const held = parts();
    nft("flush", "chain", "ip6", "g18", "pre");
    nft(
      ..."add rule ip6 g18 pre ip6 saddr".split(" "),
      AA.server6(0),
      ..."udp sport".split(" "),
      String(REPLAY_PORT),
      ..."udp sport set 4607".split(" "),
    );
    const before = tep.lines.length;
    const replay = startScript<never>(
      lab.srv,
      "g18_hold.ts",
      [
        "replay",
        AA.server6(0),
        String(REPLAY_PORT),
        AA.tep6,
        heldDir,
        held.map((m) => m.n).join(","),
      ],
      20_000,
    );
    await replay.waitFor(/^replayed 3$/, 20_000);
    await waitUntil(() => snapshotLine(AA.server6(0), before) !== undefined, {
      timeoutMs: 10_000,
      what: "A's late snapshot applied at the TEP",
    });
    nft("delete", "table", "ip6", "g18");
    // The TEP kept H2's binding: B's BIND is newer than A's snapshot (its cut).
    expect(snapshotLine(AA.server6(0), before)).toContain(` bindings=${HOSTS + 1} `);
    expect(held[0]?.generation).toBeGreaterThan(0);
  }, 120_000);
});
