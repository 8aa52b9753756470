/**
 * The path MTU `dstm client status` shows for a shared lease is the one in force. Reproduced:
 * a shared lease (the server's --share 4) on the TUN DTI with --mtu 1500 over a 1500-byte
 * link: the Workers seed their estimate from the kernel at the lease (1500) and showed it
 * ("path MTU 1500") for ever, though the kernel's path MTU towards the TEP had dropped to
 * 1460 since (here by a route with `mtu 1460`, as a Packet Too Big the Workers' raw socket
 * never saw leaves it: one about a packet the kernel encapsulated with --kernel-encap, or
 * sent for another socket). The kernel fragments and refuses by its value, so the status now
 * shows the lower of the two (lib/client/node_status.ts pathMtuInForce).
 *
 * As root, in the namespaces of test/helpers/dti_lab.ts; real server, TEP and client.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { clientStatusJson } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("status path MTU", "dstm-n7p-");
const procs: DstmProcess[] = [];
afterAll(() => tearDownLab({ procs, made, dir }));

test.skipIf(skip !== null)(
  "a shared lease's status follows the kernel's path MTU towards the TEP (was the seed, 1500)",
  async () => {
    // The lab's TEP uses the default control socket: keep it out of the machine's /run.
    process.env.DSTM_RUNTIME_DIR = dir;
    const lab = createDtiLab("dstmt-n7p-", ["2001:db8:7::53/64", "2001:db8:7::1/64"]);
    made.push(lab.host, lab.core, lab.web);
    procs.push(...(await startLabCore(lab.core, { leaseTime: 600, extra: ["--share", "4"] })));
    const control = join(dir, "client.sock");
    const client = spawnDstm(
      labClientArgv("tun", "n7p0", ["--control", control, "--mtu", "1500"]),
      {},
      lab.host.name,
    );
    procs.push(client);
    await client.waitFor(/ bound /, 30_000);
    const status = () => {
      const r = lab.host.exec(
        [process.execPath, "mod.ts", "client", "status", "--json"].concat(["--control", control]),
        {
          cwd: ROOT,
        },
      );
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout) as { ports: string; mtu: number; pathMtu: number | null };
    };
    const before = status();
    expect(before.ports).not.toBe("all"); // a shared lease
    expect([before.mtu, before.pathMtu]).toEqual([1500, 1500]);

    lab.host.ip("-6", "route", "add", "2001:db8:7::1/128", "dev", "c0", "mtu", "1460");
    expect(lab.host.ip("-6", "route", "get", "2001:db8:7::1")).toMatch(/mtu 1460/);
    expect(status().pathMtu).toBe(1460);
    // The text the user reads.
    const text = lab.host.exec(
      [process.execPath, "mod.ts", "client", "status", "--control", control],
      {
        cwd: ROOT,
      },
    );
    expect(text.stdout).toMatch(/^dti +n7p0 \(mtu 1500, path MTU 1460, tun\)$/m);

    // Back to the link's 1500: the Workers followed the kernel's route (within a second,
    // lib/dataplane/client_attach.ts KernelPathMtuFollower) and follow it back up.
    lab.host.ip("-6", "route", "del", "2001:db8:7::1/128", "dev", "c0");
    expect(
      await eventually(() => status().pathMtu === 1500, { timeoutMs: 10_000, intervalMs: 200 }),
    ).toBe(true);
  },
  120_000,
);

test.skipIf(skip !== null)(
  "--kernel-encap: the Workers follow the kernel's path MTU towards the TEP (a route's mtu, no packet lost to learn it): DF packets get 'fragmentation needed' from the client, and the estimate goes when the route does",
  async () => {
    // Its own runtime directory: the first test's TEP may still hold the default socket.
    process.env.DSTM_RUNTIME_DIR = mkdtempSync(join(dir, "ke-"));
    const lab = createDtiLab("dstmt-n7k-", ["2001:db8:7::53/64", "2001:db8:7::1/64"]);
    made.push(lab.host, lab.core, lab.web);
    procs.push(...(await startLabCore(lab.core, { leaseTime: 600 })));
    const control = join(dir, "client-ke.sock");
    const client = spawnDstm(
      labClientArgv("tun", "n7k0", ["--kernel-encap", "--control", control]),
      {},
      lab.host.name,
    );
    procs.push(client);
    await client.waitFor(/ bound /, 30_000);
    const status = () =>
      clientStatusJson<{
        mtu: number;
        workersPathMtu: number | null;
        counters: Record<string, number>;
      }>(lab.host, control);
    /** One DF ping of `total` bytes (IPv4 header, ICMP header and payload) to the web host. */
    const ping = (total: number) => {
      const r = lab.host.exec([
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        String(total - 28),
        "192.0.2.80",
      ]);
      return { ok: r.code === 0, text: r.stdout + r.stderr };
    };
    const first = status();
    expect([first.mtu, first.workersPathMtu]).toEqual([1460, null]);
    expect(ping(1400).ok).toBe(true); // fits the link: through the tunnel and back

    // The kernel's path MTU towards the TEP drops to 1400 (a route's mtu; a Packet Too Big
    // about a packet the kernel encapsulated, or one another socket sent, leaves the same):
    // the Workers take it without a packet having to fail first.
    lab.host.ip("-6", "route", "add", "2001:db8:7::1/128", "dev", "c0", "mtu", "1400");
    expect(
      await eventually(() => status().workersPathMtu === 1400, {
        timeoutMs: 10_000,
        intervalMs: 100,
      }),
    ).toBe(true);
    const before = status().counters;
    const tooBig = ping(1400); // inner path MTU 1360
    expect(tooBig.ok).toBe(false);
    expect(tooBig.text).toMatch(/mtu ?= ?1360/);
    const after = status().counters;
    const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
    // Refused before the tunnel, never handed to the kernel's encapsulation (which would drop
    // it and send itself a Packet Too Big): by the client's check, or — once the DTI route
    // keeper has put mtu 1360 on the DTI's routes (lib/client/dti_routes.ts, checked every
    // second) — by the kernel at the sender (EMSGSIZE), before it reaches the Workers.
    expect({
      handedOver: delta("client-kernel-encap"),
      ptb: delta("tunnel-error-too-big"),
    }).toEqual({ handedOver: 0, ptb: 0 });
    expect(delta("client-encap-drop-too-big")).toBeLessThanOrEqual(1);
    expect(ping(1360).ok).toBe(true); // what fits still goes

    // The route goes: so does the estimate taken from it (RFC 8201 §4's ageing is for
    // Packet Too Big; this one was the kernel's).
    lab.host.ip("-6", "route", "del", "2001:db8:7::1/128", "dev", "c0");
    expect(
      await eventually(() => status().workersPathMtu === null, {
        timeoutMs: 10_000,
        intervalMs: 100,
      }),
    ).toBe(true);
  },
  120_000,
);
