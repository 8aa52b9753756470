/**
 * Red team on the TEP's live reload (cli/tep.ts, SIGHUP) of its server list. A TEP takes
 * BIND / UNBIND / SNAPSHOT from each `--server` (lib/tep/control.ts). An operator who takes a
 * server out of that list (decommissioned, its address given to another machine, or
 * compromised) and sends SIGHUP must not be told the reload went through while the TEP keeps
 * obeying the old list: before, only the first `--server` was compared, so a change to the
 * others was "reload … changed=nothing" and not applied. Now it is refused like every
 * setting that needs a restart (one WARN line, the TEP runs on as it was).
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { daemonScope } from "./helpers/daemon.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";

const skip = netnsSkipReason({ tun: true });
announceSkip("redteam_tep_reload", skip);

const { dir, netns, daemon } = daemonScope("dstm-rt-tep-reload-", {
  timeoutMs: 120_000,
  stderrOnFailure: true,
});

describe.skipIf(skip !== null)("TEP SIGHUP with a changed server list", () => {
  test("removing the second --server is refused (needs a restart), not silently ignored", async () => {
    const ns = netns("dstmt-");
    ns.up("lo");
    // Both servers on this host: a TEP without a key accepts only local servers.
    for (const a of ["2001:db8:9::1/128", "2001:db8:9::53/128", "2001:db8:9::54/128"])
      ns.addAddress("lo", a);
    const config = join(dir, "tep.toml");
    const write = (servers: string[]) =>
      writeFileSync(config, `server = ${JSON.stringify(servers)}\n`);
    write(["2001:db8:9::53", "2001:db8:9::54"]);
    const tep = daemon(ns, [
      BUN,
      join(ROOT, "mod.ts"),
      "tep",
      "--config",
      config,
      "--ipv6",
      "2001:db8:9::1",
      "--ipv4",
      "192.0.2.9",
      "--route",
      "198.51.100.0/29",
      "--ifname",
      "tep9",
      "--control",
      join(dir, "tep.sock"),
    ]);
    await tep.waitFor(/ tep-start .*server=2001:db8:9::53,2001:db8:9::54/);
    write(["2001:db8:9::53"]);
    tep.proc.kill("SIGHUP");
    const line = await tep.waitFor(/ reload(-refused)? reason=SIGHUP/);
    expect(line).toMatch(/WARN reload-refused reason=SIGHUP detail=.*--server cannot change/);
  });

  test("turning rx-ring off in the config file is refused (needs a restart), not 'changed=nothing' with the ring still on", async () => {
    const ns = netns("dstmt-");
    ns.up("lo");
    for (const a of ["2001:db8:9::1/128", "2001:db8:9::53/128"]) ns.addAddress("lo", a);
    const config = join(dir, "tep-ring.toml");
    const write = (ring: boolean) =>
      writeFileSync(config, `server = ["2001:db8:9::53"]\nrx-ring = ${ring}\n`);
    write(true);
    const tep = daemon(ns, [
      BUN,
      join(ROOT, "mod.ts"),
      "tep",
      "--config",
      config,
      ...["--ipv6", "2001:db8:9::1", "--ipv4", "192.0.2.9", "--route", "198.51.100.0/29"],
      ...["--ifname", "tep8", "--control", join(dir, "tep-ring.sock")],
    ]);
    await tep.waitFor(/ tep-start /);
    write(false);
    tep.proc.kill("SIGHUP");
    const line = await tep.waitFor(/ reload(-refused)? reason=SIGHUP/);
    expect(line).toMatch(/WARN reload-refused reason=SIGHUP detail=.*--rx-ring cannot change/);
  });
});
