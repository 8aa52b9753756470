/**
 * Simulated DSTM hosts against several servers sharing one lease database, run inside the
 * servers' namespace (test/helpers/aa_lab.ts). Prints progress lines, then one JSON line.
 *
 *   bun test/sys_scripts/aa_hosts.ts plan SERVERS PLAN_JSON
 *     SERVERS: comma-separated IPv6 addresses (port 4607). PLAN_JSON: steps run in order,
 *     each {"op": "discover" | "release" | "renew", "server": INDEX, "from": N, "to": N} for hosts
 *     N..to-1 (host n = 2001:db8:2::n), all at once (a RELEASE the server refuses, not having
 *     heard of the lease yet, is sent again, 100 ms apart, 50 times at most; a renewal is a
 *     REQUEST for the address of an earlier step, or of the step's "leases": {host6: ipv4}).
 *     JSON: {"leases": {host6: ipv4}}.
 *
 *   bun test/sys_scripts/aa_hosts.ts load SERVERS HOSTS RENEWALS INTERVAL_MS MAX_MS
 *     HOSTS hosts, host n starting with server n mod count, each: DISCOVER, then RENEWALS
 *     times: wait INTERVAL_MS, REQUEST (a renewal). An exchange the server leaves unanswered
 *     (3 tries, 250 ms doubling) goes to the next server, as `dstm client --server A
 *     --server B` does (lib/client/failover.ts), and the host stays there. Stops after
 *     MAX_MS at the latest. Prints `progress answered=N` every 100 answers. JSON: the last
 *     acknowledged lease of each host, every answer as [end ms (wall clock), latency ms,
 *     server index, failed over 0/1, host n], and the exchanges no server answered (`lost`) or
 *     that were refused (`refused`).
 */
import {
  type ClientLease,
  DstmClient,
  DstmRefusedError,
  DstmTimeoutError,
  DstmTransport,
} from "../../lib/client/protocol.ts";
import { formatIPv4, parseIPv4 } from "../../lib/net/addr.ts";
import { waitUntil } from "../helpers/wait.ts";

const [mode, serverList = "", ...rest] = process.argv.slice(2);
const servers = serverList.split(",");
const host = (n: number) => `2001:db8:2::${n.toString(16)}`;
const transports = await Promise.all(
  servers.map((server) =>
    DstmTransport.open({ server, port: 4607, retry: { initialMs: 250, tries: 3 } }),
  ),
);

/** The exchange through server `index`, then the next ones while they stay silent. */
async function withFailover<T>(
  start: number,
  call: (client: DstmTransport) => Promise<T>,
): Promise<{ value: T; server: number; failedOver: boolean }> {
  let last: unknown;
  for (let tried = 0; tried < transports.length; tried++) {
    const index = (start + tried) % transports.length;
    try {
      return { value: await call(transports[index]!), server: index, failedOver: tried > 0 };
    } catch (error) {
      if (!(error instanceof DstmTimeoutError)) throw error;
      last = error;
    }
  }
  throw last;
}

if (mode === "plan") {
  const steps = JSON.parse(rest[0] ?? "[]") as {
    op: "discover" | "release" | "renew";
    server: number;
    from: number;
    to: number;
    /** `renew`: each host's address (host6 → dotted IPv4), from an earlier run. */
    leases?: Record<string, string>;
  }[];
  const leases: Record<string, string> = {};
  const held = new Map<string, number>();
  for (const step of steps) {
    const t = transports[step.server]!;
    await Promise.all(
      Array.from({ length: step.to - step.from }, async (_, i) => {
        const h = host(step.from + i);
        const client = new DstmClient(t, h);
        if (step.op === "discover") {
          const lease = await client.discover();
          held.set(h, lease.ipv4);
          leases[h] = formatIPv4(lease.ipv4);
        } else if (step.op === "renew") {
          const ipv4 = step.leases?.[h] ?? formatIPv4(held.get(h)!);
          const lease = await client.request(parseIPv4(ipv4)!);
          held.set(h, lease.ipv4);
          leases[h] = formatIPv4(lease.ipv4);
        } else {
          // Through the other server: it may not have heard of the lease yet (NOTIFY), so
          // a refusal is asked again until a deadline; any other error ends the run.
          await waitUntil(
            async () => {
              try {
                await client.release(held.get(h)!);
                return true;
              } catch (error) {
                if (error instanceof DstmRefusedError) return false;
                throw error;
              }
            },
            { timeoutMs: 5000, intervalMs: 100, what: `the release of ${h} at the other server` },
          );
          delete leases[h];
        }
      }),
    );
    console.log(`step ${step.op} server=${step.server} hosts=${step.to - step.from}`);
  }
  console.log(JSON.stringify({ leases }));
} else {
  const [hostsText = "300", renewalsText = "20", intervalText = "300", maxText = "60000"] = rest;
  const HOSTS = Number(hostsText);
  const deadline = Date.now() + Number(maxText);
  const answers: [number, number, number, number, number][] = [];
  const leases: Record<string, { ipv4: string; psid: number }> = {};
  let lost = 0;
  let refused = 0;
  const record = (n: number, start: number, r: { server: number; failedOver: boolean }) => {
    answers.push([Date.now(), Date.now() - start, r.server, r.failedOver ? 1 : 0, n]);
    if (answers.length % 100 === 0) console.log(`progress answered=${answers.length}`);
  };
  const run = async (n: number) => {
    const h = host(n);
    let current = n % transports.length;
    let lease: ClientLease | undefined;
    for (let round = 0; round <= Number(renewalsText) && Date.now() < deadline; round++) {
      // The renewal interval is the load's shape (a host renews every so often), not a wait
      // for state.
      if (round > 0) await Bun.sleep(Number(intervalText));
      const start = Date.now();
      try {
        const held = lease;
        const r = await withFailover(current, (t) =>
          held ? new DstmClient(t, h).request(held.ipv4) : new DstmClient(t, h).discover(),
        );
        current = r.server;
        lease = r.value;
        leases[h] = { ipv4: formatIPv4(lease.ipv4), psid: lease.portSet?.psid ?? 0 };
        record(n, start, r);
      } catch (error) {
        if (error instanceof DstmTimeoutError) lost++;
        else refused++;
      }
    }
  };
  await Promise.all(Array.from({ length: HOSTS }, (_, i) => run(i + 1)));
  console.log(JSON.stringify({ leases, answers, lost, refused }));
}
for (const t of transports) t.close();
