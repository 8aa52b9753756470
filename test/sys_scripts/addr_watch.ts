/**
 * Inside a fresh namespace: subscribes to IPv6 address changes (lib/sys/addr_watch.ts), adds
 * and removes an address on lo with `ip`, and prints, as JSON, the events seen for it.
 */
import { IPv6AddressWatch } from "../../lib/sys/addr_watch.ts";
import { eventually } from "../helpers/wait.ts";

const watch = IPv6AddressWatch.open();
const run = (...args: string[]) => {
  const r = Bun.spawnSync(["ip", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
};
run("-6", "addr", "add", "2001:db8:77::5/128", "dev", "lo", "nodad");
run("-6", "addr", "del", "2001:db8:77::5/128", "dev", "lo");
const events: { kind: string; address: string; ifindex: number }[] = [];
// Both events (add, then delete), or 1 s: the test checks what came.
await eventually(
  () => {
    for (const e of watch.drain().events)
      events.push({ kind: e.kind, address: e.address, ifindex: e.ifindex });
    return events.filter((e) => e.address === "2001:db8:77::5").length >= 2;
  },
  { timeoutMs: 1000, intervalMs: 20 },
);
watch.close();
console.log(JSON.stringify({ events: events.filter((e) => e.address === "2001:db8:77::5") }));
