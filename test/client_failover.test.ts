/**
 * Clients with several servers (`dstm client --server A --server B`): an exchange a server
 * leaves unanswered goes to the next; with servers sharing one PostgreSQL database the host
 * keeps its address across the failover.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { failoverLeaseClient } from "../lib/client/failover.ts";
import {
  DstmClient,
  DstmRefusedError,
  DstmTimeoutError,
  DstmTransport,
} from "../lib/client/protocol.ts";
import { Logger } from "../lib/control/log.ts";
import { DstmServer, type ServerConfig } from "../lib/server/server.ts";
import { bindUdp } from "../lib/sys/udp.ts";
import { type PgServer, postgresBin, startPostgres } from "./helpers/postgres.ts";
import { runDstm } from "./helpers/process.ts";

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

function serverConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    pools: [{ prefixes: ["198.18.0.0/28"], tep6: "2001:db8::1" }],
    leaseTime: 600,
    listen: { address: "::1", port: 0 },
    sourceCheck: false,
    admission: { maxLeasesPerPrefix: 0, ratePerSecond: 0 },
    log: new Logger({ sink: () => {} }),
    ...overrides,
  };
}

/** A UDP port on ::1 that never answers: a server that is down (or cut off). */
async function silent(): Promise<{ address: string; port: number }> {
  const endpoint = await bindUdp("::1", 0, () => {});
  cleanup.push(() => endpoint.close());
  return { address: "::1", port: endpoint.port };
}

async function live(overrides: Partial<ServerConfig> = {}) {
  const server = await DstmServer.start(serverConfig(overrides));
  cleanup.push(() => server.stop());
  return { server, at: { address: "::1", port: server.listening.port } };
}

/**
 * A live server must answer within the first try's wait, or the client fails over and the
 * test fails: 400 ms (then 800) leaves room for a loaded machine, where the answer crosses
 * the server's I/O thread twice. A silent server costs 1.2 s.
 */
const RETRY = { initialMs: 400, tries: 2 };

describe("failoverLeaseClient", () => {
  test("a silent first server: the exchange goes to the next, which is kept", async () => {
    const down = await silent();
    const up = await live();
    const failovers: string[] = [];
    const client = await failoverLeaseClient({
      servers: [down, up.at],
      host6: "::1",
      retry: RETRY,
      onFailover: (from, to) => failovers.push(`${from} -> ${to}`),
    });
    cleanup.push(() => client.close());
    const lease = await client.discover();
    expect(failovers).toEqual([`[::1]:${down.port} -> [::1]:${up.at.port}`]);
    const renewed = await client.request(lease.ipv4);
    expect(renewed.ipv4).toBe(lease.ipv4);
    expect(failovers.length).toBe(1); // stayed with the server that answered
  });

  test("a refusal is an answer: no failover", async () => {
    const up = await live();
    const failovers: string[] = [];
    const client = await failoverLeaseClient({
      servers: [up.at, await silent()],
      host6: "::1",
      retry: RETRY,
      onFailover: (from, to) => failovers.push(`${from} -> ${to}`),
    });
    cleanup.push(() => client.close());
    await expect(client.release(0xc6120009)).rejects.toBeInstanceOf(DstmRefusedError);
    expect(failovers).toEqual([]);
  });

  test("every server silent: the last timeout", async () => {
    const client = await failoverLeaseClient({
      servers: [await silent(), await silent()],
      host6: "::1",
      retry: { initialMs: 30, tries: 2 },
    });
    cleanup.push(() => client.close());
    await expect(client.discover()).rejects.toBeInstanceOf(DstmTimeoutError);
  });

  test("a refusal from the second server makes it current: the dead first one is not waited on again", async () => {
    const down = await silent();
    // A pool of one address, taken by another host: the live server answers POOL_EXHAUSTED.
    const up = await live({ pools: [{ prefixes: ["198.18.0.8/32"], tep6: "2001:db8::1" }] });
    const filler = await DstmTransport.open({ server: "::1", port: up.at.port });
    cleanup.push(() => filler.close());
    await new DstmClient(filler, "2001:db8::f1").discover();
    const failovers: string[] = [];
    const client = await failoverLeaseClient({
      servers: [down, up.at],
      host6: "::1",
      retry: RETRY,
      onFailover: (from, to) => failovers.push(`${from} -> ${to}`),
    });
    cleanup.push(() => client.close());
    await expect(client.discover()).rejects.toBeInstanceOf(DstmRefusedError);
    await expect(client.discover()).rejects.toBeInstanceOf(DstmRefusedError);
    await expect(client.discover()).rejects.toBeInstanceOf(DstmRefusedError);
    // Only the first exchange waited on the silent server.
    expect(failovers).toEqual([`[::1]:${down.port} -> [::1]:${up.at.port}`]);
  });

  test("an ICMPv6 port unreachable from a server is that server down: the next is tried at once", async () => {
    // A port nothing listens on: the kernel answers every datagram with port unreachable.
    const gone = await bindUdp("::1", 0, () => {});
    const closed = { address: "::1", port: gone.port };
    gone.close();
    const up = await live();
    const retransmitted: string[] = [];
    const client = await failoverLeaseClient({
      servers: [closed, up.at],
      host6: "::1",
      // Retransmissions far apart: waiting them out would take minutes.
      retry: { initialMs: 60_000, tries: 4 },
      onRetransmit: (server) => retransmitted.push(server),
    });
    cleanup.push(() => client.close());
    const lease = await client.discover();
    expect(lease.ipv4).toBeGreaterThan(0);
    expect(retransmitted).toEqual([]);
  }, 30_000);

  test("a REQUEST's withinMs bounds the exchange over every server (the lease's expiry)", async () => {
    const servers = [await silent(), await silent()];
    const client = await failoverLeaseClient({
      servers,
      host6: "::1",
      // Without the bound, one server alone would be waited on for minutes.
      retry: { initialMs: 60_000, tries: 4 },
    });
    cleanup.push(() => client.close());
    const error = await client.request(0xc6120009, { withinMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DstmTimeoutError);
    expect((error as Error).message, (error as Error).message).toMatch(
      /within 300 ms \(after \d+ tr/,
    );
  }, 30_000);

  test("no server is a RangeError", async () => {
    await expect(failoverLeaseClient({ servers: [], host6: "::1" })).rejects.toBeInstanceOf(
      RangeError,
    );
  });
});

let pg: Promise<PgServer> | undefined;
describe.skipIf(!postgresBin())("failover between servers sharing a database", () => {
  test("the host's server stops; the renewal goes to the other and keeps the address", async () => {
    pg ??= startPostgres();
    const postgres = await pg;
    cleanup.unshift(() => postgres.stop());
    const url = await postgres.createDatabase();
    const a = await live({ db: url });
    const b = await live({ db: url });
    const failovers: string[] = [];
    const client = await failoverLeaseClient({
      servers: [a.at, b.at],
      host6: "::1",
      retry: RETRY,
      onFailover: (from, to) => failovers.push(`${from} -> ${to}`),
    });
    cleanup.push(() => client.close());
    const lease = await client.discover();
    expect(failovers).toEqual([]);
    await a.server.stop();
    const renewed = await client.request(lease.ipv4);
    expect(failovers).toEqual([`[::1]:${a.at.port} -> [::1]:${b.at.port}`]);
    expect(renewed.ipv4).toBe(lease.ipv4);
    expect(b.server.engine.lookupHost("::1")?.ipv4).toBe(lease.ipv4);
  }, 60_000);
});

describe("dstm client --server A --server B", () => {
  test("every --server must be an IPv6 address; dhcp4o6 takes one", async () => {
    const bad = await runDstm(["client", "--server", "2001:db8::53", "--server", "nonsense"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--server: "nonsense" is not an IPv6 address');
    const two = await runDstm([
      "client",
      "--protocol",
      "dhcp4o6",
      "--server",
      "2001:db8::547",
      "--server",
      "2001:db8::548",
      "--tep",
      "2001:db8::1",
    ]);
    expect(two.code).not.toBe(0);
    expect(two.stderr).toContain("--protocol dhcp4o6 takes one --server");
  });
});
