/**
 * One namespace standing for one host that runs server, TEP and client side by side on its
 * loopback (test/packaging_sandbox.test.ts, test/tshark_dstm_live.test.ts), a temporary
 * directory, and the processes started there; all killed, deleted and removed after the suite.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../../lib/sys/netns.ts";

/** Registers the suite's `afterAll`; the namespace is made by `host()`, so a skipped suite makes none. */
export function oneHostScope(tmpPrefix: string): {
  dir: string;
  procs: Bun.Subprocess[];
  host(): Netns;
} {
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  const procs: Bun.Subprocess[] = [];
  let ns: Netns | undefined;
  afterAll(() => {
    for (const p of procs) p.kill("SIGKILL");
    ns?.delete();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    procs,
    /** The namespace (dstmt-…), made on the first call, with 2001:db8::1/128 on lo. */
    host(): Netns {
      if (ns === undefined) {
        ns = createNetns("dstmt-");
        // The TEP needs a unicast address (loopback is refused): a documentation one on lo.
        ns.exec(["ip", "-6", "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"]);
      }
      return ns;
    },
  };
}
