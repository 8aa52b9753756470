/**
 * Red team (atk17) on `dstm tep --fragment inner` through real namespaces: a seg6 End.DX4
 * host (`--dti kernel`, which decapsulates before IPv6 reassembly, so only inner fragments
 * reach it), behind a TEP with `--fragment inner`, with TUN offloads (default) and without
 * (`--no-offload`, the one-by-one loop). The IPv4 side's host answers pings of 3,000 to
 * 65,000 bytes: its kernel cuts each reply at its 1,500-byte link into up to 44 fragments,
 * each of which the TEP cuts again (1,460 + 60 bytes), up to 88 outer packets per reply, all
 * of which must come whole and in place for the host's IPv4 to reassemble (held: every size
 * answered, in both loops).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { type DstmProcess, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("atk17 --fragment inner lab", "k17-frag-");
const procs: DstmProcess[] = [];
afterAll(() => tearDownLab({ procs, made, dir }));

for (const [name, extra] of [
  ["with TUN offloads (batched loop)", [] as string[]],
  ["--no-offload (one-by-one loop)", ["--no-offload"]],
] as const)
  test.skipIf(skip !== null)(
    `--fragment inner ${name}: replies of 3,000 to 65,000 bytes reach a seg6 DTI host`,
    async () => {
      const sub = name.startsWith("--no") ? "plain" : "offload";
      process.env.DSTM_RUNTIME_DIR = mkdirSync(join(dir, sub), { recursive: true }) ?? dir;
      const lab = createDtiLab("k17-", ["2001:db8:7::53/64", "2001:db8:7::1/64"]);
      made.push(lab.host, lab.core, lab.web);
      procs.push(
        ...(await startLabCore(lab.core, {
          leaseTime: 600,
          tepExtra: ["--fragment", "inner", ...extra],
        })),
      );
      const client = spawnDstm(
        labClientArgv("kernel", "k17s1", ["--control", join(dir, `client-${sub}.sock`)]),
        {},
        lab.host.name,
      );
      procs.push(client);
      await client.waitFor(/ bound /, 30_000);
      const ping = (size: number) =>
        lab.host.exec([
          "ping",
          "-c",
          "1",
          "-W",
          "2",
          "-M",
          "dont",
          "-s",
          String(size),
          "192.0.2.80",
        ]).code === 0;
      expect(await eventually(() => ping(56), { timeoutMs: 20_000, intervalMs: 200 })).toBe(true);
      for (const size of [3000, 8000, 30_000, 65_000])
        expect([
          size,
          await eventually(() => ping(size), { timeoutMs: 10_000, intervalMs: 100 }),
        ]).toEqual([size, true]);
    },
    120_000,
  );
