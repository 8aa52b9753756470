/**
 * `dstm tep --rx-ring` (lib/sys/packet_ring.ts, lib/sys/nft_ring.ts) against a kernel 4over6
 * host, as root in namespaces: host (kernel seg6 encap.red, h0 2001:db8:1::11) ── tep ── web
 * (192.0.2.80). TCP and UDP through the ring run in test/kernel_peers*.test.ts; here what
 * the ring must leave to the raw socket, and the nftables table's life:
 *
 * - outer IPv6 fragments and an outer Destination Options header do not match the ring's
 *   filter and reach the raw socket (after reassembly); plain next-header-4 packets come
 *   through the ring and, dropped at prerouting by the table's rule, never reach the raw socket
 *   as well: each datagram arrives once, the ring counts exactly the plain ones;
 * - SIGTERM removes the table; a table a killed TEP left is replaced at the next start (one
 *   chain, one rule), not doubled;
 * - without nft(8) the TEP says so (`rx-ring-unavailable`) and forwards through the raw socket;
 * - a table deleted under a running TEP is put back (`rx-ring-table-restored`);
 * - the TEP's address removed, the ring takes nothing (what still reaches its MAC is not
 *   forwarded) and the table goes; the address back, the ring takes packets again.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { type DstmProcess, ROOT, spawnDstm } from "./helpers/process.ts";
import { processScope } from "./helpers/process_scope.ts";
import { kernelHostTepWeb, pingThroughTep } from "./helpers/seg6_host.ts";
import { tepArgv, tepCounters } from "./helpers/tep_argv.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("python3") && Bun.which("nft") ? null : "needs python3 and nft");
announceSkip("tep_rx_ring", skip);

const scope = processScope("dstm-rxring-", "dstmr-");
const { dir, ns } = scope;
const FIXTURES = join(ROOT, "test", "fixtures", "rx_ring");
const TABLE = "dstm_ring_tep0";

/** host ── tep ── web (test/helpers/seg6_host.ts); the TEP also binds h0's own address. */
const topology = () => kernelHostTepWeb(ns);

/** The TEP with --rx-ring (environment `env` on top), control socket `name`.sock; resolves to its start line. */
async function startTep(
  tep: Netns,
  binding: string,
  name: string,
  env: Record<string, string> = {},
): Promise<{ proc: DstmProcess; socket: string; start: string }> {
  const socket = join(dir, `${name}.sock`);
  const proc = spawnDstm(
    [
      ...tepArgv({ staticBinding: { binding, stats: socket } }),
      ...["--binding", "198.51.100.11=2001:db8:1::11", "--rx-ring"],
    ],
    env,
    tep.name,
  );
  scope.track({ kill: (s) => proc.proc.kill(s), exited: proc.exited });
  return { proc, socket, start: await proc.waitFor(/tep-start/, 20_000) };
}

/** Runs craft.py on the host and receive.py on web; the tags and sizes web got. */
async function craftedThrough(host: Netns, web: Netns): Promise<[string, number][]> {
  const rx = web.spawn(["python3", join(FIXTURES, "receive.py")], { timeoutMs: 30_000 });
  scope.track(rx);
  const reader = rx.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("ready\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`receive.py: ${await new Response(rx.stderr).text()}`);
    text += decoder.decode(chunk.value, { stream: true });
  }
  const sent = host.exec(["python3", join(FIXTURES, "craft.py"), "2001:db8:1::1"]);
  expect(sent.stderr).toBe("");
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
    text += decoder.decode(chunk.value, { stream: true });
  await rx.exited;
  return JSON.parse(text.trim().split("\n").at(-1)!) as [string, number][];
}

/** The packets counted by the table's drop rule, or -1 when there is no such table. */
function ruleDrops(tep: Netns): number {
  const r = tep.exec(["nft", "-j", "list", "table", "ip6", TABLE]);
  if (r.code !== 0) return -1;
  const items = (JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] }).nftables;
  const rule = items.find((i) => "rule" in i)?.rule as
    | { expr: Record<string, { packets?: number }>[] }
    | undefined;
  return rule?.expr.find((e) => "counter" in e)?.counter?.packets ?? 0;
}

/** A field of /proc/net/snmp6 inside `where`. */
function snmp6(where: Netns, field: string): number {
  const line = where
    .exec(["cat", "/proc/net/snmp6"])
    .stdout.split("\n")
    .find((l) => l.startsWith(`${field} `));
  return Number(line?.split(/\s+/)[1] ?? 0);
}

describe.skipIf(skip !== null)("dstm tep --rx-ring", () => {
  test("fragments and extension headers reach the raw socket, plain packets the ring; each datagram arrives once; SIGTERM removes the table", async () => {
    const { host, tep, web, binding } = topology();
    const { proc, socket, start } = await startTep(tep, binding, "rx1");
    expect(start).toContain("rx-ring=on");
    await pingThroughTep(host);
    const before = tepCounters(tep, socket);
    const dropsBefore = ruleDrops(tep);
    const reassembled = snmp6(tep, "Ip6ReasmOKs");
    const got = await craftedThrough(host, web);
    expect(got.sort()).toEqual([
      ["dstopt", 40],
      ["end", 40],
      ["frag", 1900],
      ["plain", 40],
    ]);
    // The fragments were reassembled by the TEP's kernel: they went the raw socket's way.
    expect(snmp6(tep, "Ip6ReasmOKs")).toBeGreaterThan(reassembled);
    await waitUntil(
      () => tepCounters(tep, socket)["decap-forward"]! - before["decap-forward"]! >= 4,
      {
        what: "four datagrams forwarded",
      },
    );
    const after = tepCounters(tep, socket);
    // Exactly the two plain packets through the ring, and the rule dropped them before the
    // raw socket could have had them; all four forwarded once.
    expect({
      forwarded: after["decap-forward"]! - before["decap-forward"]!,
      ring: after["decap-ring"]! - before["decap-ring"]!,
      ruleDrops: ruleDrops(tep) - dropsBefore,
      lost: after["decap-ring-lost"],
    }).toEqual({ forwarded: 4, ring: 2, ruleDrops: 2, lost: 0 });
    proc.proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(ruleDrops(tep)).toBe(-1);
  }, 90_000);

  test("a table a killed TEP left is replaced at the next start, not doubled; the TEP forwards", async () => {
    const { host, tep, web, binding } = topology();
    // What a `kill -9` leaves: the table, here with a stale chain in it.
    const script = join(dir, "stale.nft");
    writeFileSync(
      script,
      `table ip6 ${TABLE} {\n  chain old {\n    type filter hook prerouting priority 0; policy accept;\n    counter\n  }\n}\n`,
    );
    const stale = tep.exec(["nft", "-f", script]);
    expect(stale.stderr).toBe("");
    const { start } = await startTep(tep, binding, "rx2");
    expect(start).toContain("rx-ring=on");
    const listed = tep.exec(["nft", "-j", "list", "table", "ip6", TABLE]);
    const items = (JSON.parse(listed.stdout) as { nftables: Record<string, unknown>[] }).nftables;
    expect(
      items.filter((i) => "chain" in i).map((i) => (i.chain as { name: string }).name),
    ).toEqual(["prerouting"]);
    expect(items.filter((i) => "rule" in i).length).toBe(1);
    await pingThroughTep(host);
    expect((await craftedThrough(host, web)).length).toBe(4);
  }, 90_000);

  test("the TEP's address removed: the ring takes nothing and the table goes (rx-ring-paused); back: rx-ring-resumed, through the ring again", async () => {
    const { host, tep, web, binding } = topology();
    const { proc, socket } = await startTep(tep, binding, "rx4");
    await pingThroughTep(host);
    const before = tepCounters(tep, socket);
    tep.ip("-6", "addr", "del", "2001:db8:1::1/64", "dev", "t0");
    await proc.waitFor(/ WARN rx-ring-paused /, 10_000);
    expect(ruleDrops(tep)).toBe(-1);
    // The host still knows the TEP's MAC (its neighbour entry): the packets reach t0.
    const rx = () =>
      tep.ipJson<{ stats64: { rx: { packets: number } } }[]>("-s", "link", "show", "t0")[0]!.stats64
        .rx.packets;
    const arrived = rx();
    expect(host.exec(["python3", join(FIXTURES, "craft.py"), "2001:db8:1::1"]).stderr).toBe("");
    await waitUntil(() => rx() - arrived >= 4, { what: "the four packets at t0" });
    tep.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "t0", "nodad");
    await proc.waitFor(/ rx-ring-resumed /, 10_000);
    expect(ruleDrops(tep)).toBeGreaterThanOrEqual(0);
    // After the address came back, a second batch: all four arrive, and the ring took only this
    // batch's two plain packets (had it taken the first batch's while paused, four).
    expect((await craftedThrough(host, web)).length).toBe(4);
    await waitUntil(() => tepCounters(tep, socket)["decap-ring"]! - before["decap-ring"]! >= 2, {
      what: "the second batch through the ring",
    });
    const after = tepCounters(tep, socket);
    expect({
      ring: after["decap-ring"]! - before["decap-ring"]!,
      forwarded: after["decap-forward"]! - before["decap-forward"]!,
    }).toEqual({ ring: 2, forwarded: 4 });
  }, 90_000);

  test("the table deleted under a running TEP (a ruleset flush) is put back (rx-ring-table-restored); then each datagram arrives once", async () => {
    const { host, tep, web, binding } = topology();
    const { proc, socket } = await startTep(tep, binding, "rx5");
    await pingThroughTep(host);
    expect(tep.exec(["nft", "delete", "table", "ip6", TABLE]).code).toBe(0);
    await proc.waitFor(/ WARN rx-ring-table-restored /, 15_000);
    expect(ruleDrops(tep)).toBeGreaterThanOrEqual(0);
    const before = tepCounters(tep, socket);
    expect((await craftedThrough(host, web)).length).toBe(4);
    await waitUntil(
      () => tepCounters(tep, socket)["decap-forward"]! - before["decap-forward"]! >= 4,
      { what: "four datagrams forwarded" },
    );
    // Forwarded once each: the plain two through the ring only.
    const after = tepCounters(tep, socket);
    expect({
      forwarded: after["decap-forward"]! - before["decap-forward"]!,
      ring: after["decap-ring"]! - before["decap-ring"]!,
    }).toEqual({ forwarded: 4, ring: 2 });
  }, 90_000);

  test("without nft the TEP says rx-ring-unavailable and forwards through the raw socket", async () => {
    const { host, tep, web, binding } = topology();
    // nft lives in /usr/sbin: a PATH without it.
    const { proc, start } = await startTep(tep, binding, "rx3", { PATH: "/usr/bin:/bin" });
    expect(start).toContain("rx-ring=off");
    expect(proc.lines.some((l) => / WARN rx-ring-unavailable .*nft/.test(l))).toBe(true);
    expect(ruleDrops(tep)).toBe(-1);
    await pingThroughTep(host);
    expect((await craftedThrough(host, web)).length).toBe(4);
  }, 90_000);
});
