/**
 * The systemd units' sandbox fits what the daemons do: server, TEP and client run under
 * strace (as root, in a namespace of their own) through a lease, a BIND and a release, and
 * every system call they make is in the units' SystemCallFilter (expanded by systemd-analyze
 * syscall-filter), every socket family in their RestrictAddressFamilies. A runtime upgrade that
 * starts using, say, io_uring fails here instead of in production with EPERM.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { oneHostScope } from "./helpers/one_host.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (Bun.which("strace") && Bun.which("systemd-analyze")
    ? null
    : "needs strace and systemd-analyze (scripts/test-deps.sh installs them)");
announceSkip("packaging_sandbox", skip);
const { dir, procs, host } = oneHostScope("dstm-sandbox-");
let ns: Netns | undefined;

/** The system calls of a systemd group such as `@system-service`, nested groups expanded. */
function syscallGroup(name: string): Set<string> {
  const text = Bun.spawnSync(["systemd-analyze", "syscall-filter"]).stdout.toString();
  const groups = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of text.split("\n")) {
    if (/^@[\w-]+$/.test(line)) {
      current = [];
      groups.set(line, current);
    } else if (current && /^ {4}[@\w]/.test(line)) current.push(line.trim());
  }
  const out = new Set<string>();
  const expand = (group: string, seen: Set<string>) => {
    for (const member of groups.get(group) ?? []) {
      if (!member.startsWith("@")) out.add(member);
      else if (!seen.has(member)) expand(member, seen.add(member));
    }
  };
  expand(name, new Set([name]));
  return out;
}

/** `Key=` values of a unit file. */
function unitSetting(unit: string, key: string): string {
  const text = readFileSync(join(ROOT, "packaging", "systemd", unit), "utf8");
  return new RegExp(`^${key}=(.*)$`, "m").exec(text)![1]!;
}

/** Starts argv under `strace -f` in the namespace; resolves once stdout matches `ready`. */
async function traced(name: string, argv: string[], ready: RegExp): Promise<Bun.Subprocess> {
  const proc = ns!.spawn(["strace", "-f", "-qq", "-o", join(dir, `${name}.trace`), ...argv], {
    cwd: ROOT,
    timeoutMs: 90_000,
  });
  procs.push(proc);
  let seen = "";
  let found = (_: boolean) => {};
  const matched = new Promise<boolean>((resolve) => {
    found = resolve;
  });
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      seen += decoder.decode(chunk, { stream: true });
      if (ready.test(seen)) found(true);
    }
    found(false);
  })();
  void new Response(proc.stderr).text();
  if (!(await Promise.race([matched, Bun.sleep(40_000).then(() => false)])))
    throw new Error(`${name} never printed ${ready}: ${seen}`);
  return proc;
}

/** System call names and socket families in an strace -f log. */
function traceUsage(name: string): { calls: Set<string>; families: Set<string> } {
  const text = readFileSync(join(dir, `${name}.trace`), "utf8");
  const calls = new Set<string>();
  const families = new Set<string>();
  for (const line of text.split("\n")) {
    const body = line.replace(/^\d+ +/, "");
    const call = /^(?:<\.\.\. )?([a-z_0-9]+)[( ]/.exec(body)?.[1];
    if (call && !body.startsWith("+++") && !body.startsWith("---")) calls.add(call);
    const family = /^socket\((AF_[A-Z0-9]+)/.exec(body)?.[1];
    if (family) families.add(family);
  }
  return { calls, families };
}

test.skipIf(skip !== null)(
  "server, TEP and client use only the system calls and socket families their units allow",
  async () => {
    ns = host();
    const dstm = [BUN, join(ROOT, "mod.ts")];
    const server = await traced(
      "server",
      [
        ...[...dstm, "server", "--pool", "192.0.2.0/29", "--tep", "2001:db8::1,192.0.2.254"],
        ...["--listen", "[::1]:4607", "--db", join(dir, "leases.db")],
        ...["--control", join(dir, "server.sock")],
      ],
      / start /,
    );
    const tep = await traced(
      "tep",
      [
        ...[...dstm, "tep", "--ipv6", "2001:db8::1", "--ipv4", "192.0.2.254", "--server", "::1"],
        ...["--route", "192.0.2.0/29", "--stats", join(dir, "tep.sock")],
      ],
      /tep-start/,
    );
    const client = await traced(
      "client",
      [...dstm, "client", "--server", "::1", "--control", join(dir, "client.sock")],
      / bound /,
    );
    // The control sockets answer (accept on the server side).
    const ls = ns.exec([...dstm, "lease", "ls", "--control", join(dir, "server.sock")], {
      cwd: ROOT,
    });
    expect(ls.stdout).toContain("192.0.2.1");
    // SIGTERM to strace would only detach it: stop the traced daemon (strace's child) instead.
    for (const proc of [client, tep, server]) {
      const children = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8");
      process.kill(Number(children.trim().split(" ")[0]), "SIGTERM");
      await proc.exited;
    }

    for (const [name, unit] of [
      ["server", "dstm-server.service"],
      ["tep", "dstm-tep.service"],
      ["client", "dstm-client@.service"],
    ] as const) {
      const allowed = syscallGroup(unitSetting(unit, "SystemCallFilter"));
      expect(allowed.size).toBeGreaterThan(100);
      const { calls, families } = traceUsage(name);
      expect(calls.size).toBeGreaterThan(30);
      expect({ name, outside: [...calls].filter((c) => !allowed.has(c)) }).toEqual({
        name,
        outside: [],
      });
      const allowedFamilies = new Set(unitSetting(unit, "RestrictAddressFamilies").split(" "));
      expect({ name, outside: [...families].filter((f) => !allowedFamilies.has(f)) }).toEqual({
        name,
        outside: [],
      });
    }
  },
  120_000,
);
