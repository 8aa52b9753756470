/**
 * Red team of the TEP digest read from the request's HOST_IPV6 bytes, end to end: a real
 * `dstm server` (SQLite store, PSID-shared pool, --no-source-check so that one sender can
 * claim many addresses) and a real `dstm tep` (TEP key) in namespaces of this run, and a
 * sender on the link whose DISCOVERs and RELEASEs are crafted — an unknown extension option
 * whose value looks like a HOST_IPV6 option before the options, another HOST_IPV6 after the
 * message's length — for hosts of every zero-group shape (RFC 5952 §4.2). The TEP's SYNCs
 * (docs/protocol.md: count and digest) must agree with the server's: no SNAPSHOT after the
 * leases and releases, the TEP holding exactly the server's active leases. A server digest
 * out of step would cost a SNAPSHOT at every SYNC (2 s). Root, with TUN.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LeaseJson } from "../lib/control/lease_view.ts";
import { formatIPv6, parseIPv4, parseIPv6 } from "../lib/net/addr.ts";
import { getUnix } from "../lib/sys/http.ts";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { generateKeyFileText } from "../lib/wire/auth.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, OptionCode } from "../lib/wire/dstm_types.ts";
import {
  channelTepArgs,
  dstmArgv,
  forgeUdp,
  hex,
  metricsAt,
  CHANNEL_NET as NET,
  tepConnected,
} from "./helpers/channel_attack.ts";
import { type Daemon, metric, spawnDaemon, until } from "./helpers/daemon.ts";
import { hubLink } from "./helpers/hub.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("atk21_digest_lab", skip);

const dir = mkdtempSync(join(tmpdir(), "atk21-digest-lab-"));
const procs: Bun.Subprocess<"ignore", "pipe", "pipe">[] = [];
const spaces: Netns[] = [];
afterAll(async () => {
  for (const p of procs) {
    p.kill("SIGKILL");
    await p.exited;
  }
  for (const n of spaces) n.delete();
  rmSync(dir, { recursive: true, force: true });
});

function daemon(where: Netns, argv: readonly string[]): Daemon {
  const d = spawnDaemon(where, argv, { timeoutMs: 120_000 });
  procs.push(d.proc);
  return d;
}

/** Hosts in 2001:db8:2::/48 of every pattern of zero groups in its last five groups. */
function hosts(): string[] {
  const out: string[] = [];
  for (let mask = 0; mask < 32; mask++) {
    const b = new Uint8Array(16);
    b.set([0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02]);
    for (let g = 3; g < 8; g++) {
      if (!(mask & (1 << (g - 3)))) continue;
      const v = [1, 0x10, 0xabc, 0xffff, 0x100][g % 5]!;
      b[2 * g] = v >> 8;
      b[2 * g + 1] = v & 255;
    }
    out.push(formatIPv6(b));
  }
  return out;
}

/** `message` with a decoy extension option before its options and a decoy HOST_IPV6 after it. */
function crafted(message: Uint8Array, decoy: string): string {
  const d = parseIPv6(decoy)!;
  const fake = [0xfe, 18, OptionCode.HOST_IPV6, 16, ...d];
  const length = message.length + fake.length;
  const out = new Uint8Array([
    ...message.subarray(0, 12),
    ...fake,
    ...message.subarray(12),
    OptionCode.HOST_IPV6,
    16,
    ...d,
  ]);
  out[8] = length >> 8;
  out[9] = length & 255;
  return hex(out);
}

/** Sum of the server's dstm_tep_messages_total whose kind starts with "snapshot". */
function snapshots(text: string): number {
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith('dstm_tep_messages_total{kind="snapshot'))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

describe.skipIf(skip !== null)("atk21: server and TEP digests under crafted requests", () => {
  test("no SNAPSHOT after crafted leases and releases; the TEP holds the server's leases", async () => {
    const ns = {} as Record<"sw" | "srv" | "tep" | "a", Netns>;
    for (const role of ["sw", "srv", "tep", "a"] as const) {
      ns[role] = createNetns("dstmatk21-");
      spaces.push(ns[role]);
    }
    hubLink(ns.sw, [
      ["srv", ns.srv, "eth0", NET.server6],
      ["tep", ns.tep, "eth6", NET.tep6],
      ["a", ns.a, "eth0", NET.a6],
    ]);
    ns.tep.addAddress("lo", `${NET.tep4}/32`);
    writeFileSync(join(dir, "tep.key"), generateKeyFileText(1), { mode: 0o600 });
    const control = join(dir, "server.sock");
    const server = daemon(
      ns.srv,
      dstmArgv([
        ...["server", "--pool", NET.pool, "--share", "4", "--tep", `${NET.tep6},${NET.tep4}`],
        ...["--listen", `[${NET.server6}]:4607`, "--db", join(dir, "leases.db")],
        ...["--control", control, "--tep-key", join(dir, "tep.key"), "--no-source-check"],
      ]),
    );
    await server.waitFor(/ start listen=/);
    const tep = daemon(
      ns.tep,
      dstmArgv(
        channelTepArgs({ key: join(dir, "tep.key"), extra: ["--stats", join(dir, "tep.sock")] }),
      ),
    );
    await tep.waitFor(/ tep-start /);
    expect(await tepConnected(control, NET.tep6)).toBe(true);
    const before = snapshots(await metricsAt(control));

    const all = hosts();
    const send = (datagrams: string[]) =>
      forgeUdp(ns.a, {
        ...{ from: NET.a6, fromPort: 0, to: NET.server6, toPort: 4607 },
        datagrams,
        listenMs: 1500,
      });
    const discovers = all.map((h, i) =>
      crafted(encodeMessage({ type: MessageType.DISCOVER, xid: i, host6: h }), all[31 - i]!),
    );
    expect((await send(discovers)).received).toBe(all.length);
    const leases = async () =>
      ((await (await getUnix(control, "/v1/leases")).json()) as { leases: LeaseJson[] }).leases;
    const leased = await leases();
    expect(leased.length).toBe(all.length);
    // Half of them release (crafted the same way).
    const releases = leased
      .filter((_, i) => i % 2 === 0)
      .map((l, i) =>
        crafted(
          encodeMessage({
            type: MessageType.RELEASE,
            xid: 100 + i,
            host6: l.hostIPv6,
            host4: parseIPv4(l.hostIPv4)!,
          }),
          all[i]!,
        ),
      );
    expect((await send(releases)).received).toBe(releases.length);
    const remaining = all.length - releases.length;
    expect((await leases()).length).toBe(remaining);

    // Three SYNCs from the TEP after the last change: each judged in step.
    const syncs = async () =>
      metric(await metricsAt(control), "dstm_tep_messages_total", { kind: "sync" });
    const from = await syncs();
    expect(await until(async () => (await syncs()) >= from + 3, 20_000)).toBe(true);
    expect(snapshots(await metricsAt(control))).toBe(before);
    const tepBindings = metric(await metricsAt(join(dir, "tep.sock")), "dstm_tep_bindings", {
      origin: "server",
    });
    expect(tepBindings).toBe(remaining);
  }, 90_000);
});
