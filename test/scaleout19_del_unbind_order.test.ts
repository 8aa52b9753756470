/**
 * Scale-out, gen19: the UNBIND of an administrator's `dstm lease del` carries GENERATION, so
 * that, late in the network, it cannot remove a binding another server granted afterwards.
 *
 * Host H holds a lease on address X, granted by server B (so server A knows the row only from
 * the shared table). A's administrator ends it (`dstm lease del X`); A UNBINDs
 * X→H, and the network holds that datagram back (and everything else A sends the TEP). H asks
 * server B, which grants it X again (sticky) and BINDs X→H before ACKing H. Only then does A's
 * UNBIND reach the TEP. It names X→H, which the TEP holds (B's fresh binding). The UNBIND
 * must carry the generation of the write that ended the lease (docs/protocol.md,
 * "Generations"), below that of B's grant: the TEP counts it `unbind-superseded` and keeps
 * the binding. Before the write's generation came back with its result, A looked it up by
 * the lease object `lease del` had (the row as it was, taken in from B's write), which its
 * store's identity Map did not know: the UNBIND went without GENERATION and the TEP removed
 * the live binding of an acknowledged lease (this test failed so at e3d0776).
 * Then `dstm lease wipe` at A: its UNBIND carries a generation too (the TEP's log says it).
 *
 * The delay is test/helpers/aa_hold.ts (nftables in the TEP's namespace, as
 * test/scaleout18_unbind_order.test.ts). Namespaces g19d-*.
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { holdServerToTep, tepWordOnHeldUnbind } from "./helpers/aa_hold.ts";
import { AA } from "./helpers/aa_lab.ts";
import { aaSuite } from "./helpers/aa_suite.ts";
import { startScript } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, defer, twoServers } = aaSuite("scaleout19_del_unbind_order", {
  dirPrefix: "dstm-g19d-",
  needsNft: true,
});

const H = "2001:db8:2::1";

describe.skipIf(skip !== null)("the UNBIND of `dstm lease del`, late in the network", () => {
  test("A's UNBIND of H's ended lease, arriving after B's BIND of H's new one, leaves it", async () => {
    const { lab, a, b, url, serverMetric, tepMetric, plan } = await twoServers({
      nsPrefix: "g19d-",
    });
    const granted = await plan([{ op: "discover", server: 1, from: 1, to: 2 }]);
    const x = granted.leases[H]!;
    await waitUntil(async () => (await serverMetric(a, "dstm_leases_active")) === 1, {
      timeoutMs: 10_000,
      what: "A holding H's lease (B's grant)",
    });

    // The network holds back everything A sends the TEP from now on.
    const hold = await holdServerToTep(lab, { dir, defer });
    const del = await runDstm(["lease", "del", x, "--control", a.control]);
    expect(del.code).toBe(0);
    const h = canonicalIPv6(H);
    const heldUnbind = () =>
      hold
        .held()
        .find((m) => m.type === "UNBIND" && m.host4 === x && canonicalIPv6(m.host6 ?? "") === h);
    await waitUntil(() => heldUnbind() !== undefined, {
      timeoutMs: 10_000,
      what: "A's UNBIND of X→H, held in the network",
    });
    // B has taken in the end (else H's DISCOVER finds its old lease there, and nothing is BIND-ed).
    await waitUntil(async () => (await serverMetric(b, "dstm_leases_active")) === 0, {
      timeoutMs: 10_000,
      what: "B seeing the lease ended",
    });
    const again = await startScript<{ ipv4: string }>(
      lab.srv,
      "r17_discover.ts",
      [AA.server6(1), H],
      60_000,
    ).result;
    expect(again.ipv4).toBe(x); // sticky: B gave H its address back, BIND-ed before the ACK
    expect(await tepMetric("dstm_tep_bindings", { origin: "server" })).toBe(1);

    // Now A's UNBIND reaches the TEP, after B's BIND.
    const unbind = heldUnbind()!;
    const word = await tepWordOnHeldUnbind(lab, hold, unbind, x, h!);
    // The TEP kept B's binding of the active lease: the UNBIND was older (its generation).
    expect(word).toContain(" unbind-superseded ");
    expect(unbind.generation).toBeGreaterThan(0);
    expect(await tepMetric("dstm_tep_bindings", { origin: "server" })).toBe(1);
    const sql = new SQL(url);
    defer(() => sql.close());
    const rows = (await sql`SELECT state FROM dstm_leases WHERE host6 = ${H}`) as {
      state: string;
    }[];
    expect(rows.map((r) => r.state)).toEqual(["active"]);

    // `dstm lease wipe` at A: the UNBIND of the lease B granted carries a generation too.
    await waitUntil(async () => (await serverMetric(a, "dstm_leases_active")) === 1, {
      timeoutMs: 10_000,
      what: "A holding B's grant",
    });
    const tepLines = lab.tep!.lines;
    const wipedFrom = tepLines.length;
    const wipe = await runDstm([
      "lease",
      "wipe",
      "--pool",
      "198.18.0.0/24",
      "--yes",
      "--control",
      a.control,
    ]);
    expect(wipe.code).toBe(0);
    const unbound = (l: string) => / unbind /.test(l) && l.includes(`ipv4=${x} `);
    await waitUntil(() => tepLines.slice(wipedFrom).some(unbound), {
      timeoutMs: 10_000,
      what: "the TEP applying the wipe's UNBIND",
    });
    expect(tepLines.slice(wipedFrom).find(unbound)).toMatch(/ generation=\d+/);
    await waitUntil(
      async () => (await tepMetric("dstm_tep_bindings", { origin: "server" })) === 0,
      {
        timeoutMs: 10_000,
        what: "the TEP without the binding",
      },
    );
  }, 120_000);
});
