/**
 * A client without `--key` facing a server that requires signed requests (NAK NOT_AUTHORISED
 * "authentication failed: missing") keeps asking with its doubling back-off (the NAK is
 * unsigned: anyone on the link could forge it, so giving up would hand them the client), but
 * no longer in near silence: the refusal is said at error level naming `--key`, once for a
 * run of the same refusal; `dstm client status` shows `acquiring not-authorised since …`;
 * /metrics has `dstm_client_acquire_not_authorised 1` and the failed tries by reason. Before,
 * it was one warning and then debug lines, and neither the status nor a metric said why
 * the client had no lease.
 *
 * A real server (with `--key`) and a real client (without) in a network namespace made here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";
import { waitUntil } from "./helpers/wait.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("client without --key", skip);

describe.skipIf(skip !== null)("a client without --key against a server that requires one", () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), "dstm-n7-auth-"));
  const spawned: Bun.Subprocess<"ignore", "pipe", "pipe">[] = [];
  const clientLines: string[] = [];

  beforeAll(async () => {
    ns = createNetns("dstmt-n7a-");
    ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
    ns.up("v0");
    ns.up("v1");
    ns.addAddress("v0", "2001:db8:7::53/64");
    ns.addAddress("v1", "2001:db8:7::10/64");
    const key = join(dir, "key");
    expect((await runDstm(["keygen", key])).code).toBe(0);
    const env = { DSTM_RUNTIME_DIR: dir };
    const server = ns.spawn(
      [
        ...[BUN, join(ROOT, "mod.ts"), "server", "--pool", "192.0.2.0/28"],
        ...["--tep", "2001:db8:7::1", "--db", "memory", "--key", key],
        ...["--listen", "[2001:db8:7::53]:4607", "--control", join(dir, "server.sock")],
      ],
      { cwd: ROOT, env, timeoutMs: 120_000 },
    );
    spawned.push(server);
    const client = ns.spawn(
      [
        ...[BUN, join(ROOT, "mod.ts"), "client", "--server", "2001:db8:7::53"],
        ...["--host6", "2001:db8:7::10", "--ifname", "n7dti0"],
        ...["--control", join(dir, "client.sock"), "--metrics", "[2001:db8:7::10]:9606"],
      ],
      { cwd: ROOT, env, timeoutMs: 120_000 },
    );
    spawned.push(client);
    (async () => {
      const decoder = new TextDecoder();
      let rest = "";
      for await (const chunk of client.stdout) {
        rest += decoder.decode(chunk, { stream: true });
        const lines = rest.split("\n");
        rest = lines.pop() ?? "";
        clientLines.push(...lines);
      }
    })();
  });

  afterAll(async () => {
    for (const p of spawned) p.kill("SIGKILL");
    await Promise.all(spawned.map((p) => p.exited));
    ns?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  function status(): { code: number; stdout: string } {
    const control = ["--control", join(dir, "client.sock")];
    const r = ns.exec([BUN, join(ROOT, "mod.ts"), "client", "status", ...control], {
      cwd: ROOT,
      env: { DSTM_RUNTIME_DIR: dir },
      timeoutMs: 30_000,
    });
    return { code: r.code, stdout: r.stdout };
  }

  test("it keeps asking; status, metrics and an error-level line say not-authorised and --key", async () => {
    // Three tries refused (1 s, then 2 s of back-off between them).
    let text = "";
    await waitUntil(
      () => {
        const r = status();
        text = r.stdout;
        const tries = /acquiring not-authorised since \S+ \((\d+) tries/.exec(text);
        return r.code === 0 && tries !== null && Number(tries[1]) >= 3;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: "three refused tries in the status" },
    );
    expect(text).toMatch(/^state {5}acquiring \(always-on\)$/m);
    expect(text).toContain("give --key FILE with the server's key");
    // Still running: an unsigned refusal does not make it give up.
    expect(spawned[1]!.exitCode).toBeNull();

    const errors = clientLines.filter((l) => / ERROR refused /.test(l));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("NOT_AUTHORISED");
    expect(errors[0]).toContain("--key");
    expect(clientLines.some((l) => / WARN refused /.test(l))).toBe(false);

    const scrape = ns.exec(
      [
        BUN,
        "-e",
        'process.stdout.write(await (await fetch("http://[2001:db8:7::10]:9606/metrics")).text())',
      ],
      { timeoutMs: 30_000 },
    );
    expect(scrape.stdout).toMatch(/^dstm_client_acquire_not_authorised 1$/m);
    const failures = /^dstm_client_acquire_failures_total\{reason="not-authorised"\} (\d+)$/m.exec(
      scrape.stdout,
    );
    expect(Number(failures?.[1])).toBeGreaterThanOrEqual(3);
    expect(scrape.stdout).toMatch(
      /^dstm_client_acquire_failures_total\{reason="server-unreachable"\} 0$/m,
    );
    expect(scrape.stdout).toMatch(/^dstm_client_lease_bound 0$/m);
  });
});
