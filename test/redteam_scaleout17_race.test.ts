/**
 * Red team, issue 12 §3 ("every TEP gets BIND / UNBIND from the server that allocated"): an
 * UNBIND from one server and a BIND from another for the same binding cross on the way to the
 * TEP.
 *
 * Server A reclaims host H's expired lease on address X and UNBINDs it; the UNBIND is lost
 * once (UDP) and A sends it again 250 ms later. Meanwhile H asks server B, which re-grants it
 * X (sticky) and BINDs X→H at the TEP before ACKing H. A's retransmitted UNBIND then arrives:
 * it names X→H, which the TEP holds (B's fresh binding), so the TEP removes it. H holds an
 * acknowledged, active lease and the TEP drops its packets until a later SYNC brings a
 * snapshot. The TEP cannot tell an UNBIND of the old lease from one of the new: BIND and
 * UNBIND carry no generation (e.g. the lease's grant time) to compare.
 *
 * On main the TEP logs `bind` (A), `bind` (B's re-grant), then `unbind` (A's retransmission):
 * the live binding is gone. Fixed on the server (lib/server/tep_sync.ts `remove`): an UNBIND
 * is not sent again once the binding is back in the server's view (A took in B's re-grant by
 * NOTIFY within the 250 ms), counted `unbind_superseded`; the same holds for one server that
 * re-grants the address to the same host while its UNBIND is being retransmitted. An UNBIND
 * delayed on its first transmission is ordered by the TEP since gen18: BIND and UNBIND carry
 * the lease's version in the shared table (GENERATION, docs/protocol.md "Generations";
 * test/scaleout18_unbind_order.test.ts).
 *
 * The loss is an nftables rule in the TEP's namespace dropping A's datagrams to the TEP's
 * control port from A's expiry until B has answered H; B is paused (SIGSTOP) around the
 * expiry so that A's sweep is the one that reclaims it, and H's DISCOVER waits at B.
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { AA } from "./helpers/aa_lab.ts";
import { aaSuite } from "./helpers/aa_suite.ts";
import { startScript } from "./helpers/netns.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, defer, twoServers } = aaSuite("redteam_scaleout17_race", {
  dirPrefix: "dstm-r17race-",
  needsNft: true,
});

const H = "2001:db8:2::1";

describe.skipIf(skip !== null)("an UNBIND from one server crosses a BIND from another", () => {
  test("A's late UNBIND of H's old lease leaves B's new binding of H alone", async () => {
    const { lab, a, b, url, serverMetric, tepMetric, plan } = await twoServers({
      nsPrefix: "r17r-",
      serverArgs: ["--lease-time", "4", "--max-lease-time", "4"],
    });
    const granted = await plan([{ op: "discover", server: 0, from: 1, to: 2 }]);
    const x = granted.leases[H]!;
    await waitUntil(async () => (await serverMetric(b, "dstm_leases_active")) === 1, {
      timeoutMs: 10_000,
      what: "B holding H's lease",
    });

    // B paused: A's sweep reclaims the lease; H's DISCOVER waits at B.
    b.proc.proc.kill("SIGSTOP");
    let resumed = false;
    defer(() => {
      if (!resumed) b.proc.proc.kill("SIGCONT");
    });
    // A's UNBIND is lost (and its retransmissions, until B has answered H).
    const nft = (...args: string[]) => lab.tepNs.exec(["nft", ...args]);
    nft("add", "table", "ip6", "r17");
    nft("add", "chain", "ip6", "r17", "in", "{ type filter hook input priority 0; }");
    nft(
      "add",
      "rule",
      "ip6",
      "r17",
      "in",
      "ip6",
      "saddr",
      AA.server6(0),
      "udp",
      "dport",
      "4608",
      "drop",
    );
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
    b.proc.proc.kill("SIGCONT");
    resumed = true;
    const again = await asking.result;
    expect(again.ipv4).toBe(x); // sticky: B gave H its address back, BIND-ed before the ACK
    nft("delete", "table", "ip6", "r17");

    // A's UNBIND exchange ends (250 ms apart, 3 tries): answered (a retransmission that got
    // through), unanswered, or not sent again since the binding is back in A's view.
    const ended = async () => {
      let n = 0;
      for (const kind of ["unbind", "unbind_timeout", "unbind_superseded"])
        n += await serverMetric(a, "dstm_tep_messages_total", { kind });
      return n;
    };
    await waitUntil(async () => (await ended()) >= 1, {
      timeoutMs: 3000,
      what: "A's UNBIND exchange over",
    });
    const rows = (await sql`SELECT state, ipv4 FROM dstm_leases WHERE host6 = ${H}`) as {
      state: string;
    }[];
    expect(rows.map((r) => r.state)).toEqual(["active"]);
    // At the TEP, the last word on X→H is a bind: B's, for the active lease.
    const h = canonicalIPv6(H);
    const last = lab
      .tep!.lines.filter(
        (l) =>
          / (bind|unbind) /.test(l) &&
          l.includes(`ipv4=${x} `) &&
          canonicalIPv6(/host6=(\S+)/.exec(l)?.[1] ?? "") === h,
      )
      .map((l) => (/ unbind /.test(l) ? "unbind" : "bind"));
    expect(last.at(-1)).toBe("bind");
    expect(await tepMetric("dstm_tep_bindings", { origin: "server" })).toBe(1);
  }, 120_000);
});
