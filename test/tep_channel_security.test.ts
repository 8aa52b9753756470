/**
 * The server ⇄ TEP channel under attack, in-process on ::1 (issue 8, items 1, 2 and 7):
 * what a host, a local user or a replaying observer can no longer do. The end-to-end version
 * with an attacker namespace on the link is test/tep_attack.test.ts.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../lib/control/log.ts";
import { Metrics } from "../lib/control/metrics.ts";
import { WarnLimit } from "../lib/control/warn_limit.ts";
import type { Lease } from "../lib/lease/lease.ts";
import { parseIPv6 } from "../lib/net/addr.ts";
import { DstmServer } from "../lib/server/server.ts";
import { TepSync } from "../lib/server/tep_sync.ts";
import { bindUdp, type UdpEndpoint } from "../lib/sys/udp.ts";
import { TepControl } from "../lib/tep/control.ts";
import { type AuthKey, generateKeyFileText, signMessage } from "../lib/wire/auth.ts";
import { bindingsDigest } from "../lib/wire/digest.ts";
import { decodeMessage, encodeMessage } from "../lib/wire/dstm.ts";
import { type DstmMessage, MessageType, type WirePortSet } from "../lib/wire/dstm_types.ts";
import { runDstm } from "./helpers/process.ts";
import { RecordingTable } from "./helpers/recording_table.ts";
import { tepArgv } from "./helpers/tep_argv.ts";
import { eventually } from "./helpers/wait.ts";

const TEP_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x71) };
const HOST_KEY: AuthKey = { id: 1, secret: new Uint8Array(32).fill(0x42) };
const WHOLE: WirePortSet = { offset: 0, psidLength: 0, psid: 0 };
const A4 = 0xc6336405; // 198.51.100.5
/** The TEP's address (tep6 "::1"): the server MACs it into every message for this TEP. */
const TEP6 = parseIPv6("::1")!;
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** Polls `check` for up to `ms`; whether it held (./helpers/wait.ts). */
const until = (check: () => boolean, ms = 3000) => eventually(check, { timeoutMs: ms });

/** A UDP socket on ::1 that records what it receives. */
async function socket(port = 0) {
  const received: DstmMessage[] = [];
  let bytes = 0;
  const ep: UdpEndpoint = await bindUdp("::1", port, (data) => {
    bytes += data.length;
    const decoded = decodeMessage(data);
    if (decoded.ok) received.push(decoded.value);
  });
  cleanup.push(() => ep.close());
  return { ep, received, bytes: () => bytes };
}

/** A TEP control plane whose "server" is a socket the test holds (so it can send as the server). */
async function tepWithServerSocket(key?: AuthKey) {
  const server = await socket();
  const probe = await bindUdp("::1", 0, () => {});
  const tepPort = probe.port;
  probe.close();
  const metrics = new Metrics();
  const table = new RecordingTable();
  const tep = await TepControl.start({
    listen: { address: "::1", port: tepPort },
    server: { address: "::1", port: server.ep.port },
    tep6: "::1",
    key,
    table,
    syncIntervalMs: 60_000,
    log: new Logger({ sink: () => {} }),
    metrics,
  });
  cleanup.push(() => tep.close());
  const count = (kind: string, result: string) =>
    metrics.get("dstm_tep_control_total", { kind, result }) ?? 0;
  return { server, tep, tepPort, table, count };
}

const bind = (xid: number, host6: string, type: MessageType = MessageType.BIND): DstmMessage => ({
  type,
  xid,
  host4: A4,
  host6,
});

describe("TEP: keys are not interchangeable, replays are refused", () => {
  test("a BIND signed with a host key, or with the TEP secret in the host domain, is refused", async () => {
    const t = await tepWithServerSocket(TEP_KEY);
    const send = (bytes: Uint8Array) => t.server.ep.send(bytes, "::1", t.tepPort);
    send(signMessage(bind(1, "2001:db8:66::1"), HOST_KEY, Date.now()));
    // Same secret as the TEP key, signed as on the host channel: the domain label differs.
    send(signMessage(bind(2, "2001:db8:66::1"), TEP_KEY, Date.now()));
    expect(await until(() => t.count("bind", "drop-auth-bad-mac") === 2)).toBe(true);
    expect(t.table.map.has(A4)).toBe(false);
    send(signMessage(bind(3, "2001:db8:1::a"), TEP_KEY, Date.now(), undefined, "tep", TEP6));
    expect(await until(() => t.table.map.get(A4) === "2001:db8:1::a")).toBe(true);
  });

  test("a signed BIND sent again (a replay) is refused; an unsigned one is refused", async () => {
    const t = await tepWithServerSocket(TEP_KEY);
    const send = (bytes: Uint8Array) => t.server.ep.send(bytes, "::1", t.tepPort);
    const captured = signMessage(
      bind(1, "2001:db8:66::1"),
      TEP_KEY,
      Date.now(),
      undefined,
      "tep",
      TEP6,
    );
    send(captured);
    expect(await until(() => t.table.map.get(A4) === "2001:db8:66::1")).toBe(true);
    send(signMessage(bind(2, "2001:db8:1::a"), TEP_KEY, Date.now(), undefined, "tep", TEP6));
    expect(await until(() => t.table.map.get(A4) === "2001:db8:1::a")).toBe(true);
    send(captured);
    send(encodeMessage(bind(3, "2001:db8:66::1")));
    expect(await until(() => t.count("bind", "drop-auth-replayed") === 1)).toBe(true);
    expect(await until(() => t.count("bind", "drop-auth-missing") === 1)).toBe(true);
    expect(t.table.map.get(A4)).toBe("2001:db8:1::a");
  });
});

describe("TEP: UNBIND names the holder (item 7)", () => {
  test("a late UNBIND for the address's previous holder leaves the new holder's binding", async () => {
    const t = await tepWithServerSocket();
    const send = (m: DstmMessage) => t.server.ep.send(encodeMessage(m), "::1", t.tepPort);
    send(bind(1, "2001:db8:1::a"));
    send(bind(2, "2001:db8:1::b"));
    expect(await until(() => t.table.map.get(A4) === "2001:db8:1::b")).toBe(true);
    send(bind(3, "2001:db8:1::a", MessageType.UNBIND)); // retransmitted UNBIND of A's old lease
    expect(await until(() => t.count("unbind", "unbind-stale") === 1)).toBe(true);
    expect(t.table.map.get(A4)).toBe("2001:db8:1::b");
    expect(t.tep.count).toBe(1);
    // It is still acknowledged (the server stops retrying), and B's own UNBIND works.
    expect(await until(() => t.server.received.some((m) => m.xid === 3))).toBe(true);
    send(bind(4, "2001:db8:1::b", MessageType.UNBIND));
    expect(await until(() => !t.table.map.has(A4))).toBe(true);
  });
});

describe("server: SYNC only from configured TEPs (item 2)", () => {
  async function server(tep6: string, tepPort: number, lines: string[] = []) {
    const s = await DstmServer.start({
      pools: [{ prefixes: ["198.51.100.0/28"], tep6 }],
      leaseTime: 600,
      listen: { address: "::1", port: 0 },
      sourceCheck: false,
      tepPort,
      log: new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) }),
    });
    cleanup.push(() => s.stop());
    return s;
  }
  const sync = (tep6: string, count = 0): Uint8Array =>
    encodeMessage({ type: MessageType.SYNC, xid: 1, tep6, syncCount: count, syncDigest: 0 });

  test("a SYNC from a host, or naming another TEP, or from another port, gets nothing", async () => {
    const tep = await socket();
    const host = await socket();
    // A lease exists, so a snapshot would not be empty.
    const s = await server("::1", tep.ep.port);
    await s.engine.discover("2001:db8:1::a");
    const port = s.listening.port;
    host.ep.send(sync("::1"), "::1", port); // as the TEP, from a host's port
    tep.ep.send(sync("2001:db8:ffff::7"), "::1", port); // from the TEP, naming another
    expect(
      await until(
        () =>
          s.metrics.get("dstm_tep_refused_total", { reason: "wrong-port" }) === 1 &&
          s.metrics.get("dstm_tep_refused_total", { reason: "tep6-mismatch" }) === 1,
      ),
    ).toBe(true);
    expect(host.bytes() + tep.bytes()).toBe(0);
    expect(s.tepSync!.tepCount).toBe(1);
    tep.ep.send(sync("::1", 5), "::1", port); // the real thing (and out of step)
    expect(await until(() => tep.received.some((m) => m.type === MessageType.SNAPSHOT))).toBe(true);
    expect(host.bytes()).toBe(0);
  });

  test("a flood of SYNCs naming many TEPs creates no state, no answer, and few log lines", async () => {
    const lines: string[] = [];
    const s = await server("2001:db8:ffff::1", 4608, lines);
    const host = await socket();
    const N = 20_000;
    const refused = () => s.metrics.get("dstm_tep_refused_total", { reason: "unknown-tep" }) ?? 0;
    for (let i = 0; i < N; i++) {
      const tep6 = `2001:db8:${(i >>> 16) + 1}::${(i & 0xffff).toString(16)}`;
      host.ep.send(sync(tep6), "::1", s.listening.port);
      // Paced by the server's own count, so the socket buffer does not overflow.
      if (i % 200 === 199) await until(() => refused() >= i + 1, 2000);
    }
    const arrived = await until(() => refused() > N * 0.9, 20_000);
    expect(arrived).toBe(true);
    expect(s.tepSync!.tepCount).toBe(1);
    expect((await s.metrics.text()).match(/^dstm_tep_connected\{/gm)?.length).toBe(1);
    expect(host.bytes()).toBe(0);
    // Logged at warn, but rate-limited: a burst and a few a second, not one per datagram.
    expect(lines.filter((l) => l.includes("tep-reject")).length).toBeLessThan(200);
  }, 60_000);
});

describe("server: snapshots on an unauthenticated channel are rate-limited", () => {
  const lease = (i: number): Lease =>
    ({
      ipv4: A4 + i,
      host6: `2001:db8:1::${i + 1}`,
      tep6: "::1",
      portSet: WHOLE,
    }) as Lease;

  function tepSync(keys?: AuthKey[]) {
    let now = 1_000_000;
    const sent: { bytes: number; to: string; port: number; type: MessageType }[] = [];
    const metrics = new Metrics();
    const sync = new TepSync(
      {
        keys,
        teps: ["::1"],
        tepPort: 4608,
        log: new Logger({ sink: () => {} }),
        metrics,
        now: () => now,
        send: (data, to, port) => {
          const decoded = decodeMessage(data);
          if (!decoded.ok) throw new Error(decoded.error.message);
          sent.push({ bytes: data.length, to, port, type: decoded.value.type });
          return true;
        },
      },
      [lease(0), lease(1)],
    );
    cleanup.push(() => sync.close());
    const raw = encodeMessage({
      type: MessageType.SYNC,
      xid: 9,
      tep6: "::1",
      syncCount: 0,
      syncDigest: 0,
    });
    return {
      sync,
      sent,
      metrics,
      raw,
      tick: (ms: number) => {
        now += ms;
      },
      at: () => now,
    };
  }

  test("forged SYNCs from the TEP's address get at most the burst, then one a second, all sent to the TEP's control port", () => {
    const t = tepSync();
    const decoded = decodeMessage(t.raw);
    if (!decoded.ok) throw new Error("bad SYNC");
    const snapshots = () => t.sent.filter((s) => s.type === MessageType.SNAPSHOT).length;
    const answers = () => t.sent.filter((s) => s.type === MessageType.SYNC).length;
    for (let i = 0; i < 50; i++) t.sync.onTepMessage(t.raw, decoded.value, "::1", 4608);
    expect(snapshots()).toBe(2);
    // The server's SYNC answer: one per half SYNC period, however many SYNCs arrive.
    expect(answers()).toBe(1);
    t.tick(1000);
    for (let i = 0; i < 50; i++) t.sync.onTepMessage(t.raw, decoded.value, "::1", 4608);
    expect(snapshots()).toBe(3);
    expect(answers()).toBe(2);
    expect(t.sent.every((s) => s.to === "::1" && s.port === 4608)).toBe(true);
    expect(t.metrics.get("dstm_tep_messages_total", { kind: "snapshot_deferred" })).toBe(97);
  });

  test("with a TEP key: only a SYNC signed in the TEP domain is answered, once", () => {
    const t = tepSync([TEP_KEY]);
    const message: DstmMessage = {
      type: MessageType.SYNC,
      xid: 9,
      tep6: "::1",
      syncCount: 0,
      syncDigest: bindingsDigest([]),
    };
    const deliver = (bytes: Uint8Array) => {
      const d = decodeMessage(bytes);
      if (!d.ok) throw new Error("bad SYNC");
      t.sync.onTepMessage(bytes, d.value, "::1", 4608);
    };
    deliver(t.raw);
    deliver(signMessage(message, TEP_KEY, t.at())); // host domain
    deliver(signMessage(message, HOST_KEY, t.at(), undefined, "tep"));
    expect(t.sent.length).toBe(0);
    const good = signMessage(message, TEP_KEY, t.at(), undefined, "tep");
    deliver(good);
    expect(t.sent.map((s) => s.type)).toEqual([MessageType.SYNC, MessageType.SNAPSHOT]);
    deliver(good);
    expect(t.sent.length).toBe(2);
    const refused = (reason: string) => t.metrics.get("dstm_tep_refused_total", { reason });
    expect(refused("auth-missing")).toBe(1);
    expect(refused("auth-bad-mac")).toBe(2);
    expect(refused("auth-replayed")).toBe(1);
  });

  test("without --tep-key, a TEP that signs is told about once (its BINDs would time out), each SYNC counted", () => {
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const metrics = new Metrics();
    const sync = new TepSync({ teps: ["::1"], tepPort: 4608, log, metrics, send: () => true }, []);
    cleanup.push(() => sync.close());
    const message: DstmMessage = {
      type: MessageType.SYNC,
      xid: 9,
      tep6: "::1",
      syncCount: 0,
      syncDigest: 0,
    };
    for (let i = 0; i < 3; i++) {
      const bytes = signMessage(message, TEP_KEY, Date.now(), undefined, "tep");
      const d = decodeMessage(bytes);
      if (!d.ok) throw new Error("bad SYNC");
      sync.onTepMessage(bytes, d.value, "::1", 4608);
    }
    // An unsigned SYNC is what this server expects: nothing to say.
    const plain = encodeMessage(message);
    const d = decodeMessage(plain);
    if (!d.ok) throw new Error("bad SYNC");
    sync.onTepMessage(plain, d.value, "::1", 4608);
    log.flush();
    expect(metrics.get("dstm_tep_messages_total", { kind: "signed_unchecked" })).toBe(3);
    const told = lines.filter((l) => / WARN tep-key-missing /.test(l));
    expect(told.length).toBe(1);
    expect(told[0]).toContain("key-id=1");
    expect(told[0]).toMatch(/--tep-key/);
  });

  test("a BIND to a TEP that signs while this server has no --tep-key: tep-unreachable says the TEP refused it (keys)", async () => {
    const lines: string[] = [];
    const log = new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) });
    const sync = new TepSync(
      { teps: ["::1"], tepPort: 4608, log, metrics: new Metrics(), send: () => true },
      [],
    );
    cleanup.push(() => sync.close());
    const message: DstmMessage = {
      type: MessageType.SYNC,
      xid: 9,
      tep6: "::1",
      syncCount: 0,
      syncDigest: 0,
    };
    const bytes = signMessage(message, TEP_KEY, Date.now(), undefined, "tep");
    const d = decodeMessage(bytes);
    if (!d.ok) throw new Error("bad SYNC");
    sync.onTepMessage(bytes, d.value, "::1", 4608);
    // The TEP drops the unsigned BIND (as a real one with --key does): no answer.
    const lease = { ipv4: A4, host6: "2001:db8:1::1", tep6: "::1", portSet: WHOLE } as Lease;
    expect(await sync.install(lease)).toBe(false);
    log.flush();
    const warn = lines.find((l) => / WARN tep-unreachable /.test(l));
    expect(warn).toBeDefined();
    expect(warn).toContain("the TEP refused them");
    expect(warn).toContain("no --tep-key");
    // A TEP that does not sign: the warning still names keys among the causes.
    const other: string[] = [];
    const log2 = new Logger({ sink: (text) => other.push(...text.trimEnd().split("\n")) });
    const plainSync = new TepSync(
      { teps: ["::1"], tepPort: 4608, log: log2, metrics: new Metrics(), send: () => true },
      [],
    );
    cleanup.push(() => plainSync.close());
    const plain = encodeMessage(message);
    const p = decodeMessage(plain);
    if (!p.ok) throw new Error("bad SYNC");
    plainSync.onTepMessage(plain, p.value, "::1", 4608);
    expect(await plainSync.install(lease)).toBe(false);
    log2.flush();
    expect(other.find((l) => / WARN tep-unreachable /.test(l))).toMatch(/--key/);
  });
});

describe("the command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "dstm-tepkey-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("dstm server refuses a --tep-key that repeats a host key (exit 2, one line)", async () => {
    const key = join(dir, "same.key");
    writeFileSync(key, generateKeyFileText(1), { mode: 0o600 });
    const copy = join(dir, "copy.key");
    writeFileSync(copy, readFileSync(key, "utf8").replace(/^1 /m, "5 "), { mode: 0o600 });
    const r = await runDstm([
      "server",
      "--pool",
      "198.51.100.0/28",
      "--tep",
      "2001:db8::1",
      "--db",
      "memory",
      "--no-control",
      "--listen",
      "[::1]:0",
      "--key",
      key,
      "--tep-key",
      copy,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^dstm: --tep-key: a secret of the TEP key file is also in --key; .*\n$/,
    );
  });

  test("dstm tep without --key refuses a server that is not on this host (exit 2, one line)", async () => {
    const r = await runDstm(tepArgv());
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "dstm: --server 2001:db8:1::53 is not an address of this host: give --key FILE (the server's --tep-key) to authenticate it, or --insecure-control\n",
    );
  });
});

describe("WarnLimit", () => {
  test("writes the burst, then one line per token, each saying how many were suppressed", () => {
    const lines: string[] = [];
    let now = 0;
    const log = new Logger({ sink: (t) => lines.push(...t.trimEnd().split("\n")), now: () => now });
    const warn = new WarnLimit(log, { perSecond: 2, burst: 3, now: () => now });
    for (let i = 0; i < 10; i++) warn.warn("reject", { i });
    log.flush();
    expect(lines.length).toBe(3);
    expect(warn.suppressed).toBe(7);
    now += 500; // one token back
    warn.warn("reject", { i: 10 });
    warn.warn("reject", { i: 11 });
    log.flush();
    expect(lines.length).toBe(4);
    expect(lines[3]).toMatch(/reject i=10 suppressed=7$/);
    expect(warn.suppressed).toBe(1);
  });

  test("info() is bounded the same way and writes at info level", () => {
    const lines: string[] = [];
    let now = 0;
    const log = new Logger({ sink: (t) => lines.push(...t.trimEnd().split("\n")), now: () => now });
    const limit = new WarnLimit(log, { perSecond: 1, burst: 2, now: () => now });
    for (let i = 0; i < 5; i++) limit.info("reject", { i });
    log.flush();
    expect(lines.length).toBe(2);
    expect(lines.every((l) => !/ WARN /.test(l))).toBe(true);
    expect(limit.suppressed).toBe(3);
    now += 1000;
    limit.info("reject", { i: 5 });
    log.flush();
    expect(lines[2]).toMatch(/reject i=5 suppressed=3$/);
  });
});
