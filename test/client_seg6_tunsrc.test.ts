/**
 * A seg6 tunnel source set on the host (`ip sr tunsrc set ADDR`, ip-sr(8)) is the outer
 * source of every seg6-encapsulated packet (RFC 8986 §5): with another address than the
 * leased host address the TEP drops everything as spoofed. `--dti seg6` and `--kernel-encap`
 * used to come up `bound` all the same (found by a newcomer); now the DTI is not brought up
 * (`dti-failed` naming the tunnel source and the fix, retried), and once the administrator
 * unsets it the client binds and traffic flows. As root in namespaces (`dstmts-`), with a real
 * server and TEP and the kernel's own seg6.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Netns } from "../lib/sys/netns.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("client_seg6_tunsrc", "dstmts-");
let host: Netns;
let core6: DstmProcess[] = [];
let client: DstmProcess | undefined;

beforeAll(async () => {
  if (skip) return;
  let core: Netns;
  let web: Netns;
  ({ host, core, web } = createDtiLab("dstmts-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]));
  made.push(host, core, web);
  core6 = await startLabCore(core, { leaseTime: 60, tep6: "2001:db8:7::1" });
}, 90_000);

afterAll(() => tearDownLab({ procs: [client, ...core6], made, dir }), 30_000);

describe.each([
  ["--dti seg6", ["seg6", []]],
  ["--kernel-encap", ["tun", ["--kernel-encap"]]],
] as const)("%s with another seg6 tunnel source", (_name, [dti, extra]) => {
  test.skipIf(skip !== null)(
    "is not brought up (dti-failed, naming it), then binds once it is unset",
    async () => {
      host.exec(["ip", "sr", "tunsrc", "set", "2001:db8:7::77"]);
      try {
        client = spawnDstm(labClientArgv(dti, "dtits0", [...extra]), {}, host.name);
        const line = await client.waitFor(/dti-failed/, 20_000);
        expect(line).toContain("seg6 tunnel source (ip sr tunsrc) is 2001:db8:7::77");
        expect(line).toContain("ip sr tunsrc set ::");
        expect(client.lines.some((l) => / bound /.test(l))).toBe(false);
      } finally {
        host.exec(["ip", "sr", "tunsrc", "set", "::"]);
      }
      const bound = await client.waitFor(/ bound /, 30_000);
      // The bound line says which DTI carries the traffic (a newcomer could not tell).
      expect(bound).toContain(dti === "seg6" ? 'dti="seg6' : "--kernel-encap");
      const ping = () => host.exec(["ping", "-c", "1", "-W", "1", "192.0.2.80"]).code === 0;
      expect(await eventually(ping, { timeoutMs: 10_000, intervalMs: 250 })).toBe(true);
      client.proc.kill("SIGTERM");
      await client.exited;
      client = undefined;
    },
    90_000,
  );
});
