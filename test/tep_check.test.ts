/**
 * `dstm tep check SCENARIO [-r]` (cli/tep_check.ts) on the stored scenario
 * test/fixtures/tep_check/tep.json: its packets (or the stored input pcap) replayed through the
 * TEP steps match tep.expected.json and tep.out.pcap; a changed expectation fails with the
 * difference named; -r writes the expectations. tshark reads the stored pcaps, so the packets
 * are checked by a dissector we did not write, not only against our own earlier output.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compareResults, expectationsPath, packetsFromPcap } from "../cli/tep_check.ts";
import { decodePcap, encodePcap } from "../lib/net/pcap.ts";
import type { CheckResult } from "../lib/tunnel/check.ts";
import { runDstm } from "./helpers/process.ts";

const DIR = join(import.meta.dir, "fixtures", "tep_check");
const SCENARIO = join(DIR, "tep.json");
const cleanup: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

function tempCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "dstm-tep-check-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ["tep.json", "tep.expected.json", "tep.in.pcap", "tep.out.pcap"])
    copyFileSync(join(DIR, f), join(dir, f));
  return dir;
}

describe("dstm tep check", () => {
  test("the stored scenario matches its expectations; the verdicts are the ones its notes give", async () => {
    const r = await runDstm(["tep", "check", SCENARIO]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("11 packets, 11 outputs and 10 counters match");
    const stored = JSON.parse(readFileSync(join(DIR, "tep.expected.json"), "utf8")) as CheckResult;
    expect(stored.outputs.map((o) => o.verdict)).toEqual([
      "DROP_SPOOFED_SOURCE",
      "DROP_SPOOFED_SOURCE",
      "DROP_NO_BINDING",
      "FORWARD",
      "DROP_NO_BINDING",
      "ICMP",
      "FORWARD_FRAGMENT",
      "FORWARD",
      "ICMP",
      "DROP_TOO_BIG",
      "FORWARD",
    ]);
  });

  test("input from the stored pcap, output compared with the stored pcap and written out", async () => {
    const dir = tempCopy();
    const out = join(dir, "written.pcap");
    const r = await runDstm([
      "tep",
      "check",
      join(dir, "tep.json"),
      "--pcap-in",
      join(dir, "tep.in.pcap"),
      "--expect-pcap",
      join(dir, "tep.out.pcap"),
      "--pcap-out",
      out,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("match");
    expect(readFileSync(out)).toEqual(readFileSync(join(DIR, "tep.out.pcap")));
  });

  test("a changed expectation fails with exit 1 and names each difference", async () => {
    const dir = tempCopy();
    const file = join(dir, "tep.expected.json");
    const stored = JSON.parse(readFileSync(file, "utf8")) as CheckResult;
    const wrong = structuredClone(stored);
    wrong.counters["decap-drop-spoofed-source"] = 3;
    const hex = wrong.outputs[3]!.hex!;
    wrong.outputs[3]!.hex =
      `${hex.slice(0, 16)}${hex.slice(16, 18) === "3f" ? "40" : "3f"}${hex.slice(18)}`;
    wrong.outputs[9]!.verdict = "FORWARD";
    writeFileSync(file, JSON.stringify(wrong));
    const r = await runDstm(["tep", "check", join(dir, "tep.json")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("3 difference(s) from the expectations");
    expect(r.stdout.trim().split("\n")).toEqual([
      `packet 3 (host A with its own address: forwarded): byte 8 is 0x${hex.slice(16, 18)}, expected 0x${wrong.outputs[3]!.hex.slice(16, 18)}`,
      "packet 9 (a 1600-byte ICMP error with DF: dropped, never an error about an error): verdict DROP_TOO_BIG, expected FORWARD",
      "counter decap-drop-spoofed-source: 2, expected 3",
    ]);
  });

  test("-r writes the expectations (the same as the stored ones), then the check passes", async () => {
    const dir = tempCopy();
    const file = join(dir, "tep.expected.json");
    rmSync(file);
    const missing = await runDstm(["tep", "check", join(dir, "tep.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("write it with -r");
    const regen = await runDstm(["tep", "check", join(dir, "tep.json"), "-r"]);
    expect(regen.code).toBe(0);
    expect(readFileSync(file, "utf8")).toBe(readFileSync(join(DIR, "tep.expected.json"), "utf8"));
    expect((await runDstm(["tep", "check", join(dir, "tep.json")])).code).toBe(0);
  });

  test("a scenario that is not one is a usage error (exit 2)", async () => {
    const dir = tempCopy();
    writeFileSync(join(dir, "bad.json"), '{"tep": {"ipv4": "192.0.2.1"}}');
    const r = await runDstm(["tep", "check", join(dir, "bad.json")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('needs "tep", "bindings" and "packets"');
  });

  test.skipIf(Bun.which("tshark") === null)(
    "tshark reads the stored pcaps: 11 packets in; out: 2 ICMP 3/4 with MTU 1460, 2 IPv4-in-IPv6 to host A",
    () => {
      const fields = (file: string, ...names: string[]) => {
        const args = ["tshark", "-r", join(DIR, file), "-T", "fields", "-E", "separator=|"];
        for (const name of names) args.push("-e", name);
        const proc = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
        expect(proc.exitCode).toBe(0);
        return proc.stdout.toString().trim().split("\n");
      };
      expect(fields("tep.in.pcap", "frame.number").length).toBe(11);
      const out = fields(
        "tep.out.pcap",
        "ipv6.nxt",
        "ipv6.dst",
        "icmp.type",
        "icmp.code",
        "icmp.mtu",
      );
      expect(out).toEqual([
        "||||",
        "||3|4|1460",
        "4|2001:db8:a::1|||",
        "4|2001:db8:a::1|||",
        "||3|4|1460",
        "||||",
      ]);
    },
  );
});

describe("tep check pieces", () => {
  test("decodePcap reads what encodePcap wrote, and refuses pcapng and Ethernet captures", () => {
    const records = [
      { timeMs: 1_700_000_000_250, data: Uint8Array.of(0x45, 1, 2, 3) },
      { timeMs: 1_700_000_000_500.5, data: Uint8Array.of(0x60, 4) },
    ];
    expect(decodePcap(encodePcap(records))).toEqual(records);
    expect(() => decodePcap(Uint8Array.of(0x0a, 0x0d, 0x0d, 0x0a, ...new Uint8Array(24)))).toThrow(
      /not a classic pcap file .*pcapng/,
    );
    const ethernet = encodePcap(records);
    ethernet[20] = 1; // LINKTYPE_ETHERNET
    expect(() => decodePcap(ethernet)).toThrow(/link type 1 is not raw IP/);
    expect(() => decodePcap(encodePcap(records).subarray(0, 50))).toThrow(/record 1: truncated/);
  });

  test("pcap input: 4in6 packets are tep-decap from their outer source, IPv4 tep-encap", () => {
    const packets = packetsFromPcap(readFileSync(join(DIR, "tep.in.pcap")));
    expect(packets.map((p) => p.step)).toEqual([
      ...Array(4).fill("tep-decap"),
      ...Array(6).fill("tep-encap"),
      "tep-decap",
    ]);
    expect(packets.map((p) => p.from6).filter(Boolean)).toEqual([
      "2001:db8:b::1",
      "2001:db8:e::1",
      "2001:db8:a::1",
      "2001:db8:a::1",
      "2001:db8:a::1",
    ]);
    expect(() =>
      packetsFromPcap(encodePcap([{ timeMs: 0, data: new Uint8Array(40).fill(0x60) }])),
    ).toThrow(/record 0 is neither IPv4 nor IPv6 with next header 4/);
  });

  test("expectations sit next to the scenario; identical results have no differences", () => {
    expect(expectationsPath("a/b/tep.json")).toBe("a/b/tep.expected.json");
    const stored = JSON.parse(readFileSync(join(DIR, "tep.expected.json"), "utf8")) as CheckResult;
    expect(compareResults(stored, structuredClone(stored))).toEqual([]);
    const fewer = { ...stored, outputs: stored.outputs.slice(0, -1) };
    expect(compareResults(stored, fewer)).toEqual(["packet 10: expected but not produced"]);
  });
});
