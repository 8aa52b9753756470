/**
 * Configurations that make no sense are refused with exit code 2 and one line (issue 8 item
 * 10), and secrets stay private (item 11): key files, `dstm keygen`, control sockets.
 * Every command runs as a real process inside a namespace made for this file, so one that
 * is wrongly accepted touches nothing of the machine's (and is killed after a deadline).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { parseKeyFile } from "../lib/wire/auth.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { AS_NOBODY, type NobodyKit, nobodyKit } from "./helpers/nobody.ts";
import { BUN, ROOT, spawnDstm } from "./helpers/process.ts";

const skip = netnsSkipReason();
announceSkip("cli_refusals", skip);

const dir = mkdtempSync(join(tmpdir(), "dstm-refuse-"));
chmodSync(dir, 0o755); // so that only a socket's own mode keeps another user out
let ns: Netns;

beforeAll(() => {
  if (!skip) ns = createNetns("dstmt-");
});
/** What nobody runs (see helpers/nobody.ts), or why it cannot. */
const nobody: NobodyKit | string = skip ? skip : nobodyKit();

afterAll(() => {
  if (typeof nobody !== "string") nobody.remove();
  ns?.delete();
  rmSync(dir, { recursive: true, force: true });
});

/** `dstm ...args` inside the namespace; a command still running after 15 s is killed (code -1). */
function dstm(args: readonly string[], env: Record<string, string> = {}) {
  return ns.exec([BUN, join(ROOT, "mod.ts"), ...args], { cwd: ROOT, timeoutMs: 15_000, env });
}

function expectRefused(r: { code: number; stderr: string }, message: RegExp, code = 2): void {
  expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code });
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).toStartWith("dstm: ");
  expect(r.stderr).toMatch(message);
}

const server = ["server", "--db", "memory", "--no-control", "--listen", "[::1]:0"];
const pool = ["--pool", "198.51.100.0/24"];
const tep = ["--tep", "2001:db8::1,192.0.2.1"];
const tepNode = [
  "tep",
  "--ipv6",
  "2001:db8::1",
  "--ipv4",
  "192.0.2.1",
  "--route",
  "198.51.100.0/24",
];

const refusals: [string, string[], RegExp][] = [
  // client: a scoped (link-local) native server would bind the lease to a link-local address
  [
    "client --server fe80::53%lo",
    ["client", "--server", "fe80::53%lo", "--check"],
    /--server: "fe80::53%lo" is scoped to a link; .*global address \(or use --protocol dhcp4o6/,
  ],
  // server: the TEP handed to hosts
  [
    "server --tep ff02::1",
    [...server, ...pool, "--tep", "ff02::1"],
    /--tep: ff02::1 is a multicast address/,
  ],
  ["server --tep ::", [...server, ...pool, "--tep", "::"], /--tep: :: is the unspecified address/],
  ["server --tep ::1", [...server, ...pool, "--tep", "::1"], /--tep: ::1 is a loopback address/],
  [
    "server --tep fe80::1",
    [...server, ...pool, "--tep", "fe80::1"],
    /--tep: fe80::1 is a link-local/,
  ],
  [
    "server --tep ::ffff:192.0.2.1",
    [...server, ...pool, "--tep", "::ffff:192.0.2.1"],
    /IPv4-mapped/,
  ],
  [
    "server --tep V6,127.0.0.1",
    [...server, ...pool, "--tep", "2001:db8::1,127.0.0.1"],
    /--tep: 127\.0\.0\.1 is a loopback/,
  ],
  [
    "server --tep V6,224.0.0.1",
    [...server, ...pool, "--tep", "2001:db8::1,224.0.0.1"],
    /multicast/,
  ],
  // server: pools that are not unicast-routable
  [
    "pool in 224.0.0.0/4",
    [...server, ...tep, "--pool", "224.0.0.0/24"],
    /pool: 224\.0\.0\.0\/24 reaches into 224\.0\.0\.0\/4/,
  ],
  [
    "pool in 127.0.0.0/8",
    [...server, ...tep, "--pool", "127.0.0.0/24"],
    /reaches into 127\.0\.0\.0\/8/,
  ],
  ["pool in 0.0.0.0/8", [...server, ...tep, "--pool", "0.0.0.0/24"], /reaches into 0\.0\.0\.0\/8/],
  [
    "pool in 240.0.0.0/4",
    [...server, ...tep, "--pool", "240.0.0.0/24"],
    /reaches into 240\.0\.0\.0\/4/,
  ],
  [
    "pool in 169.254.0.0/16",
    [...server, ...tep, "--pool", "169.254.0.0/16"],
    /reaches into 169\.254\.0\.0\/16/,
  ],
  [
    "pool covering 224.0.0.0/4",
    [...server, ...tep, "--pool", "192.0.0.0/2"],
    /reaches into 224\.0\.0\.0\/4/,
  ],
  ["second pool bad", [...server, ...tep, ...pool, "--pool", "127.0.0.0/30"], /127\.0\.0\.0\/30/],
  [
    "server --listen multicast",
    [...server, ...pool, ...tep, "--listen", "[ff02::1]:4607"],
    /--listen: ff02::1 is a multicast/,
  ],
  [
    "server --dhcp4o6-server-id 224.0.0.1",
    [...server, ...pool, ...tep, "--dhcp4o6", "--dhcp4o6-server-id", "224.0.0.1"],
    /--dhcp4o6-server-id: 224\.0\.0\.1 is a multicast/,
  ],
  // tep
  ["tep --server ff02::1", [...tepNode, "--server", "ff02::1"], /--server: ff02::1 is a multicast/],
  ["tep --server ::", [...tepNode, "--server", "::"], /--server: :: is the unspecified/],
  [
    "tep --ipv6 ff02::1",
    ["tep", "--ipv6", "ff02::1", "--ipv4", "192.0.2.1", "--server", "2001:db8::53"],
    /--ipv6: ff02::1 is a multicast/,
  ],
  [
    "tep --ipv4 127.0.0.1",
    ["tep", "--ipv6", "2001:db8::1", "--ipv4", "127.0.0.1", "--server", "2001:db8::53"],
    /--ipv4: 127\.0\.0\.1 is a loopback/,
  ],
  [
    "tep --ipv4 0.0.0.0",
    ["tep", "--ipv6", "2001:db8::1", "--ipv4", "0.0.0.0", "--server", "2001:db8::53"],
    /--ipv4: 0\.0\.0\.0 is the unspecified/,
  ],
  // client
  [
    "client --server ff02::1",
    ["client", "--server", "ff02::1"],
    /--server: ff02::1 is a multicast/,
  ],
  ["client --server ::", ["client", "--server", "::"], /--server: :: is the unspecified/],
  [
    "client --tep ff02::1",
    ["client", "--server", "2001:db8::53", "--tep", "ff02::1"],
    /--tep: ff02::1 is a multicast/,
  ],
  [
    "client --host6 ::1",
    ["client", "--server", "2001:db8::53", "--host6", "::1"],
    /--host6: ::1 is a loopback/,
  ],
  [
    "client --host6 fe80::a",
    ["client", "--server", "2001:db8::53", "--host6", "fe80::a"],
    /--host6: fe80::a is a link-local/,
  ],
  [
    "client dhcp4o6 --tep4 0.0.0.0",
    [
      "client",
      "--protocol",
      "dhcp4o6",
      "--server",
      "2001:db8::547",
      "--tep",
      "2001:db8::1",
      "--tep4",
      "0.0.0.0",
    ],
    /--tep4: 0\.0\.0\.0 is the unspecified/,
  ],
  [
    "client dhcp4o6 --server ff02::2",
    ["client", "--protocol", "dhcp4o6", "--server", "ff02::2%lo", "--tep", "2001:db8::1"],
    /--server: ff02::2 is a multicast/,
  ],
  // ff02::1:2 is sent on one interface: one this host has (else no answer, ever).
  [
    "client dhcp4o6 --server ff02::1:2%nosuch0 --check",
    [
      "client",
      "--protocol",
      "dhcp4o6",
      "--server",
      "ff02::1:2%nosuch0",
      "--tep",
      "2001:db8::1",
      "--check",
    ],
    /--server ff02::1:2%nosuch0: no interface nosuch0 on this host \(see ip link\)/,
  ],
  // lease get / release
  [
    "lease get --server ff02::1",
    ["lease", "get", "--server", "ff02::1"],
    /--server: ff02::1 is a multicast/,
  ],
  [
    "lease get --host6 ::",
    ["lease", "get", "--server", "::1", "--host6", "::"],
    /--host6: :: is the unspecified/,
  ],
  [
    "lease release --ipv4 224.0.0.1",
    ["lease", "release", "--server", "::1", "--ipv4", "224.0.0.1"],
    /--ipv4: 224\.0\.0\.1 is a multicast/,
  ],
  // ping4
  [
    "ping4 --server ff02::1",
    ["ping4", "192.0.2.80", "--server", "ff02::1", "-c", "1"],
    /--server: ff02::1 is a multicast/,
  ],
  [
    "ping4 --host6 ::",
    ["ping4", "192.0.2.80", "--server", "2001:db8::53", "--host6", "::", "-c", "1"],
    /--host6: :: is the unspecified/,
  ],
  [
    "ping4 --tep ff02::1",
    ["ping4", "192.0.2.80", "--server", "2001:db8::53", "--tep", "ff02::1", "-c", "1"],
    /--tep: ff02::1 is a multicast/,
  ],
];

describe.skipIf(skip !== null)("nonsense configurations: exit 2, one line", () => {
  for (const [name, args, message] of refusals) {
    test(name, () => expectRefused(dstm(args), message));
  }

  test("a pool in a config file that reaches into 127.0.0.0/8 is refused", () => {
    const file = join(dir, "loop.toml");
    writeFileSync(file, `tep = "2001:db8::1"\n\n[[pool]]\nprefixes = ["127.0.0.0/28"]\n`);
    expectRefused(
      dstm([...server, "--config", file]),
      /:4:13: pool\[0\]\.prefixes\[0\]: 127\.0\.0\.0\/28 reaches into/,
    );
  });

  test("a client whose --control socket is in use refuses before taking a lease", async () => {
    const control = join(dir, "busy.sock");
    const running = spawnDstm([
      ...server.filter((a) => a !== "--no-control"),
      ...pool,
      ...tep,
      "--control",
      control,
    ]);
    try {
      await running.waitFor(/ start /);
      expectRefused(
        dstm(["client", "--server", "2001:db8::53", "--control", control]),
        /control socket .*busy\.sock is in use by a running dstm process/,
      );
    } finally {
      running.proc.kill("SIGTERM");
      expect(await running.exited).toBe(0);
    }
  });
});

describe.skipIf(skip !== null)("secrets and files", () => {
  const mode = (path: string) => statSync(path).mode & 0o777;

  test("dstm keygen FILE writes the key 0600 and refuses to overwrite it", () => {
    const key = join(dir, "key");
    const r = dstm(["keygen", key]);
    expect(r.code).toBe(0);
    expect(mode(key)).toBe(0o600);
    expect(parseKeyFile(readFileSync(key, "utf8")).ok).toBe(true);
    const before = readFileSync(key, "utf8");
    expectRefused(dstm(["keygen", key]), /key exists; remove it first/);
    expect(readFileSync(key, "utf8")).toBe(before);
  });

  test("dstm keygen > FILE leaves the file 0600 (the README's way)", () => {
    const key = join(dir, "key-redirected");
    const r = ns.exec(["sh", "-c", `umask 022; "$0" mod.ts keygen > "$1"`, BUN, key], {
      cwd: ROOT,
    });
    expect(r.code).toBe(0);
    expect(mode(key)).toBe(0o600);
  });

  for (const loose of [0o644, 0o640, 0o604]) {
    test(`a key file with mode 0${loose.toString(8)} is refused by server, TEP and client`, () => {
      const key = join(dir, `loose-${loose.toString(8)}`);
      expect(dstm(["keygen", key]).code).toBe(0);
      chmodSync(key, loose);
      const message = new RegExp(
        `key file .* is accessible by others \\(mode 0${loose.toString(8)}\\); run chmod 600`,
      );
      expectRefused(dstm([...server, ...pool, ...tep, "--key", key]), message);
      expectRefused(dstm([...tepNode, "--server", "2001:db8::53", "--key", key]), message);
      expectRefused(dstm(["client", "--server", "2001:db8::53", "--key", key]), message);
    });
  }

  test("lease get and ping4 without --key at a server that requires one are told to give --key FILE; a foreign --host6 is told about --no-source-check", async () => {
    const key = join(dir, "required-key");
    expect(dstm(["keygen", key]).code).toBe(0);
    const listen = ["server", "--db", "memory", "--no-control", "--listen", "[::1]:4607"];
    const running = spawnDstm([...listen, ...pool, ...tep, "--key", key], {}, ns.name);
    try {
      await running.waitFor(/ start /);
      // The server shortens the text of a NAK to an unauthenticated request to the request's
      // size (no amplification); the client says the hint instead because it sent no AUTH
      // option (not the server's cut copy as well).
      const hint = /NOT_AUTHORISED; the server requires signed requests: give --key FILE/;
      for (const args of [
        ["lease", "get", "--server", "::1"],
        ["ping4", "192.0.2.80", "--server", "::1", "-c", "1"],
      ]) {
        const r = dstm(args);
        expect(r.code).not.toBe(0);
        expect(r.stderr.trim().split("\n")).toHaveLength(1);
        expect(r.stderr).toMatch(hint);
      }
      const foreign = dstm([
        "lease",
        "get",
        "--server",
        "::1",
        "--host6",
        "2001:db8:9::9",
        "--key",
        key,
      ]);
      expect(foreign.stderr).toMatch(
        /NOT_AUTHORISED; HOST_IPV6 must be the address the request is sent from .*--no-source-check/,
      );
      // Said once (it was "NOT_AUTHORISED (HOST_IPV6 must); HOST_IPV6 must be …").
      expect(foreign.stderr.match(/HOST_IPV6/g)).toHaveLength(1);
    } finally {
      running.proc.kill("SIGTERM");
      expect(await running.exited).toBe(0);
    }
  });

  test("a key file with mode 0600 is accepted", async () => {
    const key = join(dir, "private-key");
    expect(dstm(["keygen", key]).code).toBe(0);
    const running = spawnDstm([...server, ...pool, ...tep, "--key", key]);
    try {
      expect(await running.waitFor(/ start /)).toContain('auth="1 key(s)"');
    } finally {
      running.proc.kill("SIGTERM");
      expect(await running.exited).toBe(0);
    }
  });

  test("another user on a control socket is told permission denied, not 'is it running?'", async () => {
    const control = join(dir, "server.sock");
    const running = spawnDstm([
      ...server.filter((a) => a !== "--no-control"),
      ...pool,
      ...tep,
      "--control",
      control,
    ]);
    try {
      await running.waitFor(/ start /);
      // Bun and a bundle of mod.ts in a 0755 directory: the checkout may be unreadable to nobody.
      if (typeof nobody === "string") {
        console.warn(`[skip] permission-denied check as nobody: ${nobody}`);
        return;
      }
      const kit = nobody;
      const bundle = kit.bundle(join(ROOT, "mod.ts"));
      const asNobody = (args: string[]) =>
        ns.exec([...AS_NOBODY, kit.bun, bundle, ...args], { cwd: kit.dir });
      for (const args of [
        ["lease", "ls", "--control", control],
        ["client", "status", "--control", control],
        ["tep", "stats", "--control", control],
      ]) {
        // a socket this user may not use: a run-time failure (exit 1), not a usage error
        expectRefused(asNobody(args), /permission denied on .*server\.sock/, 1);
      }
      // root still gets the leases
      expect(dstm(["lease", "ls", "--control", control]).code).toBe(0);
    } finally {
      running.proc.kill("SIGTERM");
      expect(await running.exited).toBe(0);
    }
  });
});
