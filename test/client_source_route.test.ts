/**
 * A client without --host6 takes the kernel's source address towards the server (dhcp4o6:
 * towards the TEP, ff02::1:2 having no route). With no route there it stops with a message
 * that names what it looked the address up for and what to do; before, a dhcp4o6 client said
 * `no route to [2001:db8:1::1]:547 (ENETUNREACH)`: the TEP's address with the DHCP port.
 */
import { expect, test } from "bun:test";
import type { DtiHooks } from "../lib/client/dti.ts";
import { DstmNode } from "../lib/client/node.ts";
import { Logger } from "../lib/control/log.ts";
import { UdpBindError } from "../lib/sys/udp.ts";

const dti: DtiHooks = {
  up: () => Promise.resolve(1460),
  down: () => Promise.resolve(),
  inUse: () => undefined,
};
const noRoute = (address: string, port: number) =>
  Promise.reject(
    new UdpBindError(
      `no route to [${address}]:${port} (ENETUNREACH); check the address and the IPv6 routes`,
      "ENETUNREACH",
    ),
  );

async function startError(extra: { sourceTowards?: string; tep6?: string }): Promise<Error> {
  try {
    const node = await DstmNode.start({
      server: extra.sourceTowards ? "ff02::1:2%eth0" : "2001:db8:2::53",
      port: extra.sourceTowards ? 547 : 4607,
      leaseClient: () => Promise.reject(new Error("no lease client in this test")),
      dti,
      sourceFor: noRoute,
      log: new Logger({ sink: () => {} }),
      ...extra,
    });
    await node.stop();
  } catch (error) {
    return error as Error;
  }
  throw new Error("DstmNode.start did not fail");
}

test("dhcp4o6 client with no route to its TEP: the message names the TEP and --tep, not port 547", async () => {
  const error = await startError({ sourceTowards: "2001:db8:1::1", tep6: "2001:db8:1::1" });
  expect(error).toBeInstanceOf(UdpBindError);
  expect(error.message).toContain("the TEP 2001:db8:1::1 given by --tep");
  expect(error.message).toContain("--host6");
  expect(error.message).not.toContain(":547");
});

test("native client with no route to its server: the message names the server and --server", async () => {
  const error = await startError({});
  expect(error.message).toContain("the server 2001:db8:2::53 given by --server");
  expect(error.message).toContain("--host6");
});
