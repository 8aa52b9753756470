/**
 * An address to listen on that this host does not have is refused by `--check` and by the
 * start alike (exit 2, one line naming the flag and the address), for every flag that binds
 * one: `dstm server --listen`, `--metrics`, `--dhcp4o6-listen`, `--tep-source`, `dstm tep
 * --metrics`, `dstm client --metrics` (and `dstm tep --ipv6` at start). Before, `--check` said OK and the start failed (exit 1)
 * or, for `--metrics ::1:9604` (read as the IPv6 address 0::1:9604 with the default port),
 * failed with `cannot listen on [::1:9604]:9604: EADDRNOTAVAIL`; now that refusal says
 * `did you mean [::1]:9604?`.
 *
 * The commands run in a network namespace made here, so the host's addresses are known: lo
 * (::1, 127.0.0.1) and 2001:db8:7::10 on a veth.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { bracketMeant, foreignAddressProblem } from "../lib/config/listen_address.ts";
import { createNetns, type Netns } from "../lib/sys/netns.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";

describe("the bracket hint (no host needed)", () => {
  test("a bare IPv6 address whose last group reads as a port", () => {
    expect(bracketMeant("::1:9604")).toBe("[::1]:9604");
    expect(bracketMeant("2001:db8::1:4607")).toBe("[2001:db8::1]:4607");
    expect(bracketMeant("2001:db8::4607")).toBe("[2001:db8::]:4607");
    // Not a port, already bracketed, or no address before it: no hint.
    expect(bracketMeant("2001:db8::1:abcd")).toBeUndefined();
    expect(bracketMeant("[::1]:9604")).toBeUndefined();
    expect(bracketMeant("2001:db8::1:99999")).toBeUndefined();
    expect(bracketMeant("127.0.0.1:9604")).toBeUndefined();
  });

  test("the wildcards always pass; a local address passes; another is named with its flag", () => {
    const local = (a: string) => a === "::1";
    const bound = (what: string, text: string, address: string) => [{ what, text, address }];
    expect(foreignAddressProblem(bound("--listen", "[::]:4607", "::"), local)).toBeUndefined();
    expect(foreignAddressProblem(bound("--metrics", "0.0.0.0:9604", "0.0.0.0"), local)).toBe(
      undefined,
    );
    expect(foreignAddressProblem(bound("--metrics", "[::1]:9604", "::1"), local)).toBeUndefined();
    expect(foreignAddressProblem(bound("--metrics", "::1:9604", "::1:9604"), local)).toBe(
      "--metrics ::1:9604: no interface has this address: ::1:9604 is not one of this host's (see ip address); did you mean [::1]:9604? (an IPv6 address with a port is written in brackets)",
    );
  });
});

const skip = netnsSkipReason();
announceSkip("listen addresses in a namespace", skip);

describe.skipIf(skip !== null)("--check and start refuse an address this host lacks", () => {
  let ns: Netns;
  beforeAll(() => {
    ns = createNetns("dstmt-n7l-");
    ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
    ns.up("v0");
    ns.up("v1");
    ns.addAddress("v0", "2001:db8:7::10/64");
  });
  afterAll(() => ns?.delete());

  async function dstm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const proc = ns.spawn([BUN, `${ROOT}/mod.ts`, ...args], { cwd: ROOT, timeoutMs: 60_000 });
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  }
  const server = ["server", "--pool", "192.0.2.0/28", "--tep", "2001:db8:7::1", "--db", "memory"];
  const serverCheck = [...server, "--check"];

  test("server --check: this host's addresses and the wildcard pass", async () => {
    for (const extra of [
      ["--listen", "[2001:db8:7::10]:4607"],
      ["--listen", "[::]:4607", "--metrics", "[::1]:9604"],
      ["--metrics", "127.0.0.1:9604"],
      ["--metrics", "0.0.0.0:9604"],
    ]) {
      const r = await dstm([...serverCheck, ...extra]);
      expect({ extra, code: r.code, stderr: r.stderr }).toEqual({ extra, code: 0, stderr: "" });
      expect(r.stdout).toStartWith("dstm server: configuration OK");
    }
  });

  test("server --check: each binding flag with another host's address, exit 2, one line", async () => {
    const cases: [string[], string][] = [
      [
        ["--listen", "[2001:db8:7::99]:4607"],
        "dstm: --listen [2001:db8:7::99]:4607: no interface has this address: 2001:db8:7::99 is not one of this host's (see ip address); give one of them, or the wildcard (:: or 0.0.0.0) for every address\n",
      ],
      [
        ["--metrics", "::1:9604"],
        "dstm: --metrics ::1:9604: no interface has this address: ::1:9604 is not one of this host's (see ip address); did you mean [::1]:9604? (an IPv6 address with a port is written in brackets)\n",
      ],
      [
        ["--metrics", "198.51.100.7:9604"],
        "dstm: --metrics 198.51.100.7:9604: no interface has this address: 198.51.100.7 is not one of this host's (see ip address); give one of them, or the wildcard (:: or 0.0.0.0) for every address\n",
      ],
      [
        ["--dhcp4o6", "--dhcp4o6-server-id", "192.0.2.1", "--dhcp4o6-listen", "2001:db8:7::10:547"],
        "dstm: --dhcp4o6-listen 2001:db8:7::10:547: no interface has this address: 2001:db8:7::10:547 is not one of this host's (see ip address); did you mean [2001:db8:7::10]:547? (an IPv6 address with a port is written in brackets)\n",
      ],
      [
        ["--tep-source", "2001:db8:7::98"],
        "dstm: --tep-source 2001:db8:7::98: no interface has this address: 2001:db8:7::98 is not one of this host's (see ip address); give one of them\n",
      ],
    ];
    for (const [extra, message] of cases) {
      const r = await dstm([...serverCheck, ...extra]);
      expect({ extra, code: r.code, stderr: r.stderr }).toEqual({
        extra,
        code: 2,
        stderr: message,
      });
      expect(r.stdout).toBe("");
    }
  });

  test("a real start refuses as --check does, before it listens (it failed with EADDRNOTAVAIL, exit 1)", async () => {
    for (const extra of [
      ["--metrics", "::1:9604"],
      ["--listen", "[2001:db8:7::99]:4607"],
    ]) {
      const check = await dstm([...serverCheck, ...extra]);
      const start = await dstm([...server, "--no-control", ...extra]);
      expect({ extra, code: start.code, stderr: start.stderr }).toEqual({
        extra,
        code: 2,
        stderr: check.stderr,
      });
      expect(start.stdout).toBe("");
    }
  });

  test("tep --check and client --check refuse --metrics the same way", async () => {
    const tep = await dstm([
      ...["tep", "--check", "--ipv6", "2001:db8:7::10", "--ipv4", "192.0.2.1"],
      ...["--server", "2001:db8:7::53", "--route", "198.51.100.0/24", "--insecure-control"],
      ...["--metrics", "::1:9605"],
    ]);
    expect(tep.code).toBe(2);
    expect(tep.stderr).toEndWith(
      "dstm: --metrics ::1:9605: no interface has this address: ::1:9605 is not one of this host's (see ip address); did you mean [::1]:9605? (an IPv6 address with a port is written in brackets)\n",
    );
    const client = await dstm([
      ...["client", "--check", "--server", "2001:db8:7::53", "--metrics", "2001:db8:7::11:9606"],
    ]);
    expect(client.code).toBe(2);
    expect(client.stderr).toBe(
      "dstm: --metrics 2001:db8:7::11:9606: no interface has this address: 2001:db8:7::11:9606 is not one of this host's (see ip address); did you mean [2001:db8:7::11]:9606? (an IPv6 address with a port is written in brackets)\n",
    );
    const ok = await dstm([
      ...["client", "--check", "--server", "2001:db8:7::53", "--metrics", "[2001:db8:7::10]:9606"],
    ]);
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: "" });
  });

  test("tep start refuses an --ipv6 this host lacks before it makes its TUN (was 'bind raw IPv6 socket: EADDRNOTAVAIL' after)", async () => {
    const tep = await dstm([
      ...["tep", "--ipv6", "2001:db8:7::77", "--ipv4", "192.0.2.1", "--server", "2001:db8:7::53"],
      ...["--route", "198.51.100.0/24", "--insecure-control", "--ifname", "n7t0"],
      ...["--control", `/tmp/${ns.name}-tep.sock`],
    ]);
    expect(tep.code).toBe(2);
    expect(tep.stderr).toBe(
      "dstm: --ipv6 2001:db8:7::77: no interface has this address: 2001:db8:7::77 is not one of this host's (see ip address); give one of them, or add it to the interface towards the hosts first (ip address add 2001:db8:7::77 dev IFNAME)\n",
    );
    expect(ns.ip("-br", "link")).not.toContain("n7t0");
  });

  test("with net.ipv6.ip_nonlocal_bind = 1 (a floating VRRP address) any IPv6 address passes, as bind does", async () => {
    ns.exec(["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"]);
    try {
      const r = await dstm([...serverCheck, "--listen", "[2001:db8:7::99]:4607"]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      // IPv4 has its own switch, still off.
      const v4 = await dstm([...serverCheck, "--metrics", "198.51.100.7:9604"]);
      expect(v4.code).toBe(2);
    } finally {
      ns.exec(["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=0"]);
    }
  });
});
