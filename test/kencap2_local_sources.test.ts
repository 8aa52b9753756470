/**
 * The host's IPv4 addresses that the DSTM client's inbound Worker refuses as inner sources
 * (`client-decap-drop-local-source`, lib/tunnel/local_sources.ts) follow the kernel's address
 * notifications (lib/dataplane/local_sources_follower.ts), as root in namespaces:
 *
 * - the follower alone, in a fresh namespace, with a fallback period of an hour: an address
 *   added is in the list at the first `refresh()` after `ip addr add` returned, a removed one
 *   is gone at the next; without notifications the hour would have to pass (a 20 ms period
 *   shows the fallback still works);
 * - a real `dstm client --kernel-encap` (the DTI accepts local sources, so only the Worker
 *   stands between a hostile TEP and the host's applications), a real server and TEP: an
 *   address is added to the host, and at once ONE datagram from the TEP's side with that
 *   inner source is sent, then the genuine ones. It is dropped and counted, never delivered.
 *   Before, the list was re-read once a second and such a datagram, sent tens of ms after the
 *   address was added, reached the application (four rounds: the old code passes them all
 *   only if its re-read falls between the add and the datagram each time).
 *
 *   host ns: 2001:db8:7::10 ──veth── core ns: server 2001:db8:7::53, TEP 2001:db8:7::1
 *                                                 ──veth── web ns: 192.0.2.80
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { clientCounters } from "./helpers/daemon.ts";
import {
  createDtiLab,
  dtiSuite,
  labClientArgv,
  startLabCore,
  tearDownLab,
} from "./helpers/dti_lab.ts";
import { runScript } from "./helpers/netns.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const { skip, dir, made } = dtiSuite("kencap2_local_sources", "dstmk2l-");
let host: Netns;
let core: Netns;
let web: Netns;
const procs: DstmProcess[] = [];
const listeners: Bun.Subprocess[] = [];
const DTI = "dtik2l0";
const PORT = 9999;
const clientSocket = join(dir, "client.sock");

/** The hostile TEP's crafter (test/fixtures/redteam/hostile_tep_udp.py): src → dst:port, payload. */
const CRAFT = join(ROOT, "test", "fixtures", "redteam", "hostile_tep_udp.py");

/** A UDP listener on 0.0.0.0:PORT in the host that appends "source payload" lines to `file`. */
function listen(file: string): void {
  const code = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", ${PORT}))
with open(${JSON.stringify(file)}, "a") as f:
    while True:
        data, src = s.recvfrom(65535)
        f.write(src[0] + " " + data.decode(errors="replace") + "\\n")
        f.flush()
`;
  listeners.push(host.spawn(["python3", "-c", code], { timeoutMs: 300_000 }));
}

const lines = (file: string): string[] => {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean);
  } catch {
    return [];
  }
};

function craft(src: string, dst: string, payload: string): void {
  const r = core.exec(["python3", CRAFT, src, dst, String(PORT), payload]);
  if (r.code !== 0) throw new Error(`craft: ${r.stderr}`);
}

function sendFromWeb(dst: string, payload: string): void {
  const code = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.80", 0))
s.sendto(${JSON.stringify(payload)}.encode(), (${JSON.stringify(dst)}, ${PORT}))
`;
  const r = web.exec(["python3", "-c", code]);
  if (r.code !== 0) throw new Error(`send: ${r.stderr}`);
}

beforeAll(async () => {
  if (skip) return;
  ({ host, core, web } = createDtiLab("dstmk2l-", ["2001:db8:7::1/64", "2001:db8:7::53/64"]));
  made.push(host, core, web);
  procs.push(...(await startLabCore(core, { leaseTime: 60 })));
}, 60_000);

afterAll(() => tearDownLab({ procs, others: listeners, made, dir }), 30_000);

describe.skipIf(skip !== null)(
  "the host's local addresses follow the kernel's notifications",
  () => {
    test("the follower sees an address at the first refresh after it was added (fallback period: an hour)", async () => {
      const ns = createNetns("dstmk2l-");
      made.push(ns);
      const r = await runScript<Record<string, boolean | number>>(ns, "local_sources_follower.ts");
      expect(r.evented).toBe(true);
      expect(r.before).toBe(false);
      expect(r.afterAdd).toBe(true);
      expect(r.afterDel).toBe(false);
      expect(r.rereads).toBe(3); // the first, the add, the removal: nothing when nothing changed
      // Without notifications: only the period brings a change in.
      expect(r.periodicEvented).toBe(false);
      expect(r.periodicBeforePeriod).toBe(false);
      expect(r.fastSeen).toBe(true);
    }, 30_000);

    test("--kernel-encap: a datagram from the TEP's side whose inner source was just added to the host is dropped and counted", async () => {
      const client = spawnDstm(
        labClientArgv("tun", DTI, ["--kernel-encap", "--control", clientSocket]),
        {},
        host.name,
      );
      procs.push(client);
      const bound = await client.waitFor(/ bound /, 20_000);
      const leased = /ipv4=(\S+)/.exec(bound)![1]!;
      const log = join(dir, "host.log");
      listen(log);
      // The genuine path works (the listener is up, the tunnel carries the TEP's datagrams).
      let n = 0;
      await waitUntil(
        () => {
          sendFromWeb(leased, `warm-${n++}`);
          return lines(log).some((l) => l.includes("warm-"));
        },
        { timeoutMs: 30_000, intervalMs: 200, what: "a genuine datagram" },
      );
      const counted = () =>
        clientCounters(host, clientSocket)["client-decap-drop-local-source"] ?? 0;
      const before = counted();
      for (let round = 1; round <= 4; round++) {
        const added = `203.0.113.${100 + round}`;
        host.ip("addr", "add", `${added}/32`, "dev", "lo");
        craft(added, leased, `new-${round}`); // once, right after the address was added
        // Then genuine ones until one arrived: the crafted datagram, sent before on the same
        // path, has been dropped or delivered by then.
        let k = 0;
        await waitUntil(
          () => {
            sendFromWeb(leased, `own-${round}-${k++}`);
            return lines(log).some((l) => l.includes(`own-${round}-`));
          },
          { timeoutMs: 20_000, intervalMs: 200, what: `a genuine datagram after round ${round}` },
        );
      }
      expect(lines(log).filter((l) => l.includes("new-"))).toEqual([]);
      expect(counted() - before).toBe(4);
    }, 120_000);
  },
);
