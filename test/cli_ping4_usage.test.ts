/**
 * `dstm ping4 IPV4` with neither --server nor --use-client, and no dstm client running (an
 * empty runtime directory), says what each would do (exit 2, nothing sent); with a client
 * running it uses its lease (test/ping4_finds_client.test.ts).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDstm } from "./helpers/process.ts";

test("ping4 without --server or --use-client: exit 2, one line naming both ways", async () => {
  const empty = mkdtempSync(join(tmpdir(), "dstm-ping4-usage-"));
  const r = await runDstm(["ping4", "192.0.2.80"], { DSTM_RUNTIME_DIR: empty });
  rmSync(empty, { recursive: true, force: true });
  expect([r.code, r.stdout]).toEqual([2, ""]);
  expect(r.stderr).toBe(
    `dstm: --server V6 is required when no dstm client runs on this host (none answers on a control socket in ${empty}): the DSTM server, for a lease of ping4's own; or --use-client IFNAME|PATH to name a client\n`,
  );
}, 60_000);
