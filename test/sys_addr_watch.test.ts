/**
 * IPv6 address change notifications (lib/sys/addr_watch.ts) in a fresh namespace (root only):
 * an address added and removed with `ip` shows up as two events, in order.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cleanupNetns, createNetns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";

const skip = netnsSkipReason();
announceSkip("sys_addr_watch", skip);

afterAll(() => cleanupNetns());

describe.skipIf(skip !== null)("IPv6AddressWatch (namespace)", () => {
  test("reports an address added and then removed, with its interface", async () => {
    const ns = createNetns();
    const r = await runScript<{ events: { kind: string; address: string; ifindex: number }[] }>(
      ns,
      "addr_watch.ts",
    );
    expect(r.events.map((e) => e.kind)).toEqual(["added", "removed"]);
    expect(r.events.every((e) => e.ifindex === 1)).toBe(true); // lo
  });
});
