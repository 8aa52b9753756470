/**
 * `dstm ping4 IPV4` without --server on a host where a `dstm client` runs uses that client's
 * lease (found on its control socket in the runtime directory), as the README says, instead
 * of refusing with "--server V6 is required"; with no client, it still asks for --server
 * (exit 2) and says where it looked. The client here is a stand-in answering `/v1/status` on
 * a control socket; ping4 runs in a namespace of its own (dstmt-nc9b-), whose only link is
 * loopback (holding the client's address), so its echo requests go nowhere. A client whose
 * address is not this host's (a lab's other node, its socket side by side) is not taken.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveUnix } from "../lib/sys/http.ts";
import { addressNetns, announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { runDstm } from "./helpers/process.ts";

const skip = netnsSkipReason();
announceSkip("ping4_finds_client", skip);
const dir = mkdtempSync(join(tmpdir(), "dstm-ping4-find-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("no client and no --server: exit 2, --server required, naming where it looked", async () => {
  const empty = join(dir, "empty");
  const r = await runDstm(["ping4", "192.0.2.80"], { DSTM_RUNTIME_DIR: empty });
  expect([r.code, r.stdout]).toEqual([2, ""]);
  expect(r.stderr).toBe(
    `dstm: --server V6 is required when no dstm client runs on this host (none answers on a control socket in ${empty}): the DSTM server, for a lease of ping4's own; or --use-client IFNAME|PATH to name a client\n`,
  );
}, 60_000);

test.skipIf(skip !== null)(
  "a client running here, no --server: ping4 uses its lease",
  async () => {
    const run = join(dir, "run");
    const socket = join(run, "client-dti0.sock");
    const status = {
      state: "bound",
      ifname: "dti0",
      host6: "2001:db8:1::c",
      ipv4: "198.51.100.7",
      tep6: "2001:db8::1",
    };
    const client = await serveUnix(socket, () => Response.json(status));
    // The client sends from 2001:db8:1::c, an address of this "host" (the namespace).
    const ns = addressNetns("dstmt-nc9b-", ["2001:db8:1::c"]);
    try {
      const r = await runDstm(
        ["ping4", "192.0.2.80", "-c", "1", "-W", "1"],
        { DSTM_RUNTIME_DIR: run },
        ns.name,
      );
      expect(r.stderr).toStartWith(`using the lease of the dstm client on ${socket}\n`);
      expect(r.stdout).toStartWith(
        "PING 192.0.2.80 via DSTM (from 198.51.100.7, TEP 2001:db8::1): 56 data bytes\n",
      );
      expect(r.code).not.toBe(2);
    } finally {
      ns.delete();
      client.close();
    }
  },
  60_000,
);

test.skipIf(skip !== null)(
  "a client socket whose address is not this host's (another namespace): not taken",
  async () => {
    const run = join(dir, "run-other");
    const status = {
      state: "bound",
      host6: "2001:db8:1::d",
      ipv4: "198.51.100.9",
      tep6: "2001:db8::1",
    };
    const other = await serveUnix(join(run, "client-b.sock"), () => Response.json(status));
    const ns = addressNetns("dstmt-nc9b-", ["2001:db8:1::c"]);
    try {
      const r = await runDstm(
        ["ping4", "192.0.2.80", "-c", "1"],
        { DSTM_RUNTIME_DIR: run },
        ns.name,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toStartWith(
        "dstm: --server V6 is required when no dstm client runs on this host",
      );
    } finally {
      ns.delete();
      other.close();
    }
  },
  60_000,
);
