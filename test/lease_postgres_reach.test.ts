/**
 * lib/lease/postgres_reach.ts: when Bun's SQL client says only "Failed to connect", the lease
 * store says why — a name that does not resolve, nothing listening on the port, a missing Unix
 * socket — and what to check. Against real sockets on loopback (no PostgreSQL needed).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LeaseStoreError } from "../lib/lease/lease.ts";
import { PostgresLeaseStore } from "../lib/lease/postgres.ts";
import { postgresTarget, whyUnreachable } from "../lib/lease/postgres_reach.ts";

/** A loopback port that was free a moment ago (bound, then closed). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe("postgresTarget", () => {
  test("host and port, IPv6 brackets, libpq's defaults, a Unix socket directory", () => {
    expect(postgresTarget("postgres://u@db.example:6432/x")).toEqual({
      host: "db.example",
      port: 6432,
    });
    expect(postgresTarget("postgres://u@[::1]/x")).toEqual({ host: "::1", port: 5432 });
    expect(postgresTarget("postgres:///x")).toEqual({ host: "localhost", port: 5432 });
    expect(postgresTarget("postgres://u@x/db?path=/run/pg")).toEqual({
      socket: "/run/pg/.s.PGSQL.5432",
    });
    expect(postgresTarget("not a url")).toBeNull();
  });
});

describe("whyUnreachable", () => {
  test("a closed port on loopback: nothing listens there, check listen_addresses and port", async () => {
    const port = await closedPort();
    const why = await whyUnreachable(`postgres://dstm@127.0.0.1:${port}/dstm`);
    expect(why).toContain(`nothing listens on 127.0.0.1:${port} (connection refused)`);
    expect(why).toContain("listen_addresses");
  });

  test("an open port: nothing to add (the failure was past the connection)", async () => {
    const srv = createServer((s) => s.destroy());
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    try {
      expect(await whyUnreachable(`postgres://dstm@127.0.0.1:${port}/dstm`)).toBe("");
    } finally {
      srv.close();
    }
  });

  test("a name that does not resolve (.invalid, RFC 6761 §6.4)", async () => {
    const why = await whyUnreachable("postgres://dstm@db.dstm-test.invalid/dstm");
    expect(why).toMatch(
      /^the host name db\.dstm-test\.invalid does not resolve \(E[A-Z_]+\): check the URL's host$/,
    );
  });

  test("a Unix socket directory without the socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dstm-pgreach-"));
    try {
      expect(await whyUnreachable(`postgres://dstm@x/dstm?path=${dir}`)).toBe(
        `no Unix socket ${dir}/.s.PGSQL.5432: is PostgreSQL running with unix_socket_directories there?`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("PostgresLeaseStore.open", () => {
  test("refused: the one-line error says nothing listens there, not only 'Failed to connect'", async () => {
    const port = await closedPort();
    const error = await PostgresLeaseStore.open(
      `postgres://dstm:secret@127.0.0.1:${port}/dstm`,
    ).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LeaseStoreError);
    const message = (error as Error).message;
    expect(message).toStartWith(
      `cannot open lease database postgres://dstm:***@127.0.0.1:${port}/dstm: `,
    );
    expect(message).toContain(`nothing listens on 127.0.0.1:${port} (connection refused)`);
    expect(message).not.toContain("secret");
    expect(message.split("\n").length).toBe(1);
  });
});
