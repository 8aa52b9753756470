/**
 * What a newcomer trying the README's commands met: a missing or wrong file named by its errno
 * (`ENOENT`, `EISDIR`) instead of in words, `lease ls` filter flags refused by the server under
 * its query parameter's name (`prefix: … is neither an IPv4 nor an IPv6 prefix` for a prefix
 * with host bits), `client status --control PATH` pointing at `--ifname`, and a `--check` that
 * did not say `--kernel-encap` was on. Each test runs the real command (`bun mod.ts`); nothing
 * is started and no server is asked (the lease filters are checked before the socket is used).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readErrorText } from "../lib/config/errors.ts";
import { counterSeries } from "../lib/tunnel/counter_metrics.ts";
import { announceSkip, netnsSkipReason, withNetns } from "./helpers/netns.ts";
import { BUN, ROOT, runDstm } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-newcomer7-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const nobody = join(dir, "nobody.sock");
const missing = join(dir, "missing.toml");

describe("a file that cannot be read is said in words, exit 2", () => {
  test("--config FILE that does not exist: no such file (was ENOENT)", async () => {
    const r = await runDstm(["client", "--check", "--server", "2001:db8::53", "--config", missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`dstm: cannot read config file ${missing}: no such file\n`);
  });

  test("--config DIRECTORY: it is a directory (was EISDIR), for server and tep too", async () => {
    const server = await runDstm(["server", "--check", "--config", dir]);
    expect(server.code).toBe(2);
    expect(server.stderr).toBe(`dstm: cannot read config file ${dir}: it is a directory\n`);
    const tep = await runDstm(["tep", "--check", "--config", dir]);
    expect(tep.code).toBe(2);
    expect(tep.stderr).toBe(`dstm: cannot read config file ${dir}: it is a directory\n`);
  });

  test("tep check: a missing scenario or --pcap-in: no such file (was ENOENT)", async () => {
    const scenario = join(dir, "none.json");
    const r = await runDstm(["tep", "check", scenario]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`dstm: cannot read scenario ${scenario}: no such file\n`);
    // The repository's example scenario, its packets from a pcap that is not there.
    const json = join(ROOT, "test", "fixtures", "tep_check", "tep.json");
    const pcap = join(dir, "none.pcap");
    const p = await runDstm(["tep", "check", json, "--pcap-in", pcap]);
    expect(p.code).toBe(2);
    expect(p.stderr).toBe(`dstm: --pcap-in: cannot read ${pcap}: no such file\n`);
  });

  test("readErrorText: the errno in words, anything else as it is", () => {
    const err = (code: string) => Object.assign(new Error(`${code}: x`), { code });
    expect(readErrorText(err("ENOENT"))).toBe("no such file");
    expect(readErrorText(err("EISDIR"))).toBe("it is a directory");
    expect(readErrorText(err("EACCES"))).toBe("permission denied");
    expect(readErrorText(err("ENOTDIR"))).toBe("a part of the path is not a directory");
    expect(readErrorText(err("EIO"))).toBe("EIO");
    expect(readErrorText(new Error("odd"))).toBe("odd");
  });
});

describe("lease ls names the flag that is wrong, before asking any server", () => {
  // The control socket does not exist: a flag error must come first (exit 2, not 1).
  const ls = (...args: string[]) => runDstm(["lease", "ls", "--control", nobody, ...args]);

  test("--prefix with host bits: which prefix was meant, as --route and --pool say", async () => {
    const r = await ls("--prefix", "198.51.100.1/24");
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "dstm: --prefix: 198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?\n",
    );
    // The same with --db (the database is never opened).
    const db = await runDstm([
      "lease",
      "ls",
      "--db",
      join(dir, "no.db"),
      "--prefix",
      "198.51.100.1/24",
    ]);
    expect(db.code).toBe(2);
    expect(db.stderr).toContain("did you mean 198.51.100.0/24?");
  });

  test("--prefix that is no prefix, --host, --address and --after name their flag", async () => {
    const cases: [string[], string][] = [
      [
        ["--prefix", "2001:db8::/129"],
        'dstm: --prefix: "2001:db8::/129" is neither an IPv4 nor an IPv6 prefix (e.g. 192.0.2.0/28, 2001:db8:1::/48)\n',
      ],
      [
        ["--prefix", "198.51.100.0/33"],
        'dstm: --prefix: "198.51.100.0/33" is neither an IPv4 nor an IPv6 prefix (e.g. 192.0.2.0/28, 2001:db8:1::/48)\n',
      ],
      [
        ["--host", "198.51.100.1"],
        'dstm: --host: "198.51.100.1" is not an IPv6 address (a host\'s address)\n',
      ],
      [
        ["--address", "198.51.100.300"],
        'dstm: --address: "198.51.100.300" is not an IPv4 address\n',
      ],
      [["--after", "foo"], 'dstm: --after: "foo" is not a cursor (IPV4:PSID)\n'],
    ];
    for (const [args, stderr] of cases) {
      const r = await ls(...args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr });
    }
  });

  test("good filters pass the check and reach the socket (exit 1: nothing answers)", async () => {
    for (const args of [
      ["--prefix", "198.51.100.0/24"],
      ["--prefix", "2001:db8:1::/64"],
      ["--host", "2001:db8:1::10", "--address", "198.51.100.1", "--after", "198.51.100.1:0"],
    ]) {
      const r = await ls(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(r.stderr).toContain(`no dstm server answers on ${nobody}`);
    }
  });
});

describe("client", () => {
  test("status --control PATH: the hint is about that path, not --ifname dti0", async () => {
    const r = await runDstm(["client", "status", "--control", nobody]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `dstm: no dstm client answers on ${nobody}; is it running? (use --ifname NAME or --control PATH)\n`,
    );
    const byName = await runDstm(["client", "status", "--ifname", "dti7"]);
    expect(byName.code).toBe(1);
    expect(byName.stderr).toContain("is it running (for --ifname dti7)?");
  });

  test("--check says when --kernel-encap is on (flag or TOML), and not when it is off", async () => {
    const flag = await runDstm(["client", "--check", "--server", "2001:db8::53", "--kernel-encap"]);
    expect(flag.code).toBe(0);
    expect(flag.stdout).toBe(
      "dstm client: configuration OK (server 2001:db8::53, dstm, dti dti0: tun, encapsulation by the kernel (--kernel-encap))\n",
    );
    mkdirSync(join(dir, "conf"), { recursive: true });
    const toml = join(dir, "conf", "client.toml");
    writeFileSync(toml, 'server = "2001:db8::53"\nkernel-encap = true\n');
    const file = await runDstm(["client", "--check", "--config", toml]);
    expect(file.code).toBe(0);
    expect(file.stdout).toContain("dti dti0: tun, encapsulation by the kernel (--kernel-encap))");
    const off = await runDstm(["client", "--check", "--server", "2001:db8::53"]);
    expect(off.stdout).toBe(
      "dstm client: configuration OK (server 2001:db8::53, dstm, dti dti0: tun)\n",
    );
  });
});

describe("the docs name the client's metric series as /metrics shows them", () => {
  test("every dstm_client_{packets,bytes,events}_total{…} and {event=…} in the docs is a real series", async () => {
    const series = new Set(
      counterSeries("client").map(
        (s) =>
          `${s.metric}{${Object.entries(s.labels)
            .map(([k, v]) => `${k}="${v}"`)
            .join(",")}}`,
      ),
    );
    const named: string[] = [];
    for (const doc of ["docs/metrics.md", "docs/kernel-dti.md"]) {
      // Backquoted, a line break inside the braces joined (the docs wrap at 96 columns).
      const text = (await Bun.file(join(ROOT, doc)).text()).replace(/,\n\s*/g, ",");
      for (const m of text.matchAll(
        /`(dstm_client_(?:packets|bytes|events)_total)?\{([^}`]*)\}`/g,
      )) {
        if (m[1] === undefined && !m[2]?.startsWith("event=")) continue;
        const metric = m[1] ?? "dstm_client_events_total";
        named.push(`${metric}{${m[2]}}`);
      }
    }
    // What --kernel-encap counts, named as /metrics has it (docs/kernel-dti.md said
    // `client-kernel-encap`, the status JSON's name, "in the metrics").
    expect(named).toContain('dstm_client_events_total{event="kernel-encap"}');
    expect(named).toContain('dstm_client_events_total{event="kernel-encap-segments"}');
    // A byte count is a bytes metric of its own (test/newcomer7_byte_metrics.test.ts).
    expect(named).not.toContain('dstm_client_events_total{event="kernel-encap-bytes"}');
    expect(named).toContain('dstm_client_packets_total{direction="encap",result="forward"}');
    expect(named.filter((n) => !series.has(n))).toEqual([]);
  });
});

describe("client --host6 that is no address of this host (as root, in a namespace)", () => {
  const skip = netnsSkipReason({ tun: true });
  announceSkip("client --host6", skip);
  test.skipIf(skip !== null)(
    "client and ping4 name --host6 (they have no --listen), exit 2 as for a listen address (was 1), nothing left behind",
    async () => {
      await withNetns(
        (ns) => {
          ns.up("lo");
          ns.up("v0");
          ns.up("v1");
          ns.addAddress("v0", "2001:db8:7::10/64");
          const run = join(dir, "run-host6");
          mkdirSync(run, { recursive: true });
          const r = ns.exec(
            [
              BUN,
              join(ROOT, "mod.ts"),
              "client",
              "--server",
              "2001:db8:7::53",
              "--host6",
              "2001:db8:7::99",
            ],
            { cwd: ROOT, timeoutMs: 30_000, env: { DSTM_RUNTIME_DIR: run } },
          );
          expect(r.code).toBe(2);
          expect(r.stderr).toBe(
            "dstm: --host6 2001:db8:7::99: no interface has this address: 2001:db8:7::99 is not one of this host's (see ip address); give one of them, or leave --host6 out to send from the source address towards the server\n",
          );
          // No DTI was made.
          expect(ns.ip("-br", "link")).not.toContain("dti0");
          // ping4 the same (it binds --host6 to ask for its lease).
          const ping = ns.exec(
            [
              BUN,
              join(ROOT, "mod.ts"),
              "ping4",
              "192.0.2.80",
              "--server",
              "2001:db8:7::53",
              "--host6",
              "2001:db8:7::99",
              "-c",
              "1",
            ],
            { cwd: ROOT, timeoutMs: 30_000, env: { DSTM_RUNTIME_DIR: run } },
          );
          expect([ping.code, ping.stderr]).toEqual([
            2,
            "dstm: --host6 2001:db8:7::99: no interface of this host has this address (ping4 sends from it); check --host6 and that IPv6 is configured\n",
          ]);
        },
        { veth: true },
      );
    },
  );
});

describe("keygen and --exclude", () => {
  test("keygen into a directory that does not exist makes it (0700; the README's /etc/dstm on a fresh machine); onto a directory: said so, exit 2", async () => {
    const nowhere = join(dir, "no-such-dir", "sub", "key");
    const r = await runDstm(["keygen", nowhere]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    for (const d of [join(dir, "no-such-dir"), join(dir, "no-such-dir", "sub")])
      expect(statSync(d).mode & 0o777).toBe(0o700);
    expect(statSync(nowhere).mode & 0o777).toBe(0o600);
    // A part of the path that is a file cannot become a directory: said so.
    const underFile = join(nowhere, "key");
    const f = await runDstm(["keygen", underFile]);
    expect([f.code, f.stderr]).toEqual([
      2,
      `dstm: cannot create key file ${underFile}: a part of the path is not a directory\n`,
    ]);
    // Not "remove it first" for a directory.
    const d = await runDstm(["keygen", dir]);
    expect([d.code, d.stderr]).toEqual([
      2,
      `dstm: ${dir} is a directory; give the key file's path, e.g. ${join(dir, "key")}\n`,
    ]);
    // An existing key file is still refused as before.
    const file = join(dir, "existing.key");
    writeFileSync(file, "x", { mode: 0o600 });
    const e = await runDstm(["keygen", file]);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain(`${file} exists; remove it first`);
  });

  test("--exclude with host bits: which prefix was meant, as --pool says (flag and TOML)", async () => {
    const base = ["server", "--check", "--db", "memory", "--no-control"];
    const pool = ["--pool", "198.51.100.0/24", "--tep", "2001:db8:1::1"];
    const r = await runDstm([...base, ...pool, "--exclude", "198.51.100.1/24"]);
    expect([r.code, r.stderr]).toEqual([
      2,
      "dstm: --exclude: 198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?\n",
    ]);
    const bad = await runDstm([...base, ...pool, "--exclude", "198.51.100.1/40"]);
    expect([bad.code, bad.stderr]).toEqual([
      2,
      'dstm: --exclude: "198.51.100.1/40" is not an IPv4 address or CIDR\n',
    ]);
    const toml = join(dir, "exclude.toml");
    writeFileSync(
      toml,
      'exclude = ["198.51.100.1/24"]\n[[pool]]\nprefixes = ["198.51.100.0/24"]\n',
    );
    const file = await runDstm([...base, "--tep", "2001:db8:1::1", "--config", toml]);
    expect([file.code, file.stderr]).toEqual([
      2,
      `dstm: ${toml}:1:1: exclude: 198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?\n`,
    ]);
  });
});

test("client --help shows --dti kernel and --kernel-encap examples (as the README does), and they pass --check", async () => {
  const help = (await runDstm(["client", "--help"])).stdout;
  const examples = help
    .split("\n")
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter((l) => /^dstm client --server \S+ (--dti kernel|--kernel-encap)$/.test(l));
  expect(examples).toHaveLength(2);
  for (const example of examples) {
    const r = await runDstm([...example.split(/\s+/).slice(1), "--check"]);
    expect({ example, code: r.code, stderr: r.stderr }).toEqual({ example, code: 0, stderr: "" });
  }
});

describe("--route given twice is refused at --check (a start failed with EEXIST)", () => {
  test("client: flag and TOML; exit 2 naming the route (it looped on 'server-unreachable')", async () => {
    const r = await runDstm([
      "client",
      "--check",
      "--server",
      "2001:db8::53",
      "--route",
      "203.0.113.0/24",
      "--route",
      "203.0.113.0/24",
    ]);
    expect([r.code, r.stderr]).toEqual([2, "dstm: --route: 203.0.113.0/24 is given twice\n"]);
    const toml = join(dir, "routes.toml");
    writeFileSync(toml, 'server = "2001:db8::53"\nroute = ["203.0.113.0/24", "203.0.113.0/24"]\n');
    const file = await runDstm(["client", "--check", "--config", toml]);
    expect([file.code, file.stderr]).toEqual([
      2,
      `dstm: ${toml}:2:1: route: 203.0.113.0/24 is given twice\n`,
    ]);
    // Overlapping but different prefixes are two routes, as before.
    const two = await runDstm([
      "client",
      "--check",
      "--server",
      "2001:db8::53",
      "--route",
      "203.0.113.0/24",
      "--route",
      "203.0.113.0/25",
    ]);
    expect(two.code).toBe(0);
  });

  test("tep: exit 2 naming the route (it exited 1 with 'route add …: EEXIST' after --check said OK)", async () => {
    const r = await runDstm([
      "tep",
      "--check",
      "--ipv6",
      "2001:db8:1::1",
      "--ipv4",
      "192.0.2.1",
      "--server",
      "2001:db8:1::53",
      "--insecure-control",
      "--route",
      "198.51.100.0/24",
      "--route",
      "198.51.100.0/24",
    ]);
    expect([r.code, r.stderr]).toEqual([2, "dstm: --route: 198.51.100.0/24 is given twice\n"]);
  });
});

test("docs/kernel-dti.md quotes the status's kernel line as cli/client_status.ts prints it", async () => {
  const doc = await Bun.file(join(ROOT, "docs", "kernel-dti.md")).text();
  const source = await Bun.file(join(ROOT, "cli", "client_status.ts")).text();
  const quoted = /^kernel {4}\d.*$/m.exec(doc)?.[0];
  const template = /`(kernel {4}\$\{.*)`,$/m.exec(source)?.[1];
  expect(quoted).toBeDefined();
  expect(template).toBeDefined();
  expect(quoted!.replace(/\d+/g, "N")).toBe(template!.replace(/\$\{[^}]*\}/g, "N"));
});
