/**
 * End to end, as root, in the lab's narrow path: node E sits behind r1 ═ r2, whose link has an
 * MTU of 1400, while the TEP keeps `--link-mtu 1500`. Real `dstm tep` / `dstm client`
 * processes, the kernel's routers, ping, curl, python and tshark:
 *
 * - path MTU (RFC 2473 §7–8, RFC 8201): Packet Too Big is learned and turned into ICMPv4 3/4
 *   with 1360, at the TEP and at the client (also on-demand), and big transfers complete;
 * - ICMPv6 errors from the path are relayed as ICMPv4 errors (RFC 2473 §8.3): fail fast;
 * - RFC 6040 ECN with outer CE crafted on a raw socket, DSCP copied, a flow label per flow;
 * - MSS clamping of SYNs to the learned path MTU (RFC 4459 §3.2), seen by tshark.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { leasedAddress } from "../lib/lab/demo.ts";
import { Lab } from "../lib/lab/lab.ts";
import { downloadBigFile, labTepStats, pingArgv } from "../lib/lab/probes.ts";
import { BIG_FILE, dstmArgv } from "../lib/lab/services.ts";
import { LAB, type Role } from "../lib/lab/topology.ts";
import { announceSkip, netnsSkipReason } from "./helpers/netns.ts";
import { BUN, ROOT } from "./helpers/process.ts";
import { eventually } from "./helpers/wait.ts";

const skip =
  netnsSkipReason({ tun: true }) ??
  (existsSync("/usr/sbin/vsftpd") ? null : "needs vsftpd (scripts/test-deps.sh installs it)") ??
  (Bun.which("tshark") ? null : "needs tshark (scripts/test-deps.sh installs it)");
announceSkip("lab_pmtu", skip);

const name = `p${Math.random().toString(36).slice(2, 7)}`;
const base = mkdtempSync(join(tmpdir(), "dstm-pmtu-"));
let lab: Lab;
let e4 = "";

beforeAll(async () => {
  if (skip) return;
  lab = await Lab.up(name, base);
  await lab.ensure("client-e");
  e4 = await leasedAddress(lab, "e");
}, 90_000);

afterAll(async () => {
  if (!skip) await Lab.down(name, base);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

/** The lab TEP's counters and learned path MTUs (lib/lab/probes.ts). */
const tepStats = () => labTepStats(lab);

async function clientE(): Promise<{ pathMtu: number | null; counters: Record<string, number> }> {
  const response = await fetch("http://localhost/v1/status", {
    unix: lab.services.socket("client-e"),
  });
  return (await response.json()) as { pathMtu: number | null; counters: Record<string, number> };
}

const run = (role: Role, argv: string[]) => {
  const r = lab.run(role, argv);
  return { code: r.code, text: r.stdout + r.stderr };
};

/** tshark on `iface` in `role` until `count` packets or 20 s; resolves with the field lines. */
async function capture(role: Role, iface: string, filter: string, fields: string[], count: number) {
  const proc = lab.ns[role].spawn(
    [
      "tshark",
      "-l",
      "-n",
      "-i",
      iface,
      "-c",
      String(count),
      "-a",
      "duration:20",
      "-f",
      filter,
      "-T",
      "fields",
      ...fields.flatMap((f) => ["-e", f]),
    ],
    { timeoutMs: 30_000 },
  );
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let started = "";
  // "Capturing on" comes first; "Capture started" once dumpcap really listens.
  while (!started.includes("Capture started")) {
    const { value, done } = await reader.read();
    if (done) break;
    started += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return {
    lines: async (): Promise<string[][]> => {
      await proc.exited;
      const out = await new Response(proc.stdout as ReadableStream<Uint8Array>).text();
      return out
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split("\t"));
    },
    stop: () => proc.kill("SIGINT"),
  };
}

describe.skipIf(skip !== null)(
  "path MTU through a 1400-byte link (RFC 2473 §7–8, RFC 8201)",
  () => {
    test("TEP: a 1460-byte DF ping towards node E gets 'fragmentation needed' with MTU 1360", () => {
      const before = tepStats().counters;
      const r = run("web", pingArgv(e4, { count: 3, interval: 0.3 }));
      expect(r.text).toMatch(/From 192\.0\.2\.1 .*mtu ?= ?1360/);
      const after = tepStats();
      expect(after.counters["pmtu-learned"]! - before["pmtu-learned"]!).toBe(1);
      expect(after.counters["tunnel-error-too-big"]!).toBeGreaterThanOrEqual(1);
      // The first error is the relayed PTB; later ones come from the learned path MTU.
      expect(
        after.counters["icmp-relay-frag-needed"]! + after.counters["encap-icmp-too-big"]!,
      ).toBeGreaterThanOrEqual(1);
      expect(after.pathMtu).toContainEqual(
        expect.objectContaining({ host: LAB.nodeE6, mtu: 1400 }),
      );
      // What fits the path goes through.
      const fits = run("web", pingArgv(e4, { count: 2, interval: 0.3, wait: 2, size: 1332 }));
      expect(fits.text).toMatch(/ 0% packet loss/);
    });

    test("TEP: without DF the outer IPv6 packet is fragmented and the ping gets through", () => {
      const before = tepStats().counters;
      const r = run("ftp", pingArgv(e4, { count: 4, interval: 0.3, wait: 2, dontFragment: false }));
      // Node E's reply (1460 bytes, no DF) may lose its first copy while E's client learns the path.
      expect(r.text).toMatch(/[1-9]\d* received/);
      expect(
        tepStats().counters["encap-fragmented"]! - before["encap-fragmented"]!,
      ).toBeGreaterThanOrEqual(4);
    });

    test("a 2 MiB download by node E through the narrow link completes, byte for byte", () => {
      const r = downloadBigFile(lab, "e", join(lab.dir, "e-big.bin"));
      expect([r.code, r.stderr]).toEqual([0, ""]);
      expect(r.same).toBe(true);
    });

    test("client: a 1460-byte DF ping from node E gets 'fragmentation needed' with MTU 1360", async () => {
      const r = run("e", pingArgv(LAB.web4, { count: 2, interval: 0.3 }));
      expect(r.text).toMatch(/mtu ?= ?1360/);
      const status = await clientE();
      expect(status.pathMtu).toBe(1400);
      expect(status.counters["pmtu-learned"]).toBeGreaterThanOrEqual(1);
      const text = run("e", [
        ...dstmArgv(),
        "client",
        "status",
        "--control",
        lab.services.socket("client-e"),
      ]);
      expect(text.text).toMatch(/dti0 \(mtu 1460, path MTU 1400, tun\)/);
      expect(text.text).toMatch(/path MTU +[1-9]\d* learned/);
    });
  },
);

describe.skipIf(skip !== null)("ICMPv6 errors from the path are relayed (RFC 2473 §8.3)", () => {
  const route = (action: "add" | "del", type: string, prefix: string) =>
    lab.run("r1", ["ip", "-6", "route", action, type, prefix]);

  test("TEP: no route at r1 → ping gets 'Destination Host Unreachable', TCP fails at once", () => {
    expect(route("add", "unreachable", `${LAB.nodeE6}/128`).code).toBe(0);
    try {
      const before = tepStats().counters;
      const ping = run("web", ["ping", "-c", "2", "-i", "0.3", "-W", "3", e4]);
      expect(ping.text).toMatch(/From 192\.0\.2\.1 icmp_seq=1 Destination Host Unreachable/);
      // A timeout would say "Connection timed out" after --connect-timeout; ICMP says "No route"
      // (curl: "Couldn't connect to server", errno EHOSTUNREACH).
      const tcp = run("web", [
        "curl",
        "-sS",
        "-v",
        "--connect-timeout",
        "10",
        `http://${e4}:8080/`,
      ]);
      expect(tcp.code).toBe(7);
      expect(tcp.text).toMatch(/No route to host|Couldn't connect to server/);
      expect(tcp.text).not.toMatch(/timed out/i);
      const after = tepStats().counters;
      expect(
        after["tunnel-error-unreachable"]! - before["tunnel-error-unreachable"]!,
      ).toBeGreaterThanOrEqual(3);
      expect(
        after["icmp-relay-host-unreachable"]! - before["icmp-relay-host-unreachable"]!,
      ).toBeGreaterThanOrEqual(3);
    } finally {
      route("del", "unreachable", `${LAB.nodeE6}/128`);
    }
  });

  test("TEP: administratively prohibited at r1 → ICMPv4 3/13 ('Packet filtered')", () => {
    expect(route("add", "prohibit", `${LAB.nodeE6}/128`).code).toBe(0);
    try {
      const ping = run("web", ["ping", "-c", "1", "-W", "3", e4]);
      expect(ping.text).toMatch(/Packet filtered/);
      expect(tepStats().counters["icmp-relay-admin-prohibited"]).toBeGreaterThanOrEqual(1);
    } finally {
      route("del", "prohibit", `${LAB.nodeE6}/128`);
    }
  });

  test("TEP: outer hop limit exhausted at r1 (Time Exceeded) → 'Destination Host Unreachable'", () => {
    // The TEP's packets leave with hop limit 1: r1 cannot forward them.
    const sysctl = (v: number) =>
      lab.run("tep", ["sysctl", "-qw", `net.ipv6.conf.eth6.hop_limit=${v}`]).code;
    expect(sysctl(1)).toBe(0);
    try {
      const before = tepStats().counters;
      const ping = run("web", ["ping", "-c", "1", "-W", "3", e4]);
      expect(ping.text).toMatch(/From 192\.0\.2\.1 icmp_seq=1 Destination Host Unreachable/);
      const after = tepStats().counters;
      expect(after["tunnel-error-time-exceeded"]! - before["tunnel-error-time-exceeded"]!).toBe(1);
    } finally {
      sysctl(64);
    }
  });

  test("client: no route to the TEP at r1 → node E's ping and TCP fail at once", async () => {
    expect(route("add", "unreachable", `${LAB.tep6}/128`).code).toBe(0);
    try {
      const before = (await clientE()).counters;
      const ping = run("e", ["ping", "-c", "2", "-i", "0.3", "-W", "3", LAB.web4]);
      expect(ping.text).toMatch(/Destination Host Unreachable/);
      const tcp = run("e", ["curl", "-sS", "-v", "--connect-timeout", "10", `http://${LAB.web4}/`]);
      expect(tcp.code).toBe(7);
      expect(tcp.text).not.toMatch(/timed out/i);
      const after = (await clientE()).counters;
      expect(
        after["icmp-relay-host-unreachable"]! - before["icmp-relay-host-unreachable"]!,
      ).toBeGreaterThanOrEqual(3);
    } finally {
      route("del", "unreachable", `${LAB.tep6}/128`);
    }
    // And the path is back.
    expect(run("e", ["ping", "-c", "1", "-W", "2", LAB.web4]).code).toBe(0);
  });
});

describe.skipIf(skip !== null)("a forged Packet Too Big", () => {
  test("quoting a packet the TEP never sent to that host: ignored and counted", async () => {
    const before = tepStats().counters;
    // From node A: "your packet to node E for 198.51.100.99 was too big, use 1300".
    const r = lab.run("a", [
      BUN,
      join(ROOT, "test", "e2e_scripts", "send_fake_ptb.ts"),
      LAB.tep6,
      LAB.nodeE6,
      LAB.web4,
      "198.51.100.99",
      "1300",
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!)).toEqual({ sent: 1 });
    // The TEP reads its error queue between packets: wait for the error to be classified.
    // Counted as not ours, so it was looked at and refused: the path MTU checks below hold.
    const notOurs = () => tepStats().counters["tunnel-error-not-ours"];
    await eventually(() => notOurs() !== before["tunnel-error-not-ours"], { intervalMs: 100 });
    const after = tepStats();
    expect(after.counters["tunnel-error-not-ours"]! - before["tunnel-error-not-ours"]!).toBe(1);
    expect(after.counters["pmtu-learned"]).toBe(before["pmtu-learned"]!);
    expect(after.pathMtu.some((p) => p.mtu === 1300)).toBe(false);
  });
});

describe.skipIf(skip !== null)("ECN (RFC 6040), DSCP (RFC 2983), flow label (RFC 6438)", () => {
  const craft = (from: Role, args: string[]) => {
    const r = lab.run(from, [BUN, join(ROOT, "test", "e2e_scripts", "send_4in6_ecn.ts"), ...args]);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { sent: number };
  };

  test("TEP: outer CE + inner ECT(0) leaves as CE; outer CE + inner Not-ECT is dropped", async () => {
    const before = tepStats().counters;
    const cap = await capture(
      "web",
      "eth0",
      `icmp and src host ${e4}`,
      ["ip.dsfield.ecn", "icmp.ident"],
      3,
    );
    // From node E's namespace, with E's address: outer CE (3), inner ECT(0) (2), id 0x6040.
    expect(
      craft("e", [LAB.nodeE6, LAB.tep6, e4, LAB.web4, "3", "2", "3", String(0x6040)]).sent,
    ).toBe(3);
    // Inner Not-ECT under outer CE: must not arrive.
    expect(
      craft("e", [LAB.nodeE6, LAB.tep6, e4, LAB.web4, "3", "0", "2", String(0x6041)]).sent,
    ).toBe(2);
    const lines = await cap.lines();
    expect(lines).toEqual([
      ["3", String(0x6040)],
      ["3", String(0x6040)],
      ["3", String(0x6040)],
    ]);
    const after = tepStats().counters;
    expect(after["decap-ecn-ce"]! - before["decap-ecn-ce"]!).toBe(3);
    expect(after["decap-drop-ecn"]! - before["decap-drop-ecn"]!).toBe(2);
  });

  test("client: outer CE + inner ECT(1) reaches the application as CE; Not-ECT is dropped", async () => {
    const before = (await clientE()).counters;
    const cap = await capture(
      "e",
      "dti0",
      `icmp and src host ${LAB.web4} and icmp[0] == 8`,
      ["ip.dsfield.ecn", "icmp.ident"],
      2,
    );
    expect(
      craft("tep", [LAB.tep6, LAB.nodeE6, LAB.web4, e4, "3", "1", "2", String(0x6042)]).sent,
    ).toBe(2);
    expect(
      craft("tep", [LAB.tep6, LAB.nodeE6, LAB.web4, e4, "3", "0", "2", String(0x6043)]).sent,
    ).toBe(2);
    const lines = await cap.lines();
    expect(lines).toEqual([
      ["3", String(0x6042)],
      ["3", String(0x6042)],
    ]);
    const after = (await clientE()).counters;
    expect(after["client-decap-ecn-ce"]! - before["client-decap-ecn-ce"]!).toBe(2);
    expect(after["client-decap-drop-ecn"]! - before["client-decap-drop-ecn"]!).toBe(2);
  });

  test("the outer header copies DSCP and ECN; each ping flow has its own flow label", async () => {
    const cap = await capture(
      "r1",
      "eth1",
      `ip6 proto 4 and dst host ${LAB.nodeE6}`,
      ["ipv6.tclass", "ipv6.flow", "icmp.ident"],
      4,
    );
    for (let i = 0; i < 2; i++)
      run("web", ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-Q", "0xba", e4]);
    const lines = await cap.lines();
    expect(lines.length).toBe(4);
    for (const [tclass] of lines) expect(Number(tclass)).toBe(0xba); // EF + ECT(0)
    const labelOf = new Map<string, string>();
    for (const [, flow, id] of lines) {
      expect(Number(flow)).toBeGreaterThan(0);
      if (labelOf.has(id!)) expect(labelOf.get(id!)).toBe(flow!);
      labelOf.set(id!, flow!);
    }
    expect(labelOf.size).toBe(2); // two ping processes, two identifiers
    expect(new Set(labelOf.values()).size).toBe(2);
  });
});

describe.skipIf(skip !== null)("MSS clamping (RFC 4459 §3.2)", () => {
  test("once the path MTU to node E is known, SYNs both ways carry MSS 1320", async () => {
    // Learn the path MTU (the first test may have run already: then this changes nothing).
    run("web", pingArgv(e4, { count: 1 }));
    const before = tepStats().counters;
    const atWeb = await capture(
      "web",
      "eth0",
      `tcp port 80 and host ${e4} and tcp[tcpflags] & tcp-syn != 0`,
      ["tcp.flags", "tcp.options.mss_val"],
      2,
    );
    const r = run("e", [
      "curl",
      "-sS",
      "--max-time",
      "10",
      "-o",
      "/dev/null",
      `http://${LAB.web4}/`,
    ]);
    expect(r.code).toBe(0);
    const lines = await atWeb.lines();
    // The SYN from E as the web server sees it: clamped to 1400 − 40 − 40.
    expect(lines[0]).toEqual(["0x0002", "1320"]);
    const after = tepStats().counters;
    // Clamped by the TEP (decapsulating E's SYN) or already by E's client (whichever learned
    // the path MTU first); E's kernel offered 1420 (DTI MTU 1460 − 40).
    const clamped =
      after["decap-mss-clamped"]! -
      before["decap-mss-clamped"]! +
      ((await clientE()).counters["client-encap-mss-clamped"] ?? 0);
    expect(clamped).toBeGreaterThanOrEqual(1);
  });
});

describe.skipIf(skip !== null)("on-demand client", () => {
  test("a 2 MiB upload from node E in --on-demand mode completes; DF ping gets MTU 1360", async () => {
    await lab.restart("client-e", ["--on-demand"]);
    // Forget what node E's kernel learned from the always-on client's connected socket: the
    // on-demand socket is not connected, and must learn the path MTU by itself.
    expect(lab.run("e", ["ip", "-6", "route", "flush", "cache"]).code).toBe(0);
    const sink = lab.ns.web.spawn(
      [
        "python3",
        "-c",
        [
          "import socket",
          "s = socket.socket()",
          "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
          `s.bind(("${LAB.web4}", 9000))`,
          "s.listen()",
          "print('listening', flush=True)",
          "c, _ = s.accept()",
          "n = 0",
          "while True:",
          "    d = c.recv(65536)",
          "    if not d: break",
          "    n += len(d)",
          "c.sendall(str(n).encode())",
          "c.close()",
        ].join("\n"),
      ],
      { timeoutMs: 40_000 },
    );
    try {
      const reader = (sink.stdout as ReadableStream<Uint8Array>).getReader();
      await reader.read(); // "listening"
      reader.releaseLock();
      const upload = run("e", [
        "python3",
        "-c",
        [
          "import socket",
          `s = socket.create_connection(("${LAB.web4}", 9000), timeout=30)`,
          "s.sendall(b'u' * (2 << 20))",
          "s.shutdown(socket.SHUT_WR)",
          "print(s.recv(100).decode())",
        ].join("\n"),
      ]);
      expect(upload.text.trim()).toBe(String(2 << 20));
      const ping = run("e", pingArgv(LAB.web4, { count: 2, interval: 0.3 }));
      expect(ping.text).toMatch(/mtu ?= ?1360/);
    } finally {
      sink.kill("SIGKILL");
      await sink.exited;
    }
  }, 60_000);
});

describe.skipIf(skip !== null)(
  "MSS clamping when the IPv4 server never sees ICMP (RFC 4459 §3.2)",
  () => {
    /**
     * The TEP restarted with `--icmp-rate 0` sends no ICMP error at all: to the web server it is
     * as if "fragmentation needed" were filtered. Node E's client and every route cache start
     * fresh, so only the TEP knows the path MTU, learned from a Packet Too Big.
     */
    async function freshPath(tepArgs: string[]): Promise<string> {
      await lab.restart("tep", ["--icmp-rate", "0", ...tepArgs]);
      for (const role of ["web", "e", "tep"] as const) {
        lab.run(role, ["ip", "-4", "route", "flush", "cache"]);
        lab.run(role, ["ip", "-6", "route", "flush", "cache"]);
      }
      await lab.restart("client-e");
      const address = await leasedAddress(lab, "e");
      // Let the TEP learn the path MTU (its binding for E may take a moment to arrive).
      await eventually(
        () => {
          run("web", pingArgv(address, { count: 1 }));
          return tepStats().pathMtu.some((p) => p.host === LAB.nodeE6);
        },
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      expect(tepStats().pathMtu).toContainEqual(
        expect.objectContaining({ host: LAB.nodeE6, mtu: 1400 }),
      );
      return address;
    }

    const download = () =>
      run("e", [
        "curl",
        "-sS",
        "--max-time",
        "8",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        `http://${LAB.web4}/${BIG_FILE}`,
      ]);

    test("without clamping the download stalls; with it (the default) it completes", async () => {
      await freshPath(["--no-mss-clamp"]);
      const stalled = download();
      expect(stalled.code).toBe(28); // curl: operation timed out
      await freshPath([]);
      const done = download();
      expect(done.code).toBe(0);
      expect(done.text).toBe(String(2 << 20));
      expect(tepStats().counters["decap-mss-clamped"]).toBeGreaterThanOrEqual(1);
    }, 90_000);
  },
);

describe.skipIf(skip !== null)("a host that does not speak 4over6", () => {
  test("its Parameter Problem (unrecognized next header) comes back as 'Destination Host Unreachable'", async () => {
    // A static binding that names r2, which has no tunnel: the kernel there answers ICMPv6
    // Parameter Problem code 1. (Restarts the TEP: this runs last.)
    await lab.restart("tep", ["--binding", `198.51.100.200=${LAB.r2Remote6}`]);
    const ping = run("web", ["ping", "-c", "1", "-W", "3", "198.51.100.200"]);
    expect(ping.text).toMatch(/From 192\.0\.2\.1 icmp_seq=1 Destination Host Unreachable/);
    expect(tepStats().counters["tunnel-error-parameter-problem"]).toBe(1);
  }, 60_000);
});
