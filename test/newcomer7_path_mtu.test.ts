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
import { join } from "node:path";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";

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

    // Back to the link's 1500: the Workers' estimate holds again.
    lab.host.ip("-6", "route", "del", "2001:db8:7::1/128", "dev", "c0");
    expect(status().pathMtu).toBe(1500);
  },
  120_000,
);
