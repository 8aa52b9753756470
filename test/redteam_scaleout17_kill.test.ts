/**
 * Red team, issue 12 §3–§4: server A, which granted and BIND-ed 10 leases at the TEP, is
 * killed (SIGKILL). Five of its hosts renew through server B before their leases end; the
 * other five do not. Asserted: the renewed hosts keep their bindings at the TEP; the other
 * five are reclaimed by B (the only server left) exactly once each and B UNBINDs exactly them
 * at the TEP, which then holds what the database holds active.
 *
 * Two real `dstm server` processes on one throwaway PostgreSQL, one real `dstm tep --server A
 * --server B`, in namespaces (prefix `r17`).
 *
 * It failed before commit 52209a0 (lib/sys/udp.ts). The cause (the second test below shows it
 * on loopback, no namespace): a Bun UDP socket reports an ICMP error of an earlier send (port
 * unreachable: server A is dead) on the *next* send, which threw ECONNREFUSED and sent
 * nothing; `UdpEndpoint.send` returned false and the datagram was lost. The TEP sends SYNC to
 * A, then to B, every period: each SYNC to B was lost, so B said `tep-disconnected` 6 s after
 * A died, BINDed none of its new grants (deferred) and UNBINDed none of its expiries; the TEP
 * said both servers unreachable and kept the 10 bindings of leases expired in the database.
 * The send is now tried once more after such an error (it was an earlier datagram's).
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { canonicalIPv6 } from "../lib/net/addr.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { AA } from "./helpers/aa_lab.ts";
import { aaSuite } from "./helpers/aa_suite.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, defer, twoServers } = aaSuite("redteam_scaleout17_kill", {
  dirPrefix: "dstm-r17kill-",
});

const host = (n: number) => `2001:db8:2::${n.toString(16)}`;

describe.skipIf(skip !== null)("the server that granted is killed", () => {
  test("renewals through the other keep their bindings; the rest are UNBIND-ed by it, once", async () => {
    const {
      lab,
      a,
      b,
      url,
      serverMetric,
      tepMetric: tep,
      plan,
    } = await twoServers({
      nsPrefix: "r17k-",
      serverArgs: ["--lease-time", "20", "--max-lease-time", "20"],
    });
    const granted = await plan([{ op: "discover", server: 0, from: 1, to: 11 }]);
    expect(Object.keys(granted.leases).length).toBe(10);
    expect(await tep("dstm_tep_bindings", { origin: "server" })).toBe(10);
    // B has taken in A's 10 leases before A dies.
    await waitUntil(async () => (await serverMetric(b, "dstm_leases_active")) === 10, {
      timeoutMs: 10_000,
      what: "B holding A's 10 leases",
    });

    await lab.stop(a.proc, "SIGKILL");
    // The TEP has sent SYNC to the dead A for 3 periods (it says A unreachable): the window in
    // which each SYNC to B, sent right after, was lost. B still hears the TEP.
    await waitUntil(
      async () => (await tep("dstm_tep_server_disconnects_total", { server: AA.server6(0) })) === 1,
      { timeoutMs: 20_000, intervalMs: 200, what: "the TEP saying A unreachable" },
    );
    expect(await serverMetric(b, "dstm_tep_connected", { tep: AA.tep6 })).toBe(1);
    const renewed = await plan([
      { op: "renew", server: 1, from: 1, to: 6, leases: granted.leases },
    ]);
    for (const [h, ipv4] of Object.entries(renewed.leases)) expect(ipv4).toBe(granted.leases[h]!);

    // Hosts 6–10 expire: B reclaims them (A is gone) and UNBINDs them.
    await waitUntil(async () => (await serverMetric(b, "dstm_leases_expired_total")) === 5, {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: "B reclaiming the 5 leases not renewed",
    });
    await waitUntil(async () => (await tep("dstm_tep_bindings", { origin: "server" })) === 5, {
      timeoutMs: 10_000,
      what: "5 bindings left at the TEP",
    });
    // The TEP counts an UNBIND at once and writes its line at the next turn of its event loop,
    // through a pipe to this process: the lines are waited for, not read at once.
    const unbinds = () => lab.tep!.lines.filter((l) => / unbind /.test(l));
    await waitUntil(() => unbinds().length >= 5, { what: "the TEP's 5 unbind lines" });
    const unbound = unbinds().map((l) => canonicalIPv6(/host6=(\S+)/.exec(l)?.[1] ?? "") ?? "");
    expect(unbound.sort()).toEqual([6, 7, 8, 9, 10].map((n) => canonicalIPv6(host(n))!).sort());
    expect(
      await tep("dstm_tep_control_by_server_total", { server: AA.server6(1), kind: "unbind" }),
    ).toBe(5);
    // The database agrees: the 5 renewed hosts active, with their addresses.
    const sql = new SQL(url);
    defer(() => sql.close());
    const rows = (await sql`SELECT host6 FROM dstm_leases WHERE state = 'active'`) as {
      host6: string;
    }[];
    expect(rows.map((r) => canonicalIPv6(r.host6)).sort()).toEqual(
      [1, 2, 3, 4, 5].map((n) => canonicalIPv6(host(n))!).sort(),
    );
    // The renewed hosts' leases outlive their first end: still bound after B's sweeps ran.
    expect(await tep("dstm_tep_bindings", { origin: "server" })).toBe(5);
  }, 120_000);
});

describe("a UDP endpoint after an ICMP error from one peer", () => {
  test("still delivers its next datagram to another peer", async () => {
    const got: number[] = [];
    const live = await bindUdp("::1", 0, (data) => got.push(data[0]!));
    const gone = await bindUdp("::1", 0, () => {});
    const deadPort = gone.port;
    gone.close();
    const sender = await bindUdp("::1", 0, () => {});
    try {
      const sent: boolean[] = [];
      for (let i = 0; i < 5; i++) {
        // As the TEP's SYNC round does: to the dead peer, then at once to the live one (on
        // loopback the port unreachable is back before the first send returns).
        sender.send(new Uint8Array([100 + i]), "::1", deadPort);
        sent.push(sender.send(new Uint8Array([i]), "::1", live.port));
        // Rounds apart, as SYNC periods are: the next once this round's error was told.
        await waitUntil(() => sender.asyncErrors >= i + 1, {
          timeoutMs: 2000,
          intervalMs: 5,
          what: `the ICMP error of round ${i}`,
        });
      }
      await waitUntil(() => got.length === 5, {
        timeoutMs: 2000,
        what: "5 datagrams at the live peer",
      });
      expect(sent).toEqual([true, true, true, true, true]);
    } finally {
      sender.close();
      live.close();
    }
  });
});
