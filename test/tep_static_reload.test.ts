/**
 * A TEP's static bindings (`--binding`, `--binding-file`) change on reload (SIGHUP): added
 * bindings are installed, removed ones withdrawn, the bindings the server manages untouched;
 * a new static binding on an address the server has bound refuses the whole reload.
 *
 * - staticChange() (lib/tep/static_reload.ts) on its own.
 * - As root in namespaces, a real `dstm tep` (and `dstm server`) with a host whose own kernel
 *   does 4over6 (seg6 `encap.red` out, End.DX4 in: what we did not write) pinging an IPv4
 *   peer through the TEP: no answer while its address has no binding, answers once a reload
 *   adds it to the binding file, none again once a reload removes it; the server's lease and
 *   its binding at the TEP stay throughout.
 *
 *   host 2001:db8:1::11 (IPv4 198.51.100.40, SID 2001:db8:1::10) ── tep ns: dstm tep
 *   2001:db8:1::1 / 192.0.2.1 + dstm server 2001:db8:1::53 ── web 192.0.2.80
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseIPv4 } from "../lib/net/addr.ts";
import { type Netns, vethPair } from "../lib/sys/netns.ts";
import { staticChange } from "../lib/tep/static_reload.ts";
import type { WireBinding } from "../lib/wire/dstm_types.ts";
import { type Daemon, daemonScope, metric, linesSince as since, until } from "./helpers/daemon.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { kernelHostBehindTep } from "./helpers/seg6_host.ts";
import { tepArgv } from "./helpers/tep_argv.ts";

const WHOLE = { offset: 0, psidLength: 0, psid: 0 };
const b = (ipv4: string, host6: string, portSet = WHOLE): WireBinding => ({
  host4: parseIPv4(ipv4)!,
  host6,
  portSet,
});

describe("staticChange()", () => {
  const a = b("198.51.100.40", "2001:db8:1::10");
  const c = b("198.51.100.41", "2001:db8:1::99");
  test("added and removed bindings, in configuration order; a changed host is both", () => {
    expect(staticChange([a], [a, c], [])).toEqual({ added: [c], removed: [] });
    expect(staticChange([a, c], [c], [])).toEqual({ added: [], removed: [a] });
    const moved = b("198.51.100.40", "2001:db8:1::12");
    expect(staticChange([a, c], [moved, c], [])).toEqual({ added: [moved], removed: [a] });
    expect(staticChange([a], [a], [b("198.51.100.1", "2001:db8:1::77")])).toEqual({
      added: [],
      removed: [],
    });
  });
  test("a new static address the server has bound is refused, naming it", () => {
    const managed = [b("198.51.100.1", "2001:db8:1::77")];
    expect(() => staticChange([a], [a, b("198.51.100.1", "2001:db8:1::5")], managed)).toThrow(
      /static binding 198\.51\.100\.1: the server has bound this address \(to 2001:db8:1::77\)/,
    );
  });
});

const skip = netnsSkipReason({ tun: true }) ?? (Bun.which("ping") ? null : "needs ping");
announceSkip("tep_static_reload", skip);

describe.skipIf(skip !== null)("dstm tep: static bindings on reload, with a real TEP", () => {
  const scope = daemonScope("dstm-statics-", { timeoutMs: 180_000, stderrOnFailure: true });
  const { file, netns } = scope;
  let host: Netns;
  let tepNs: Netns;
  let tep: Daemon;
  let server: Daemon;
  const statics = (...lines: string[]) =>
    writeFileSync(file("statics.txt"), `# test bindings\n${lines.join("\n")}\n`);
  const dstm = (args: readonly string[]) => scope.dstm(tepNs, args);
  const answers = () =>
    host.exec(["ping", "-c", "1", "-W", "1", "-I", "198.51.100.40", "192.0.2.80"]).code === 0;
  const stats = () => {
    const r = tepNs.exec(
      [BUN, join(ROOT, "mod.ts"), "tep", "stats", "--json", "--control", file("tep.sock")],
      {
        cwd: ROOT,
      },
    );
    return JSON.parse(r.stdout) as {
      bindings: number;
      serverBindings: number;
      staticBindings: number;
    };
  };
  const tepMetrics = async () =>
    (await fetch("http://localhost/metrics", { unix: file("tep.sock") })).text();

  beforeAll(async () => {
    host = netns("dstms-");
    tepNs = netns("dstms-");
    const web = netns("dstms-");
    vethPair(host, "h0", tepNs, "t0");
    vethPair(tepNs, "t1", web, "w0");
    host.addAddress("h0", "2001:db8:1::11/64");
    for (const a of ["2001:db8:1::1/64", "2001:db8:1::53/64"]) tepNs.addAddress("t0", a);
    tepNs.addAddress("t1", "192.0.2.1/24");
    tepNs.up("lo");
    web.addAddress("w0", "192.0.2.80/24");
    web.addRoute("default", "via", "192.0.2.1");
    // The host's kernel: IPv4 198.51.100.40 out in seg6 encap.red from 2001:db8:1::10, in by End.DX4.
    kernelHostBehindTep(host, tepNs, "198.51.100.40");
    server = dstm([
      "server",
      "--listen",
      "[2001:db8:1::53]:4607",
      "--pool",
      "198.51.100.0/28",
      "--tep",
      "2001:db8:1::1,192.0.2.1",
      "--db",
      "memory",
      "--no-source-check",
      "--no-control",
    ]);
    await server.waitFor(/ start /);
    statics("198.51.100.41  2001:db8:1::99");
    tep = dstm([
      ...tepArgv(),
      "--binding-file",
      file("statics.txt"),
      "--control",
      file("tep.sock"),
    ]);
    await tep.waitFor(/ tep-start /);
    await server.waitFor(/ tep-connected /);
  }, 60_000);

  test("added: installed (the host's pings answered); removed: withdrawn; the server's binding kept; a conflict refused", async () => {
    // A lease from the server: its binding is the server's, not static.
    const get = tepNs.exec(
      [
        BUN,
        join(ROOT, "mod.ts"),
        "lease",
        "get",
        "--server",
        "2001:db8:1::53",
        "--host6",
        "2001:db8:1::77",
        "--json",
      ],
      { cwd: ROOT, timeoutMs: 30_000 },
    );
    expect(get.stderr).toBe("");
    expect(get.code).toBe(0);
    const leased = (JSON.parse(get.stdout) as { hostIPv4: string }).hostIPv4;
    expect(await until(() => stats().serverBindings === 1, 20_000)).toBe(true);
    const mark = tep.lines.length;
    const serverMark = server.lines.length;
    expect(stats()).toMatchObject({ staticBindings: 1, serverBindings: 1 });

    // No binding for the host's 198.51.100.40 yet: the TEP drops what it sends.
    expect(answers()).toBe(false);

    // Added by a reload: installed, the host's pings are answered.
    statics("198.51.100.41  2001:db8:1::99", "198.51.100.40  2001:db8:1::10");
    tep.proc.kill("SIGHUP");
    expect(
      await tep.waitFor(
        / static-bindings added=1 removed=0 added-first="198\.51\.100\.40=2001:db8:1::10"$/,
      ),
    ).toBeTruthy();
    expect(await tep.waitFor(/ reload reason=SIGHUP .*changed=binding$/)).toBeTruthy();
    expect(await until(answers, 20_000)).toBe(true);
    expect(stats()).toMatchObject({ staticBindings: 2, serverBindings: 1, bindings: 3 });

    // A static binding on the address the server leased: the whole reload is refused.
    statics(
      "198.51.100.41  2001:db8:1::99",
      "198.51.100.40  2001:db8:1::10",
      `${leased}  2001:db8:1::5`,
    );
    tep.proc.kill("SIGHUP");
    const refused = await tep.waitFor(/WARN reload-refused reason=SIGHUP/);
    expect(refused).toContain(`static binding ${leased}: the server has bound this address`);
    expect(stats()).toMatchObject({ staticBindings: 2, serverBindings: 1, bindings: 3 });
    expect(answers()).toBe(true);

    // Removed by a reload: withdrawn, the host's pings go unanswered again.
    statics("198.51.100.41  2001:db8:1::99");
    tep.proc.kill("SIGHUP");
    expect(
      await tep.waitFor(
        / static-bindings added=0 removed=1 removed-first="198\.51\.100\.40=2001:db8:1::10"$/,
      ),
    ).toBeTruthy();
    expect(await until(() => !answers(), 20_000)).toBe(true);
    expect(stats()).toMatchObject({ staticBindings: 1, serverBindings: 1, bindings: 2 });
    const text = await tepMetrics();
    expect(
      metric(text, "dstm_tep_packets_total", {
        direction: "decap",
        result: "drop",
        reason: "no-binding",
      }),
    ).toBeGreaterThan(0);
    expect(metric(text, "dstm_reloads_total", { result: "applied" })).toBe(2);
    expect(metric(text, "dstm_reloads_total", { result: "refused" })).toBe(1);

    // The server's binding was never touched: no UNBIND, no snapshot, no drift the server saw.
    expect(since(tep, mark, new RegExp(` unbind ipv4=${leased} `))).toEqual([]);
    expect(since(tep, mark, / snapshot /)).toEqual([]);
    expect(since(server, serverMark, /snapshot|tep-reject|tep-disconnected/)).toEqual([]);
  }, 120_000);
});
