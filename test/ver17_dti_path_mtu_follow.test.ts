/**
 * lib/client/dti_routes.ts `pathMtu`: the DTI's routes follow the kernel's path MTU towards
 * the TEP down and back up (verification round 17's fix for the kernel DTIs behind a narrow
 * path; end to end in test/ver17_narrow_kernel_dti.test.ts). As root, the keeper run by
 * test/sys_scripts/ver17_path_mtu_follow.ts in a namespace of its own.
 */
import { afterAll, expect, test } from "bun:test";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("ver17_dti_path_mtu_follow", skip);
const made: Netns[] = [];
afterAll(() => {
  for (const ns of made) ns.delete();
});

test.skipIf(skip !== null)(
  "routes carry path MTU − 40 while it is below the DTI's, lose it when it is back; kept through down/up",
  async () => {
    const ns = createNetns("v17k-");
    made.push(ns);
    const r = await runScript<{
      steps: { path: number; mtu: number; route: string }[];
      restored: number;
      afterRestore: string;
    }>(ns, "ver17_path_mtu_follow.ts");
    const seen = r.steps.map((s) => [s.path, s.mtu, /mtu (\d+)/.exec(s.route)?.[1] ?? "none"]);
    expect(seen).toEqual([
      [1500, 1460, "none"],
      [1400, 1360, "1360"],
      [-101, 1360, "1360"],
      [1280, 1240, "1240"],
      [1500, 1460, "none"],
      [1400, 1360, "1360"],
    ]);
    expect(r.restored).toBe(1);
    expect(r.afterRestore).toMatch(/mtu 1360/);
  },
  30_000,
);
