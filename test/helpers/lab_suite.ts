/**
 * The life of one lab (the paper's test network, lib/lab) for a test file: the skip reason
 * (root with TUN, and vsftpd), a unique name and a temporary runtime directory, `Lab.up` before
 * the tests and `Lab.down` plus the directory's removal after them, also on failure. Shared by
 * test/lab_e2e.test.ts and test/lab_tep_no_offload.test.ts, which both run the demo
 * ({@link demoStepTests}).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEMO_STEPS } from "../../lib/lab/demo.ts";
import { Lab } from "../../lib/lab/lab.ts";
import type { LabOptions } from "../../lib/lab/services.ts";
import { announceSkip, netnsSkipReason } from "./netns.ts";

/** Why the lab tests cannot run here, or null. */
export function labSkipReason(): string | null {
  return (
    netnsSkipReason({ tun: true }) ??
    (existsSync("/usr/sbin/vsftpd") ? null : "needs vsftpd (scripts/test-deps.sh installs it)")
  );
}

/**
 * Registers the lab's `beforeAll` (60 s) and `afterAll` (60 s) for suite `suite` (announcing a
 * skip); `up` receives the lab once it is up. Namespaces are named after `namePrefix` and five
 * random characters, the runtime directory after `dirPrefix`.
 */
export function labSuite(o: {
  suite: string;
  namePrefix: string;
  dirPrefix: string;
  options?: LabOptions;
  up: (lab: Lab) => void;
}): { skip: string | null; name: string; base: string } {
  const skip = labSkipReason();
  announceSkip(o.suite, skip);
  const name = `${o.namePrefix}${Math.random().toString(36).slice(2, 7)}`;
  const base = mkdtempSync(join(tmpdir(), o.dirPrefix));
  beforeAll(async () => {
    if (skip) return;
    o.up(await Lab.up(name, base, () => {}, o.options));
  }, 60_000);
  afterAll(async () => {
    if (!skip) await Lab.down(name, base);
    rmSync(base, { recursive: true, force: true });
  }, 60_000);
  return { skip, name, base };
}

/** One test (60 s) per step of the paper's demo (lib/lab/demo.ts) on the lab `lab()` returns; call it inside the suite's describe. */
export function demoStepTests(lab: () => Lab): void {
  for (const step of DEMO_STEPS) {
    test(step.title, async () => {
      const result = await step.run(lab());
      if (!result.ok) console.log(result.output);
      expect(result.ok).toBe(true);
    }, 60_000);
  }
}
