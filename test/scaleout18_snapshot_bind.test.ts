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
 * The delay is test/sys_scripts/g18_hold.ts behind nftables (test/helpers/aa_hold.ts), as in
 * test/scaleout18_unbind_order.test.ts. Namespaces g18s-*.
 */
import { describe, expect, test } from "bun:test";
import { holdServerToTep } from "./helpers/aa_hold.ts";
import { AA } from "./helpers/aa_lab.ts";
import { aaSuite } from "./helpers/aa_suite.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, defer, twoServers } = aaSuite("scaleout18_snapshot_bind", {
  dirPrefix: "dstm-g18s-",
  needsNft: true,
});

const HOSTS = 100;

describe.skipIf(skip !== null)("a BIND received before a snapshot's first part", () => {
  test("survives A's snapshot cut before it (TEP restarted, A's parts late)", async () => {
    const { lab, b, serverMetric, tepMetric, plan } = await twoServers({ nsPrefix: "g18s-" });
    const discover = (server: number, from: number, to: number) =>
      plan([{ op: "discover", server, from, to }]);
    await discover(0, 1, HOSTS + 1);
    const tepBindings = () => tepMetric("dstm_tep_bindings", { origin: "server" });
    await waitUntil(
      async () =>
        (await serverMetric(b, "dstm_leases_active")) === HOSTS && (await tepBindings()) === HOSTS,
      { timeoutMs: 20_000, what: "B and the TEP holding every lease" },
    );

    // The network holds back everything A sends the TEP from now on.
    const hold = await holdServerToTep(lab, { dir, defer });

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
      const held = hold.held().filter((m) => m.type === "SNAPSHOT");
      const id = held[0]?.snapshot?.id;
      return held.filter((m) => m.snapshot?.id === id);
    };
    await waitUntil(() => parts().length === 3, {
      timeoutMs: 20_000,
      what: "A's snapshot (3 parts), held in the network",
    });
    expect(await tepBindings()).toBe(HOSTS);

    // H2's lease through B: B BINDs it at the TEP before the ACK, after A cut its snapshot.
    const h2 = await discover(1, HOSTS + 1, HOSTS + 2);
    expect(Object.keys(h2.leases)).toHaveLength(1);
    expect(await tepBindings()).toBe(HOSTS + 1);

    // Now A's snapshot arrives, every part after that BIND.
    const held = parts();
    const before = tep.lines.length;
    await hold.release(held.map((m) => m.n));
    await waitUntil(() => snapshotLine(AA.server6(0), before) !== undefined, {
      timeoutMs: 10_000,
      what: "A's late snapshot applied at the TEP",
    });
    hold.open();
    // The TEP kept H2's binding: B's BIND is newer than A's snapshot (its cut).
    expect(snapshotLine(AA.server6(0), before)).toContain(` bindings=${HOSTS + 1} `);
    expect(held[0]?.generation).toBeGreaterThan(0);
  }, 120_000);
});
