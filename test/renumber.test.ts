/**
 * Renumbering (issue 9 item 8), as root in namespaces: the client host gets a new IPv6 address
 * and loses the one its lease is for. The client notices (rtnetlink), starts over from the new
 * address, traffic through the TEP flows again, and the server no longer holds a lease for the
 * removed address.
 *
 *   host ns: 2001:db8:7::10 → ::20 ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1
 *                                                      ──veth── web ns: 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { leaseList } from "./helpers/daemon.ts";
import { createDtiLab, dtiSuite, labServerArgv, labTepArgv } from "./helpers/dti_lab.ts";
import { BUN, type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("renumber", "dstm-renum-");
const procs: DstmProcess[] = [];
let host: Netns;
let core: Netns;
let client: DstmProcess;
const serverSocket = join(dir, "server.sock");

beforeAll(async () => {
  if (skip) return;
  const lab = createDtiLab("dstmr-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]);
  ({ host, core } = lab);
  made.push(host, core, lab.web);
  const server = spawnDstm(labServerArgv({ leaseTime: 10, control: serverSocket }), {}, core.name);
  procs.push(server);
  await server.waitFor(/ start /, 20_000);
  const tep = spawnDstm(labTepArgv(undefined, ["--stats", join(dir, "tep.sock")]), {}, core.name);
  procs.push(tep);
  await tep.waitFor(/tep-start/, 20_000);
  await server.waitFor(/tep-connected/, 20_000);
  client = spawnDstm(
    [
      "client",
      "--server",
      "2001:db8:7::53",
      "--route",
      "192.0.2.0/24",
      "--control",
      join(dir, "client.sock"),
    ],
    {},
    host.name,
  );
  procs.push(client);
  await client.waitFor(/ bound /, 20_000);
}, 60_000);

afterAll(async () => {
  for (const p of procs.reverse()) p.proc.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  for (const ns of made) ns.delete();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

function ping(): boolean {
  return host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
}

const leases = () => leaseList(core, serverSocket);

/** Polls `check` every 250 ms until it holds or `ms` pass; whether it held. */
const eventuallyWithin = (check: () => boolean, ms: number) =>
  eventually(check, { timeoutMs: ms, intervalMs: 250 });

describe.skipIf(skip !== null)("renumbering", () => {
  test("the host's address changes under a 10 s lease: the client starts over from the new one", async () => {
    expect(await eventuallyWithin(ping, 10_000)).toBe(true);
    expect(leases().map((l) => l.hostIPv6)).toEqual(["2001:db8:7::10"]);
    host.addAddress("c0", "2001:db8:7::20/64");
    host.ip("addr", "del", "2001:db8:7::10/64", "dev", "c0");
    await client.waitFor(/address-gone host6=2001:db8:7::10 next=2001:db8:7::20/, 10_000);
    // A second "bound" line: the lease for the new address, DTI up again.
    expect(
      await eventuallyWithin(
        () => client.lines.filter((l) => / bound /.test(l)).length >= 2,
        20_000,
      ),
    ).toBe(true);
    expect(await eventuallyWithin(ping, 20_000)).toBe(true);
    // The server freed the old address's lease (the client's RELEASE from it, else expiry).
    expect(
      await eventuallyWithin(() => {
        const now = leases().map((l) => l.hostIPv6);
        return now.length === 1 && now[0] === "2001:db8:7::20";
      }, 20_000),
    ).toBe(true);
    // A renewal (at half the lease time) leaves from the new address and succeeds.
    const seen = client.lines.length;
    expect(
      await eventuallyWithin(
        () => client.lines.slice(seen).some((l) => / renewed /.test(l)),
        15_000,
      ),
    ).toBe(true);
    const status = JSON.parse(
      host.exec([
        BUN,
        join(ROOT, "mod.ts"),
        "client",
        "status",
        "--json",
        "--control",
        join(dir, "client.sock"),
      ]).stdout,
    ) as { host6: string; state: string; dti: unknown };
    expect(status.host6).toBe("2001:db8:7::20");
    // The default DTI: the userspace TUN, whose counters are the Workers'.
    expect(status.dti).toEqual({
      requested: "tun",
      mode: "tun",
      fallback: null,
      counters: "workers",
    });
    expect(status.state).toBe("bound");
  }, 90_000);
});
