/**
 * Scale-out, gen18 fault 1: an UNBIND late on its FIRST transmission crosses a newer BIND of
 * the same binding sent by another server (test/redteam_scaleout17_race.test.ts closed only
 * the retransmissions).
 *
 * Server A reclaims host H's expired lease on address X and UNBINDs X→H; the network holds
 * that datagram back (and everything else A sends the TEP). Meanwhile H asks server B, which
 * grants it X again (sticky) and BINDs X→H before ACKing H. Only then does A's UNBIND, its
 * first and only transmission, reach the TEP. It names X→H, which the TEP holds (B's fresh
 * binding): without an order between the two the TEP removes the live binding of an
 * acknowledged lease until a SYNC brings a snapshot. With GENERATION (docs/protocol.md,
 * "Generations") A's UNBIND carries the version of its expiry in the shared lease table, B's
 * BIND the version of the new grant, a later write: the TEP counts the UNBIND
 * `unbind-superseded` and keeps the binding.
 *
 * The delay (test/helpers/aa_hold.ts): in the TEP's namespace nftables rewrites A's datagrams
 * to the TEP's control port to another port, where test/sys_scripts/g18_hold.ts keeps them;
 * later the script sends A's UNBIND, bytes unchanged, from A's address, and nftables gives it
 * A's source port back. B is paused (SIGSTOP) around the expiry so that A's sweep is the one
 * that reclaims the lease, and H's DISCOVER waits at B. Namespaces g18u-*.
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { holdServerToTep, tepWordOnHeldUnbind } from "./helpers/aa_hold.ts";
import { AA } from "./helpers/aa_lab.ts";
import { aaSuite } from "./helpers/aa_suite.ts";
import { startScript } from "./helpers/netns.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, defer, twoServers } = aaSuite("scaleout18_unbind_order", {
  dirPrefix: "dstm-g18u-",
  needsNft: true,
});

const H = "2001:db8:2::1";

describe.skipIf(skip !== null)("an UNBIND late on its first transmission", () => {
  test("A's UNBIND of H's expired lease, arriving after B's BIND of H's new one, leaves it", async () => {
    const { lab, b, url, serverMetric, tepMetric, plan } = await twoServers({
      nsPrefix: "g18u-",
      serverArgs: ["--lease-time", "4", "--max-lease-time", "4"],
    });
    const granted = await plan([{ op: "discover", server: 0, from: 1, to: 2 }]);
    const x = granted.leases[H]!;
    await waitUntil(async () => (await serverMetric(b, "dstm_leases_active")) === 1, {
      timeoutMs: 10_000,
      what: "B holding H's lease",
    });

    // The network holds back everything A sends the TEP from now on.
    const hold = await holdServerToTep(lab, { dir, defer });

    // B paused: A's sweep reclaims the lease; H's DISCOVER waits at B.
    b.proc.proc.kill("SIGSTOP");
    let resumed = false;
    defer(() => {
      if (!resumed) b.proc.proc.kill("SIGCONT");
    });
    const asking = startScript<{ ipv4: string }>(
      lab.srv,
      "r17_discover.ts",
      [AA.server6(1), H],
      60_000,
    );
    await asking.waitFor(/^sent$/, 20_000);
    const sql = new SQL(url);
    defer(() => sql.close());
    await waitUntil(
      async () =>
        ((await sql`SELECT state FROM dstm_leases WHERE host6 = ${H}`) as { state: string }[])[0]
          ?.state === "expired",
      { timeoutMs: 15_000, intervalMs: 10, what: "A reclaiming H's lease" },
    );
    const h = canonicalIPv6(H);
    const heldUnbind = () =>
      hold
        .held()
        .find((m) => m.type === "UNBIND" && m.host4 === x && canonicalIPv6(m.host6 ?? "") === h);
    await waitUntil(() => heldUnbind() !== undefined, {
      timeoutMs: 10_000,
      what: "A's UNBIND of X→H, held in the network",
    });
    b.proc.proc.kill("SIGCONT");
    resumed = true;
    const again = await asking.result;
    expect(again.ipv4).toBe(x); // sticky: B gave H its address back, BIND-ed before the ACK
    expect(await tepMetric("dstm_tep_bindings", { origin: "server" })).toBe(1);

    // Now A's first (and only delivered) UNBIND reaches the TEP, after B's BIND.
    const unbind = heldUnbind()!;
    const word = await tepWordOnHeldUnbind(lab, hold, unbind, x, h!);
    // The TEP kept B's binding of the active lease: the UNBIND was older (its generation).
    expect(word).toContain(" unbind-superseded ");
    expect(unbind.generation).toBeGreaterThan(0);
    expect(await tepMetric("dstm_tep_bindings", { origin: "server" })).toBe(1);
    const rows = (await sql`SELECT state FROM dstm_leases WHERE host6 = ${H}`) as {
      state: string;
    }[];
    expect(rows.map((r) => r.state)).toEqual(["active"]);
  }, 120_000);
});
