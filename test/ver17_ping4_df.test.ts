/**
 * `dstm ping4 -M do` behind a narrow IPv6 path (verification round 17), as root in the
 * namespaces of test/helpers/narrow_lab.ts (a 1400-byte link between two routers, Packet Too
 * Big intact): ping4 is the tunnel's entry point, so a DF request above the tunnel MTU (1400 −
 * 40 = 1360 bytes) must be refused, as iputils ping refuses one above its path MTU ("local
 * error: message too long, mtu=1360"), not sent in outer fragments (RFC 2473 §7.1). Before
 * the fix (lib/client/ping4.ts) the kernel fragmented the outer IPv6 packet: after losing the
 * first requests while the path MTU was learned, every 1428-byte DF request was "answered",
 * so ping4 could not find the tunnel MTU.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { dtiSuite, LAB_SERVER6, startLabCore, tearDownLab } from "./helpers/dti_lab.ts";
import { narrowLab } from "./helpers/narrow_lab.ts";
import { BUN, type DstmProcess, ROOT } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("ver17 ping4 DF", "dstm-v17p-");
const procs: DstmProcess[] = [];
afterAll(() => tearDownLab({ procs, made, dir }));

/** `dstm ping4 -c 1 -s SIZE -M MODE 192.0.2.80` with a lease of its own, from `host`: its output. */
function ping4(host: Netns, size: number, mode: "do" | "dont"): string {
  const r = host.exec(
    [
      BUN,
      join(ROOT, "mod.ts"),
      "ping4",
      ...["--server", LAB_SERVER6, "-c", "1", "-W", "1", "-s", String(size), "-M", mode],
      "192.0.2.80",
    ],
    { cwd: ROOT, timeoutMs: 30_000 },
  );
  return r.stdout + r.stderr;
}

describe.skipIf(skip !== null)("dstm ping4 behind a 1400-byte IPv6 link", () => {
  test("-M do: a 1428-byte request is refused with mtu=1360 once the path MTU is known; 1360 bytes pass; -M dont passes", async () => {
    process.env.DSTM_RUNTIME_DIR = dir;
    const { host, core } = narrowLab(made, 1400);
    procs.push(...(await startLabCore(core, { leaseTime: 600 })));
    let last = "";
    const refused = await eventually(
      () => {
        last = ping4(host, 1400, "do");
        return /local error: message too long, mtu=1360/.test(last);
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect({ refused, last }).toEqual({ refused: true, last: expect.any(String) });
    expect(last).not.toMatch(/bytes from 192\.0\.2\.80/);
    // What fits the tunnel goes (1332 + 28 = 1360 bytes) …
    expect(ping4(host, 1332, "do")).toMatch(/1340 bytes from 192\.0\.2\.80/);
    // … and without DF the outer packet is fragmented (RFC 2473 §7.2).
    expect(
      await eventually(() => /1408 bytes from 192\.0\.2\.80/.test(ping4(host, 1400, "dont")), {
        timeoutMs: 10_000,
        intervalMs: 100,
      }),
    ).toBe(true);
  }, 90_000);
});
