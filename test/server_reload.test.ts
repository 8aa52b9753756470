/**
 * Reload (issue 13 item 1): SIGHUP and `dstm server reload` read the configuration again
 * without dropping a lease or a binding; what cannot change live is refused with one line
 * and the old configuration keeps running.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DstmClient, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { formatIPv4 } from "../lib/net/addr.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { generateKeyFileText, parseKeyFile } from "../lib/wire/auth.ts";
import { Dhcp4MessageType } from "../lib/wire/dhcp4.ts";
import { decodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { dhcp4Message, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { announceSkip, netnsSkipReason, runScript } from "./helpers/netns.ts";
import { runDstm, spawnDstm } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-reload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const skip = netnsSkipReason();
announceSkip("server_reload", skip);

describe.skipIf(skip !== null)("reload under load (namespace, real dstm server)", () => {
  let ns: Netns;
  beforeAll(() => {
    ns = createNetns("dstmt-");
    ns.up("lo");
    ns.addAddress("lo", "2001:db8:ff::1/128");
  });
  afterAll(() => ns?.delete());

  test("150 hosts allocating through 4 SIGHUPs (pool added, one resized, one refused): zero lost leases, zero dropped bindings", async () => {
    const r = await runScript<{
      hosts: number;
      acked: number;
      distinctAddresses: number;
      inStore: number;
      missingStore: string[];
      missingDb: string[];
      atTep: number;
      missingTep: string[];
      unbinds: number;
      reloads: number;
      refused: string[];
      pools: string;
      exit: number;
      stopLine: boolean;
    }>(ns, "reload_load.ts", [dir, "150"], 120_000);
    // every host got a lease: 62 before the reloads, 156 after them
    expect(r.acked).toBe(150);
    expect(r.distinctAddresses).toBe(150);
    // every acknowledged lease is in the running server, in its database and at the TEP
    expect(r.missingStore).toEqual([]);
    expect(r.inStore).toBe(150);
    expect(r.missingDb).toEqual([]);
    expect(r.missingTep).toEqual([]);
    expect(r.atTep).toBe(150);
    expect(r.unbinds).toBe(0);
    // three applied, one refused (the listen address needs a restart) with one line
    expect(r.reloads).toBe(3);
    expect(r.refused).toHaveLength(1);
    expect(r.refused[0]).toMatch(
      /reload-refused reason=SIGHUP detail="--listen cannot change without a restart"/,
    );
    expect(r.pools).toMatch(/pools=198\.51\.100\.0\/25,203\.0\.113\.0\/27 .*orphaned=0/);
    expect(r.exit).toBe(0);
    expect(r.stopLine).toBe(true);
  }, 150_000);
});

/** A server in this process, reloadable with whatever `next` holds. */
async function start(overrides: Partial<ServerConfig>) {
  const lines: string[] = [];
  const log = new Logger({ sink: (t) => lines.push(t) });
  const base: ServerConfig = {
    pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
    log,
    ...overrides,
  };
  const server = await DstmServer.start(base);
  cleanup.push(() => server.stop());
  let next = base;
  server.onReload(() => next);
  const transport = await DstmTransport.open({
    server: "::1",
    port: server.listening.port,
    retry: { initialMs: 200, tries: 3 },
  });
  cleanup.push(() => transport.close());
  return {
    server,
    transport,
    lines,
    /** The log so far (the logger buffers: flushed first). */
    log: () => {
      log.flush();
      return lines.join("");
    },
    set: (change: Partial<ServerConfig>) => {
      next = { ...base, ...change };
    },
  };
}

describe("DstmServer.reload", () => {
  test("a removed pool's leases are kept (orphaned), their addresses never handed out again", async () => {
    const s = await start({
      pools: [
        { prefixes: ["198.51.100.0/30"], tep6: "2001:db8::1" },
        { prefixes: ["203.0.113.0/30"], tep6: "2001:db8::1" },
      ],
    });
    const held = [];
    for (let i = 1; i <= 4; i++)
      held.push(await new DstmClient(s.transport, `2001:db8:1::${i}`).discover());
    expect(held.map((l) => formatIPv4(l.ipv4))).toEqual([
      "198.51.100.1",
      "198.51.100.2",
      "203.0.113.1",
      "203.0.113.2",
    ]);
    s.set({ pools: [{ prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1" }] });
    const result = await s.server.reload("test");
    expect(result).toMatchObject({ ok: true, changed: ["pool"] });
    expect(result.message).toMatch(/2 orphaned lease\(s\)/);
    expect(s.log()).toMatch(/WARN orphaned leases=2/);
    // all four leases are still in the table
    expect(s.server.engine.leases({ state: "active" }).map((l) => formatIPv4(l.ipv4))).toEqual([
      "198.51.100.1",
      "198.51.100.2",
      "203.0.113.1",
      "203.0.113.2",
    ]);
    // the grown pool hands out its new addresses; never 203.0.113.x
    const fresh = [];
    for (let i = 10; i < 14; i++)
      fresh.push(
        formatIPv4((await new DstmClient(s.transport, `2001:db8:1::${i}`).discover()).ipv4),
      );
    expect(fresh).toEqual(["198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6"]);
    // the orphan's holder keeps its lease until it releases it
    await new DstmClient(s.transport, "2001:db8:1::3").release(held[2]!.ipv4);
    expect(s.server.engine.lookupHost("2001:db8:1::3")).toBeUndefined();
    expect(s.server.engine.orphans()).toBe(2); // the released row is history outside the pools
  });

  test("released history outside the new pools is not called an orphaned lease", async () => {
    const s = await start({
      pools: [
        { prefixes: ["198.51.100.0/30"], tep6: "2001:db8::1" },
        { prefixes: ["203.0.113.0/30"], tep6: "2001:db8::1" },
      ],
    });
    const held = [];
    for (let i = 1; i <= 3; i++)
      held.push(await new DstmClient(s.transport, `2001:db8:1::${i}`).discover());
    expect(formatIPv4(held[2]!.ipv4)).toBe("203.0.113.1");
    await new DstmClient(s.transport, "2001:db8:1::3").release(held[2]!.ipv4);
    s.set({ pools: [{ prefixes: ["198.51.100.0/30"], tep6: "2001:db8::1" }] });
    const result = await s.server.reload("test");
    expect(result).toMatchObject({ ok: true, changed: ["pool"] });
    expect(s.server.engine.orphans()).toBe(1); // the released row: history, kept
    expect(result.message).not.toMatch(/orphaned/);
    expect(s.log()).not.toMatch(/WARN orphaned/);
    expect(s.log()).toMatch(/ reload .*orphaned=0/);
  });

  test("a pool's 4o6 links change live: the next DISCOVER from the same source gets the other pool", async () => {
    const linked = (a: string[], b: string[]) => [
      { prefixes: ["198.51.100.0/29"], tep6: "2001:db8::1", links: a },
      { prefixes: ["203.0.113.0/29"], tep6: "2001:db8::1", links: b },
    ];
    const dhcp4o6 = { address: "::1", port: 0, interfaces: [], serverId: 0xc0000201 };
    const s = await start({ pools: linked(["2001:db8:77::/64"], ["::1/128"]), dhcp4o6 });
    const answers: Uint8Array[] = [];
    const ep = await bindUdp("::1", 0, (data) => {
      answers.push(data);
    });
    cleanup.push(() => ep.close());
    const offered = async (client: number) => {
      const chaddr = Uint8Array.of(2, 0, 0, 0, 0x77, client);
      const discover = dhcp4Message(Dhcp4MessageType.DISCOVER, {}, { xid: client, chaddr });
      ep.send(dhcp4o6Query(discover), "::1", s.server.dhcp4o6Port);
      let yiaddr: string | null = null;
      await eventually(
        () => {
          for (const raw of answers) {
            const r = decodeDhcp4o6(raw);
            if (r.ok && r.value.dhcp4.xid === client) yiaddr = formatIPv4(r.value.dhcp4.yiaddr);
          }
          return yiaddr !== null;
        },
        { timeoutMs: 2000, intervalMs: 20 },
      );
      return yiaddr;
    };
    expect(await offered(1)).toMatch(/^203\.0\.113\./); // ::1 is pool B's link
    s.set({ pools: linked(["::1/128"], ["2001:db8:77::/64"]), dhcp4o6 });
    expect(await s.server.reload("test")).toMatchObject({ ok: true, changed: ["pool"] });
    expect(await offered(2)).toMatch(/^198\.51\.100\./); // now pool A's
  });

  test("a setting that needs a restart refuses the whole reload; the old configuration keeps running", async () => {
    const s = await start({});
    s.set({
      pools: [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }],
      listen: { address: "::1", port: 4999 },
    });
    const result = await s.server.reload("test");
    expect(result).toEqual({
      ok: false,
      message: "--listen cannot change without a restart",
      changed: [],
    });
    expect(s.server.engine.stats().map((p) => p.pool)).toEqual(["198.51.100.0/29"]);
    expect(s.log()).toMatch(
      /WARN reload-refused reason=test detail="--listen cannot change without a restart"/,
    );
    s.set({ pools: [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::99" }] });
    expect((await s.server.reload("test")).message).toMatch(/TEP 2001:db8::99 is new/);
    s.set({
      pools: [
        { prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" },
        { prefixes: ["198.51.100.8/29"], tep6: "2001:db8::1" },
      ],
    });
    expect((await s.server.reload("test")).message).toMatch(/overlap/);
    expect(s.server.engine.stats().map((p) => p.pool)).toEqual(["198.51.100.0/29"]);
  });

  test("keys rotate with an overlap: the dropped key is accepted until --key-overlap has passed", async () => {
    const parse = (text: string) => {
      const r = parseKeyFile(text);
      if (!r.ok) throw new Error(r.message);
      return r.keys;
    };
    const [oldKey] = parse(generateKeyFileText(1));
    const [newKey] = parse(generateKeyFileText(2));
    const s = await start({ keys: [oldKey!] });
    const signed = async (key: typeof oldKey) => {
      const t = await DstmTransport.open({
        server: "::1",
        port: s.server.listening.port,
        key,
        retry: { initialMs: 200, tries: 2 },
      });
      cleanup.push(() => t.close());
      return t;
    };
    const oldT = await signed(oldKey);
    const newT = await signed(newKey);
    const old = new DstmClient(oldT, "2001:db8:1::a");
    await old.discover();
    s.set({ keys: [newKey!], keyOverlapSeconds: 1 });
    expect(await s.server.reload("test")).toMatchObject({
      ok: true,
      changed: ["key", "key-overlap"],
    });
    await new DstmClient(newT, "2001:db8:1::b").discover();
    await old.discover(); // within the overlap
    // after it, the old key is refused (polled: no timing assertion)
    const retired = () => s.log().includes("key-retired");
    expect(await eventually(retired, { timeoutMs: 10_000, intervalMs: 100 })).toBe(true);
    await expect(new DstmClient(oldT, "2001:db8:1::c").discover()).rejects.toThrow();
  });

  test("log level, lease time and limits change live", async () => {
    const s = await start({});
    s.set({
      leaseTime: 60,
      maxLeaseTime: 60,
      logLevel: "warn",
      admission: { maxLeasesPerPrefix: 1, ratePerSecond: 0 },
    });
    expect((await s.server.reload("test")).changed).toEqual([
      "lease-time",
      "max-lease-time",
      "log-level",
      "max-leases-per-prefix",
      "max-leases-per-site", // its default follows the per-prefix cap: from off to 4
    ]);
    const lease = await new DstmClient(s.transport, "2001:db8:1::a").discover();
    expect(lease.leaseTime).toBe(60);
    await expect(new DstmClient(s.transport, "2001:db8:1::b").discover()).rejects.toThrow(); // one per /64
    const before = s.lines.length;
    await new DstmClient(s.transport, "2001:db8:2::a").discover(); // info lines are no longer written
    expect(s.lines.slice(before).filter((l) => / INFO | lease /.test(l))).toEqual([]);
  });
  test("the lease cap per site changes live: the /64s of one /56 share it; leases held stay", async () => {
    const s = await start({ pools: [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }] });
    // Three /64s of 2001:db8:5::/56, no caps yet.
    for (const h of ["2001:db8:5:1::a", "2001:db8:5:2::a", "2001:db8:5:3::a"])
      await new DstmClient(s.transport, h).discover();
    s.set({
      pools: [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1" }],
      admission: { maxLeasesPerPrefix: 0, maxLeasesPerSite: 2, ratePerSecond: 0 },
    });
    expect((await s.server.reload("test")).changed).toEqual(["max-leases-per-site"]);
    // The site holds 3 > 2: no new lease in it; the held ones renew; another /56 leases.
    await expect(new DstmClient(s.transport, "2001:db8:5:4::a").discover()).rejects.toThrow(
      /site prefix 2001:db8:5::\/56 holds 2 leases.*--max-leases-per-site/,
    );
    expect((await new DstmClient(s.transport, "2001:db8:5:1::a").discover()).leaseTime).toBe(600);
    await new DstmClient(s.transport, "2001:db8:5:100::a").discover();
  });
});

describe("dstm server: SIGHUP and `dstm server reload`", () => {
  test("SIGHUP reloads (exit 129 before); `dstm server reload` applies or says why not (exit 1)", async () => {
    const file = join(dir, "s.toml");
    const control = join(dir, "s.sock");
    const config = (pool: string, listen = "[::1]:0") =>
      `pool = "${pool}"\ntep = "2001:db8::1"\ndb = "memory"\nlisten = "${listen}"\ncontrol = "${control}"\n`;
    writeFileSync(file, config("198.51.100.0/29"));
    const server = spawnDstm(["server", "--config", file]);
    cleanup.push(async () => {
      server.proc.kill("SIGTERM");
      await server.exited;
    });
    await server.waitFor(/ start /);
    writeFileSync(file, config("198.51.100.0/28"));
    server.proc.kill("SIGHUP");
    expect(await server.waitFor(/ reload reason=SIGHUP/)).toMatch(
      /changed=pool pools=198\.51\.100\.0\/28 capacity=14/,
    );
    writeFileSync(file, config("198.51.100.0/27"));
    const ok = await runDstm(["server", "reload", "--control", control]);
    expect([ok.code, ok.stdout]).toEqual([0, "reloaded: pool\n"]);
    writeFileSync(file, config("198.51.100.0/27", "[::1]:4999"));
    const no = await runDstm(["server", "reload", "--control", control]);
    expect([no.code, no.stderr]).toEqual([
      1,
      "dstm: reload refused: --listen cannot change without a restart\n",
    ]);
    writeFileSync(file, `${config("198.51.100.0/27")}require-tep = "yes"\n`);
    const bad = await runDstm(["server", "reload", "--control", control]);
    expect([bad.code, bad.stderr]).toEqual([
      1,
      `dstm: reload refused: ${file}:6:1: require-tep must be true or false, not "yes"\n`,
    ]);
    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    expect(server.lines.some((l) => / stop/.test(l))).toBe(true);
  });
});
