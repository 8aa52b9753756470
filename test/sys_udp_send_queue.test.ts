/**
 * The answers of one turn leave together (lib/sys/udp_send_queue.ts): through both kinds of
 * endpoint a server listens on (the IPV6_PKTINFO one on `[::]` and a socket bound to one
 * address), every queued datagram arrives, in order, a refused one is reported without
 * holding up the rest, and, counted by strace (what we did not write), N queued answers take
 * a few sendmmsg(2) calls instead of N sendmsg(2)/sendto(2).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN } from "./helpers/process.ts";

const FIXTURE = join(import.meta.dir, "fixtures", "udp", "queue_burst.ts");
const dir = mkdtempSync(join(tmpdir(), "dstm-sendq-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Burst {
  received: number[];
  refused: number;
}

function burst(args: string[], strace?: string): Burst {
  const cmd = strace
    ? [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=sendto,sendmsg,sendmmsg",
        "-o",
        strace,
        BUN,
        FIXTURE,
        ...args,
      ]
    : [BUN, FIXTURE, ...args];
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  expect(r.exitCode).toBe(0);
  const line = r.stdout.toString().trim().split("\n").at(-1) ?? "";
  return JSON.parse(line) as Burst;
}

const inOrder = (n: number) => Array.from({ length: n }, (_, i) => i);

for (const kind of ["pktinfo", "bound"] as const) {
  describe(`queue on the ${kind} endpoint`, () => {
    test("every queued datagram arrives, in order, none refused", () => {
      const r = burst([kind, "150"]);
      expect(r.received).toEqual(inOrder(150));
      expect(r.refused).toBe(0);
    });

    test("a datagram to no address is refused alone; the rest arrive", () => {
      const r = burst([kind, "100", "bad"]);
      expect(r.refused).toBe(1);
      expect(r.received).toEqual(inOrder(100));
    });

    test.skipIf(!Bun.which("strace"))("150 answers take a few sendmmsg, not 150 sends", () => {
      const trace = join(dir, `${kind}.strace`);
      const r = burst([kind, "150"], trace);
      expect(r.received).toEqual(inOrder(150));
      const calls = readFileSync(trace, "utf8")
        .split("\n")
        .map((line) => /\b(sendto|sendmsg|sendmmsg)\(/.exec(line)?.[1])
        .filter((name) => name !== undefined);
      const mmsg = calls.filter((name) => name === "sendmmsg").length;
      expect(mmsg).toBeGreaterThan(0);
      // 64 messages per call at most (UDP6_SEND_VECTOR; Bun's sendMany takes what it can).
      expect(calls.length).toBeLessThan(10);
    });
  });
}
