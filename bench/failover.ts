/**
 * Failover under load (issue 12, item 4), as numbers: two `dstm server` processes on one
 * throwaway PostgreSQL, `--hosts` simulated hosts leasing and renewing through both with
 * failover (as `dstm client --server A --server B`), one real `dstm client` behind one
 * `dstm tep`, server A killed with SIGKILL mid-load (test/helpers/aa_failover.ts; as root:
 * namespaces). Prints the time to recover, the exchanges lost and the checks the test
 * (test/active_active_failover.test.ts) asserts. Not a test.
 *
 *   node_modules/.bin/bun bench/failover.ts [--hosts 300] [--renewals 12] [--interval 1000]
 *       [--kill-after 900] [--json]
 *
 * @module
 */

import { runFailover } from "../test/helpers/aa_failover.ts";
import { parseBenchArgs } from "./bench_args.ts";

const { values } = parseBenchArgs(import.meta.path, {
  options: {
    hosts: { type: "string", default: "300" },
    renewals: { type: "string", default: "12" },
    interval: { type: "string", default: "1000" },
    "kill-after": { type: "string", default: "900" },
    json: { type: "boolean", default: false },
  },
});
const o = await runFailover({
  hosts: Number(values.hosts),
  renewals: Number(values.renewals),
  intervalMs: Number(values.interval),
  maxMs: 120_000,
  killAfter: Number(values["kill-after"]),
});
if (values.json) console.log(JSON.stringify({ ...o, acked: Object.keys(o.acked).length }));
else
  console.log(
    [
      `${values.hosts} hosts, ${o.answered} exchanges answered, A killed (SIGKILL) after ${values["kill-after"]}`,
      `recovered: every failed-over exchange answered by B within ${o.recoverMs} ms of the kill (${o.failovers} failed over); longest time without any answer ${o.longestGapMs} ms`,
      `lost (no server answered) ${o.lost}, refused ${o.refused}; after the kill: p50 ${o.latencyAfterKill.p50} ms, p99 ${o.latencyAfterKill.p99} ms, max ${o.latencyAfterKill.max} ms`,
      `database: ${Object.keys(o.acked).length - o.missing.length}/${Object.keys(o.acked).length} acknowledged leases present, held twice: ${JSON.stringify(o.duplicates)}`,
      `ping through the TEP: ${o.pingBefore}/3 before, ${o.pingAfter}/3 after`,
    ].join("\n"),
  );
