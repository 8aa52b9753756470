/**
 * Inside a fresh namespace: subscribes to IPv6 address changes (lib/sys/addr_watch.ts), adds
 * and removes an address on lo with `ip`, and prints, as JSON, the events seen for it.
 */
import { IPv6AddressWatch } from "../../lib/sys/addr_watch.ts";

const watch = IPv6AddressWatch.open();
const run = (...args: string[]) => {
  const r = Bun.spawnSync(["ip", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
};
run("-6", "addr", "add", "2001:db8:77::5/128", "dev", "lo", "nodad");
run("-6", "addr", "del", "2001:db8:77::5/128", "dev", "lo");
const events: { kind: string; address: string; ifindex: number }[] = [];
for (let i = 0; i < 50 && events.filter((e) => e.address === "2001:db8:77::5").length < 2; i++) {
  for (const e of watch.drain().events)
    events.push({ kind: e.kind, address: e.address, ifindex: e.ifindex });
  await Bun.sleep(20);
}
watch.close();
console.log(JSON.stringify({ events: events.filter((e) => e.address === "2001:db8:77::5") }));
