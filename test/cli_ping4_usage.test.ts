/**
 * `dstm ping4 IPV4` with neither --server nor --use-client says what each would do, so that a
 * newcomer whose `dstm client` runs on the host finds --use-client (exit 2, nothing sent).
 */
import { expect, test } from "bun:test";
import { runDstm } from "./helpers/process.ts";

test("ping4 without --server or --use-client: exit 2, one line naming both ways", async () => {
  const r = await runDstm(["ping4", "192.0.2.80"]);
  expect([r.code, r.stdout]).toEqual([2, ""]);
  expect(r.stderr).toBe(
    "dstm: --server V6 is required (the DSTM server, for a lease of ping4's own), or --use-client [IFNAME] to ping from the lease of the dstm client running on this host\n",
  );
}, 60_000);
