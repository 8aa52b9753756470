/**
 * `dstm tep check SCENARIO [-r]`: replay stored packets through the TEP (and client) steps
 * with the scenario's bindings and configuration, no TUN, no socket, no root
 * (lib/tunnel/check.ts), and compare every output packet and the counters with the stored
 * expectations, the way Snabb's `lwaftr check` does. Exit 0 when they match, 1 with the
 * differences listed when they do not, 2 for an unreadable scenario.
 *
 * - SCENARIO is a JSON file (`CheckScenario`); the expectations are SCENARIO with
 *   `.expected.json` instead of `.json`. `-r` writes them from this run instead of comparing.
 * - `--pcap-in FILE` takes the input packets from a pcap of bare IP packets instead of the
 *   scenario's: IPv6 with next header 4 is a 4over6 packet arriving at the TEP (`tep-decap`,
 *   outer source = the host), IPv4 a packet routed to the TEP (`tep-encap`).
 * - `--pcap-out FILE` writes the packets that left (encapsulated ones with their outer IPv6
 *   header); `--expect-pcap FILE` also compares them with a stored pcap (`-r` writes it).
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "@commander-js/extra-typings";
import { readErrorText } from "../lib/config/errors.ts";
import { formatIPv6 } from "../lib/net/addr.ts";
import { decodePcap } from "../lib/net/pcap.ts";
import {
  bytesToHex,
  type CheckPacket,
  type CheckResult,
  type CheckScenario,
  checkPcaps,
  runCheck,
} from "../lib/tunnel/check.ts";
import { UsageError } from "./errors.ts";

/** The outputs or counters differ from the stored expectations (exit code 1). */
export class CheckMismatchError extends Error {
  override name = "CheckMismatchError";
}

/** Adds `check` to the `tep` command. */
export function addTepCheckCommand(tep: Command): void {
  tep
    .command("check")
    .description(
      "replay a scenario's packets through the TEP steps and compare packets and counters with SCENARIO.expected.json",
    )
    .argument(
      "<scenario>",
      'scenario JSON: the TEP, its bindings and the packets (README, "Checking the TEP offline"; e.g. test/fixtures/tep_check/tep.json)',
    )
    .option("-r, --regenerate", "write the expectations from this run instead of comparing")
    .option("--pcap-in <file>", "input packets from this pcap (raw IP) instead of the scenario's")
    .option("--pcap-out <file>", "write the packets that left to this pcap")
    .option("--expect-pcap <file>", "also compare the packets that left with this pcap")
    .addHelpText(
      "after",
      "\nExamples:\n  dstm tep check test/fixtures/tep_check/tep.json\n  dstm tep check tep.json --pcap-in tep.in.pcap --expect-pcap tep.out.pcap\n  dstm tep check tep.json -r",
    )
    .action((file, flags) => {
      const scenario = readScenario(file);
      if (flags.pcapIn) scenario.packets = packetsFromPcap(readBytes(flags.pcapIn, "--pcap-in"));
      let actual: CheckResult;
      let output: Uint8Array;
      try {
        actual = runCheck(scenario);
        output = checkPcaps(scenario).output;
      } catch (error) {
        throw new UsageError(`${file}: ${(error as Error).message}`);
      }
      if (flags.pcapOut) writeFileSync(flags.pcapOut, output);
      const expectedFile = expectationsPath(file);
      if (flags.regenerate) {
        writeFileSync(expectedFile, `${JSON.stringify(actual, null, 2)}\n`);
        if (flags.expectPcap) writeFileSync(flags.expectPcap, output);
        process.stdout.write(
          `wrote ${expectedFile}${flags.expectPcap ? ` and ${flags.expectPcap}` : ""}\n`,
        );
        return;
      }
      let expected: CheckResult;
      try {
        expected = JSON.parse(readFileSync(expectedFile, "utf8")) as CheckResult;
      } catch (error) {
        throw new UsageError(
          `cannot read ${expectedFile} (${(error as Error).message.split("\n")[0]}); write it with -r`,
        );
      }
      const differences = compareResults(expected, actual);
      if (flags.expectPcap) {
        const stored = readBytes(flags.expectPcap, "--expect-pcap");
        differences.push(...comparePcaps(decodePcap(stored), decodePcap(output), flags.expectPcap));
      }
      if (differences.length > 0) {
        process.stdout.write(`${differences.join("\n")}\n`);
        throw new CheckMismatchError(
          `${file}: ${differences.length} difference(s) from the expectations`,
        );
      }
      const counters = Object.keys(actual.counters).length;
      process.stdout.write(
        `${file}: ${scenario.packets.length} packets, ${actual.outputs.length} outputs and ${counters} counters match ${expectedFile}${flags.expectPcap ? ` and ${flags.expectPcap}` : ""}\n`,
      );
    });
}

/** `x.json` → `x.expected.json` (any other name gets `.expected.json` appended). */
export function expectationsPath(scenario: string): string {
  return scenario.endsWith(".json")
    ? `${scenario.slice(0, -".json".length)}.expected.json`
    : `${scenario}.expected.json`;
}

function readBytes(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (error) {
    throw new UsageError(`${what}: cannot read ${path}: ${readErrorText(error)}`);
  }
}

function readScenario(path: string): CheckScenario {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read scenario ${path}: ${readErrorText(error)}`);
  }
  let scenario: CheckScenario;
  try {
    scenario = JSON.parse(text) as CheckScenario;
  } catch (error) {
    throw new UsageError(`scenario ${path} is not JSON: ${(error as Error).message}`);
  }
  if (
    !scenario ||
    typeof scenario !== "object" ||
    !scenario.tep ||
    !Array.isArray(scenario.bindings)
  )
    throw new UsageError(`scenario ${path} needs "tep", "bindings" and "packets"`);
  scenario.packets ??= [];
  return scenario;
}

/**
 * The check packets of a pcap of bare IP packets: IPv6 with next header 4 → `tep-decap`
 * (from the outer source, the inner IPv4 packet as input), IPv4 → `tep-encap`. Throws a
 * UsageError for anything else (other IPv6, truncated headers, a file that is no raw pcap).
 */
export function packetsFromPcap(bytes: Uint8Array): CheckPacket[] {
  let records: ReturnType<typeof decodePcap>;
  try {
    records = decodePcap(bytes);
  } catch (error) {
    throw new UsageError(`--pcap-in: ${(error as Error).message}`);
  }
  return records.map((r, i) => {
    const version = (r.data[0] ?? 0) >> 4;
    if (version === 4) return { step: "tep-encap", hex: bytesToHex(r.data), timeMs: r.timeMs };
    if (version === 6 && r.data.length >= 40 && r.data[6] === 4) {
      return {
        step: "tep-decap",
        from6: formatIPv6(r.data.subarray(8, 24)),
        hex: bytesToHex(r.data.subarray(40)),
        timeMs: r.timeMs,
      };
    }
    throw new UsageError(
      `--pcap-in: record ${i} is neither IPv4 nor IPv6 with next header 4 (IPv4-in-IPv6)`,
    );
  });
}

/** Readable differences between stored and actual results; empty when they match. */
export function compareResults(expected: CheckResult, actual: CheckResult): string[] {
  const out: string[] = [];
  const n = Math.max(expected.outputs.length, actual.outputs.length);
  for (let i = 0; i < n; i++) {
    const e = expected.outputs[i];
    const a = actual.outputs[i];
    if (!e || !a) {
      out.push(`packet ${i}: ${e ? "expected but not produced" : "produced but not expected"}`);
      continue;
    }
    const label = `packet ${i}${a.note ? ` (${a.note})` : ""}`;
    if (e.verdict !== a.verdict) out.push(`${label}: verdict ${a.verdict}, expected ${e.verdict}`);
    if (e.to !== a.to || e.dst6 !== a.dst6) {
      out.push(
        `${label}: sent to ${a.to ?? "nowhere"}${a.dst6 ? ` ${a.dst6}` : ""}, expected ${e.to ?? "nowhere"}${e.dst6 ? ` ${e.dst6}` : ""}`,
      );
    }
    if (e.hex !== a.hex) out.push(`${label}: ${_bytesDiffer(e.hex ?? "", a.hex ?? "")}`);
  }
  const names = new Set([...Object.keys(expected.counters), ...Object.keys(actual.counters)]);
  for (const name of names) {
    const e = (expected.counters as Record<string, number>)[name] ?? 0;
    const a = (actual.counters as Record<string, number>)[name] ?? 0;
    if (e !== a) out.push(`counter ${name}: ${a}, expected ${e}`);
  }
  return out;
}

function comparePcaps(
  expected: ReturnType<typeof decodePcap>,
  actual: ReturnType<typeof decodePcap>,
  file: string,
): string[] {
  const out: string[] = [];
  if (expected.length !== actual.length)
    out.push(`${file}: ${actual.length} packets left, the file has ${expected.length}`);
  const n = Math.min(expected.length, actual.length);
  for (let i = 0; i < n; i++) {
    const e = bytesToHex(expected[i]!.data);
    const a = bytesToHex(actual[i]!.data);
    if (e !== a) out.push(`${file} packet ${i}: ${_bytesDiffer(e, a)}`);
  }
  return out;
}

function _bytesDiffer(expectedHex: string, actualHex: string): string {
  if (expectedHex.length !== actualHex.length) {
    return `${actualHex.length / 2} bytes, expected ${expectedHex.length / 2}`;
  }
  let at = 0;
  while (at < expectedHex.length && expectedHex[at] === actualHex[at]) at++;
  const byte = at >> 1;
  return `byte ${byte} is 0x${actualHex.slice(2 * byte, 2 * byte + 2)}, expected 0x${expectedHex.slice(2 * byte, 2 * byte + 2)}`;
}
