/**
 * lib/sys/netns.ts: unique names, veth pairs that never touch the machine's namespace, and
 * cleanup of every namespace a process made, on exit and on SIGTERM / SIGINT (root only).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { cleanupNetns, createdNetns, createNetns, vethPair } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, SCRIPTS } from "./helpers/netns.ts";
import { BUN } from "./helpers/process.ts";

const skip = netnsSkipReason();
announceSkip("sys_netns", skip);
afterAll(() => cleanupNetns());

function namespaces(): string[] {
  const out = Bun.spawnSync(["ip", "-j", "netns", "list"]).stdout.toString().trim();
  return (JSON.parse(out || "[]") as { name: string }[]).map((n) => n.name);
}
function hostLinks(): string[] {
  const out = Bun.spawnSync(["ip", "-j", "link", "show"]).stdout.toString();
  return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname).sort();
}

describe.skipIf(skip !== null)("network namespaces for tests", () => {
  test("unique dstmt- names; a veth pair lives only inside the two namespaces", () => {
    const before = hostLinks();
    const a = createNetns();
    const b = createNetns();
    try {
      expect(a.name).toMatch(/^dstmt-[0-9a-f]{8}$/);
      expect(a.name).not.toBe(b.name);
      vethPair(a, "a0", b, "b0", { mtu: 1400 });
      a.addAddress("a0", "2001:db8:1::1/64");
      b.addAddress("b0", "2001:db8:1::2/64");
      expect(hostLinks()).toEqual(before);
      const link = a.ipJson<{ ifname: string; mtu: number; flags: string[] }[]>(
        "link",
        "show",
        "a0",
      )[0]!;
      expect(link).toMatchObject({ ifname: "a0", mtu: 1400 });
      expect(link.flags).toContain("UP");
      const r = a.exec(["ip", "-j", "-6", "addr", "show", "dev", "a0"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("2001:db8:1::1");
      expect(createdNetns()).toEqual([a.name, b.name]);
    } finally {
      a.delete();
      b.delete();
    }
    expect(createdNetns()).toEqual([]);
    expect(namespaces()).not.toContain(a.name);
    expect(hostLinks()).toEqual(before);
  });

  for (const how of ["exit", "SIGTERM", "SIGINT"] as const) {
    test(`namespaces left by a process are deleted on ${how}`, async () => {
      const proc = Bun.spawn(
        [BUN, join(SCRIPTS, "netns_leak.ts"), how === "exit" ? "exit" : "wait"],
        {
          stdout: "pipe",
          stderr: "pipe",
          timeout: 20_000,
          killSignal: "SIGKILL",
        },
      );
      const reader = proc.stdout.getReader();
      const { value } = await reader.read();
      const { names } = JSON.parse(new TextDecoder().decode(value).trim()) as { names: string[] };
      try {
        expect(names).toHaveLength(2);
        if (how !== "exit") {
          expect(namespaces()).toEqual(expect.arrayContaining(names));
          proc.kill(how);
        }
        await proc.exited;
        const left = namespaces();
        for (const name of names) expect(left).not.toContain(name);
      } finally {
        proc.kill("SIGKILL");
        for (const name of names) Bun.spawnSync(["ip", "netns", "del", name], { stderr: "ignore" });
      }
    });
  }
});
