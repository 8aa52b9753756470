/**
 * The server's defences on the allocation side, in process over ::1 (issue 8 items 3, 4, 5, 9;
 * issue 11): offers that must not touch a committed lease, the 4o6 allow list, the rate limit
 * per source prefix, the lease cap per host prefix, and wall-clock steps.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DstmClient, type DstmRefusedError, DstmTransport } from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { parseIPv4 } from "../lib/net/addr.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type Dhcp4Message, Dhcp4MessageType, type Dhcp4Options } from "../lib/wire/dhcp4.ts";
import { decodeDhcp4o6 } from "../lib/wire/dhcp4o6.ts";
import { encodeMessage } from "../lib/wire/dstm.ts";
import { MessageType, Status } from "../lib/wire/dstm_types.ts";
import { dhcp4Message, dhcp4o6Query } from "./helpers/dhcp4.ts";
import { runDstm, spawnDstm } from "./helpers/process.ts";
import { eventually, waitUntil } from "./helpers/wait.ts";

const SERVER_ID = parseIPv4("192.0.2.1")!;
const OTHER_SERVER = parseIPv4("192.0.2.99")!;
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function start(overrides: Partial<ServerConfig> = {}) {
  const lines: string[] = [];
  const server = await DstmServer.start({
    pools: [{ prefixes: ["198.51.100.0/28"], tep6: "2001:db8::1", tep4: SERVER_ID }],
    leaseTime: 3600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    dhcp4o6: { address: "::1", port: 0, interfaces: [], serverId: SERVER_ID },
    log: new Logger({ sink: (text) => lines.push(...text.trimEnd().split("\n")) }),
    ...overrides,
  });
  cleanup.push(() => server.stop());
  return { server, lines };
}

/** Polls `condition` for up to `ms`; whether it held (./helpers/wait.ts). */
const until = (condition: () => boolean, ms = 5000) => eventually(condition, { timeoutMs: ms });

/**
 * A 4o6 client on ::1 (any chaddr: the host is the query's source, RFC 7341 §7): `send`
 * sends one DHCPV4-QUERY, `answers` holds every DHCPv4 answer decoded so far. Closed after
 * the test.
 */
async function client4o6(port: number) {
  const answers: Dhcp4Message[] = [];
  const ep = await bindUdp("::1", 0, (data) => {
    const decoded = decodeDhcp4o6(data);
    if (decoded.ok) answers.push(decoded.value.dhcp4);
  });
  cleanup.push(() => ep.close());
  const chaddr = Uint8Array.from([0x02, 0xba, 0xd0, 0, 0, 1]);
  return {
    answers,
    send(type: Dhcp4MessageType, options: Partial<Dhcp4Options> = {}): void {
      ep.send(dhcp4o6Query(dhcp4Message(type, options, { xid: 0x5151, chaddr })), "::1", port);
    },
  };
}

/** One DHCPV4-QUERY from ::1 and its DHCPv4 answer (waited for; throws when none comes). */
async function ask4o6(
  port: number,
  type: Dhcp4MessageType,
  options: Partial<Dhcp4Options> = {},
): Promise<Dhcp4Message> {
  const client = await client4o6(port);
  client.send(type, options);
  await waitUntil(() => client.answers.length > 0, { what: "the server's answer" });
  return client.answers[0]!;
}

describe("an offer never touches a committed lease (issue 8 item 5, issue 11)", () => {
  test("a replayed 4o6 DISCOVER from a bound host's address gets its lease with the time it has left", async () => {
    const { server } = await start();
    const bound = await server.engine.discover("::1"); // a 3600 s lease of host ::1
    expect(bound.ok).toBe(true);
    const expiresAt = bound.ok ? bound.lease.expiresAt : 0;
    const offer = await ask4o6(server.dhcp4o6Port, Dhcp4MessageType.DISCOVER);
    expect(offer.options.messageType).toBe(Dhcp4MessageType.OFFER);
    expect(offer.yiaddr).toBe(bound.ok ? bound.lease.ipv4 : -1);
    expect(offer.options.leaseTime).toBeGreaterThan(3500);
    expect(server.engine.lookupHost("::1")?.expiresAt).toBe(expiresAt);
  });

  test("a new host's OFFER says the lease time its ACK grants", async () => {
    const { server } = await start();
    const offer = await ask4o6(server.dhcp4o6Port, Dhcp4MessageType.DISCOVER);
    expect(offer.options.leaseTime).toBe(3600);
    const ack = await ask4o6(server.dhcp4o6Port, Dhcp4MessageType.REQUEST, {
      requestedIp: offer.yiaddr,
      serverId: SERVER_ID,
    });
    expect(ack.options.leaseTime).toBe(3600);
  });

  test("a REQUEST naming another server frees our offer whatever address it asks for; never a committed lease", async () => {
    const { server } = await start();
    const offer = await ask4o6(server.dhcp4o6Port, Dhcp4MessageType.DISCOVER);
    expect(server.engine.lookupHost("::1")?.ipv4).toBe(offer.yiaddr);
    const otherServer = () =>
      server.metrics.get("dstm_dhcp4o6_messages_total", {
        type: "request",
        result: "other-server",
      }) ?? 0;
    // The client took another server's offer of another address: no answer, the offer goes.
    const client = await client4o6(server.dhcp4o6Port);
    client.send(Dhcp4MessageType.REQUEST, {
      requestedIp: parseIPv4("203.0.113.7")!,
      serverId: OTHER_SERVER,
    });
    expect(await until(() => server.engine.lookupHost("::1") === undefined)).toBe(true);
    expect(otherServer()).toBe(1);
    // A committed lease survives the same REQUEST.
    const again = await ask4o6(server.dhcp4o6Port, Dhcp4MessageType.DISCOVER);
    const ack = await ask4o6(server.dhcp4o6Port, Dhcp4MessageType.REQUEST, {
      requestedIp: again.yiaddr,
      serverId: SERVER_ID,
    });
    expect(ack.options.messageType).toBe(Dhcp4MessageType.ACK);
    const committed = server.engine.lookupHost("::1");
    client.send(Dhcp4MessageType.REQUEST, { requestedIp: again.yiaddr, serverId: OTHER_SERVER });
    // Handled once counted: the handler counts it and, in the same turn, asks the engine to
    // withdraw an offer, which decides in memory. So the lease is looked at after the count,
    // and again after a later DISCOVER through the same socket has been answered (a replayed
    // DISCOVER of a bound host offers its lease unchanged; had it been freed, a new offer).
    expect(await until(() => otherServer() === 2)).toBe(true);
    expect(server.engine.lookupHost("::1")?.state).toBe("active");
    client.send(Dhcp4MessageType.DISCOVER);
    expect(await until(() => client.answers.length === 1)).toBe(true);
    expect(client.answers[0]!.options.messageType).toBe(Dhcp4MessageType.OFFER);
    expect(client.answers[0]!.yiaddr).toBe(again.yiaddr);
    const kept = server.engine.lookupHost("::1");
    expect(kept?.state).toBe("active");
    expect(kept?.expiresAt).toBe(committed!.expiresAt);
  });
});

describe("admission", () => {
  test("4o6 from outside --dhcp4o6-allow gets no answer, counted and logged at warn", async () => {
    const { server, lines } = await start({
      dhcp4o6: {
        address: "::1",
        port: 0,
        interfaces: [],
        serverId: SERVER_ID,
        allow: ["2001:db8:4::/64"],
      },
    });
    const client = await client4o6(server.dhcp4o6Port);
    client.send(Dhcp4MessageType.DISCOVER);
    client.send(Dhcp4MessageType.DISCOVER);
    // Not a wait for silence: each refusal is counted where the handler returns no answer,
    // before it awaits anything, so once both are counted neither can be answered later.
    const notAllowed = () =>
      server.metrics.get("dstm_admission_refused_total", {
        protocol: "dhcp4o6",
        reason: "not-allowed",
      });
    expect(await until(() => notAllowed() === 2)).toBe(true);
    expect(client.answers).toEqual([]);
    expect(server.engine.lookupHost("::1")).toBeUndefined();
    // Logged once (the second refusal inside the log interval is only counted).
    expect(await until(() => lines.some((l) => / WARN reject reason=not-allowed/.test(l)))).toBe(
      true,
    );
    expect(lines.filter((l) => /reason=not-allowed/.test(l)).length).toBe(1);
    expect(lines.some((l) => / dhcp4o6 .*allow=2001:db8:4::\/64/.test(l))).toBe(true);
  });

  test("native requests over the rate of their source prefix are dropped and counted", async () => {
    const frozen = { mono: 1_000 };
    const { server, lines } = await start({
      admission: { ratePerSecond: 1, burst: 3 },
      clock: { monotonic: () => frozen.mono },
    });
    let answers = 0;
    const ep = await bindUdp("::1", 0, () => {
      answers++;
    });
    cleanup.push(() => ep.close());
    for (let i = 1; i <= 5; i++) {
      ep.send(
        encodeMessage({ type: MessageType.DISCOVER, xid: i, host6: `2001:db8:5::${i}` }),
        "::1",
        server.listening.port,
      );
    }
    const refused = () =>
      server.metrics.get("dstm_admission_refused_total", {
        protocol: "native",
        reason: "rate-limit",
      });
    expect(await until(() => answers === 3 && refused() === 2)).toBe(true);
    expect(server.engine.leases({ state: "active" }).length).toBe(3);
    expect(await until(() => lines.some((l) => / WARN reject reason=rate-limit/.test(l)))).toBe(
      true,
    );
    // A second later there is one token again.
    frozen.mono += 1_000;
    ep.send(
      encodeMessage({ type: MessageType.DISCOVER, xid: 9, host6: "2001:db8:5::9" }),
      "::1",
      server.listening.port,
    );
    expect(await until(() => answers === 4)).toBe(true);
  });

  test("the lease cap per host prefix answers POOL_EXHAUSTED, counted as prefix-limit; another prefix still leases", async () => {
    const { server, lines } = await start({ admission: { maxLeasesPerPrefix: 2 } });
    const transport = await DstmTransport.open({
      server: "::1",
      port: server.listening.port,
      retry: { initialMs: 200, tries: 3 },
    });
    cleanup.push(() => transport.close());
    await new DstmClient(transport, "2001:db8:bad::1").discover();
    await new DstmClient(transport, "2001:db8:bad::2").discover();
    const refused = await new DstmClient(transport, "2001:db8:bad::3")
      .discover()
      .catch((e: unknown) => e as DstmRefusedError);
    expect((refused as DstmRefusedError).status).toBe(Status.POOL_EXHAUSTED);
    expect((refused as DstmRefusedError).message).toContain(
      "host prefix 2001:db8:bad::/64 holds 2 leases, the most one prefix may hold (--max-leases-per-prefix)",
    );
    const reject = lines.filter((l) => / WARN reject reason=prefix-limit /.test(l));
    expect(reject).toHaveLength(1);
    expect(reject[0]).toContain("limit=--max-leases-per-prefix");
    expect(
      server.metrics.get("dstm_admission_refused_total", {
        protocol: "native",
        reason: "prefix-limit",
      }),
    ).toBe(1);
    expect((await new DstmClient(transport, "2001:db8:600d::1").discover()).ipv4).toBeGreaterThan(
      0,
    );
  });
});

describe("wall-clock steps (issue 8 item 9)", () => {
  test("a 2 h step forward is logged as clock-step and expires nothing; the monotonic clock still does", async () => {
    const clocks = { wall: Date.now(), mono: 0 };
    const { server, lines } = await start({
      leaseTime: 60,
      sweepIntervalMs: 10,
      clock: { now: () => clocks.wall, monotonic: () => clocks.mono },
    });
    const lease = await server.engine.discover("2001:db8:1::1");
    expect(lease.ok).toBe(true);
    clocks.wall += 2 * 3600_000;
    expect(await until(() => lines.some((l) => / WARN clock-step step-s=7200/.test(l)))).toBe(true);
    expect(server.metrics.get("dstm_clock_steps_total", {})).toBe(1);
    // Sweeps now, on the stepped clock (rather than waiting for the timer's).
    await server.engine.sweep();
    await server.engine.sweep();
    expect(server.engine.lookupHost("2001:db8:1::1")?.state).toBe("active");
    expect(server.metrics.get("dstm_leases_expired_total", {}) ?? 0).toBe(0);
    clocks.mono += 60_000;
    clocks.wall += 60_000;
    // The sweeper frees the lease in memory, commits, and only then counts it: wait for the
    // count (the last effect), not for the lease to be gone.
    const expired = () => server.metrics.get("dstm_leases_expired_total", {}) ?? 0;
    expect(await until(() => expired() === 1)).toBe(true);
    expect(server.engine.lookupHost("2001:db8:1::1")).toBeUndefined();
  });
});

describe("dstm server command line", () => {
  const base = ["server", "--pool", "198.51.100.0/28", "--tep", "2001:db8::1,192.0.2.1"];
  const more = ["--db", "memory", "--no-control", "--listen", "[::1]:0"];

  async function keyFile(): Promise<string> {
    const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "dstm-adm-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const { stdout } = await runDstm(["keygen", "--id", "1"]);
    writeFileSync(join(dir, "key"), stdout, { mode: 0o600 });
    return join(dir, "key");
  }

  test("--key with --dhcp4o6 and no admission: exit 2 with a line saying what to give", async () => {
    const key = await keyFile();
    const { code, stderr } = await runDstm([...base, ...more, "--key", key, "--dhcp4o6"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /--key does not cover DHCPv4-over-DHCPv6.*--dhcp4o6-allow.*--dhcp4o6-open/,
    );
  });

  test("bad admission flags: exit 2", async () => {
    for (const flags of [
      ["--dhcp4o6", "--dhcp4o6-allow", "2001:db8::1"],
      ["--max-leases-per-prefix", "-1"],
      ["--host-prefix-length", "129"],
      ["--max-leases-per-site", "-1"],
      ["--site-prefix-length", "0"],
      ["--prefix-burst", "0"],
    ]) {
      const { code, stderr } = await runDstm([...base, ...more, ...flags]);
      expect([flags.join(" "), code]).toEqual([flags.join(" "), 2]);
      expect(stderr).toMatch(/^dstm: /);
    }
  });

  test("--key with --dhcp4o6-open starts and warns that 4o6 is unauthenticated", async () => {
    const key = await keyFile();
    const server = spawnDstm([
      ...base,
      ...more,
      "--key",
      key,
      "--dhcp4o6",
      "--dhcp4o6-listen",
      "[::1]:0",
      "--dhcp4o6-open",
    ]);
    cleanup.push(async () => {
      server.proc.kill("SIGTERM");
      await server.exited;
    });
    expect(await server.waitFor(/ WARN dhcp4o6-open /)).toMatch(/no authentication/);
  });
});

describe("admission settings in the config file", () => {
  test("every admission setting is read from TOML; flags win", async () => {
    const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { resolveServerConfig } = await import("../cli/server.ts");
    const dir = mkdtempSync(join(tmpdir(), "dstm-adm-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "dstm.toml");
    writeFileSync(
      file,
      [
        'pool = "198.51.100.0/28"',
        'tep = "2001:db8::1,192.0.2.1"',
        'db = "memory"',
        "dhcp4o6 = true",
        'dhcp4o6-allow = ["2001:db8:8::/64", "2001:db8:9::/64"]',
        "max-leases-per-prefix = 4",
        "host-prefix-length = 56",
        "max-leases-per-site = 32",
        "site-prefix-length = 48",
        "prefix-rate = 5",
        "prefix-burst = 20",
      ].join("\n"),
    );
    const config = resolveServerConfig({ config: file, control: false }, () => {});
    expect(config.dhcp4o6?.allow).toEqual(["2001:db8:8::/64", "2001:db8:9::/64"]);
    expect(config.admission).toEqual({
      maxLeasesPerPrefix: 4,
      hostPrefixLength: 56,
      maxLeasesPerSite: 32,
      sitePrefixLength: 48,
      ratePerSecond: 5,
      burst: 20,
    });
    const flags = resolveServerConfig(
      { config: file, control: false, maxLeasesPerPrefix: "0", prefixRate: "0" },
      () => {},
    );
    expect([flags.admission?.maxLeasesPerPrefix, flags.admission?.ratePerSecond]).toEqual([0, 0]);
  });
});
