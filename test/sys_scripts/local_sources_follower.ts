/**
 * Inside a fresh namespace: the inbound Worker's list of the host's IPv4 addresses
 * (lib/dataplane/local_sources_follower.ts) with a fallback period of an hour, so that only a
 * notification can bring a change in. Adds an address with `ip` and calls `refresh()` once
 * (no wait); removes it and calls it once more; then the same without notifications (the
 * periodic re-read only: with the hour not passed, the new address is not seen; with a
 * period of 20 ms it is, polled with a deadline). Prints the results as JSON.
 */
import { LocalSourcesFollower } from "../../lib/dataplane/local_sources_follower.ts";
import { eventually } from "../helpers/wait.ts";

const HOUR_MS = 3_600_000;
const u32 = (text: string) => text.split(".").reduce((a, b) => a * 256 + Number(b), 0);
const ip = (...args: string[]) => {
  const r = Bun.spawnSync(["ip", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
};

const follower = new LocalSourcesFollower({ fallbackMs: HOUR_MS });
const evented = follower.evented;
const before = follower.local.has(u32("203.0.113.77"));
ip("addr", "add", "203.0.113.77/32", "dev", "lo");
follower.refresh();
const afterAdd = follower.local.has(u32("203.0.113.77"));
ip("addr", "del", "203.0.113.77/32", "dev", "lo");
follower.refresh();
const afterDel = follower.local.has(u32("203.0.113.77"));
// Nothing changed since: no re-read (one after the subscription, one per change).
follower.refresh();
const rereads = follower.rereads;
follower.close();

const periodic = new LocalSourcesFollower({ fallbackMs: HOUR_MS, events: false });
ip("addr", "add", "203.0.113.78/32", "dev", "lo");
periodic.refresh();
const periodicBeforePeriod = periodic.local.has(u32("203.0.113.78"));
const fast = new LocalSourcesFollower({ fallbackMs: 20, events: false });
ip("addr", "add", "203.0.113.79/32", "dev", "lo");
const fastSeen = await eventually(
  () => {
    fast.refresh();
    return fast.local.has(u32("203.0.113.79"));
  },
  { timeoutMs: 5000, intervalMs: 10 },
);

console.log(
  JSON.stringify({
    evented,
    before,
    afterAdd,
    afterDel,
    rereads,
    periodicEvented: periodic.evented,
    periodicBeforePeriod,
    fastSeen,
  }),
);
