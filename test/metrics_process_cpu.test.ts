/**
 * process_cpu_*_total count the CPU the process used since it started (as Prometheus' process
 * collectors do), not only since the first scrape: prom-client's collectors are registered at
 * the first exposition (lib/control/metrics.ts), and a TEP scraped for the first time after
 * an hour of forwarding showed a few milliseconds.
 * The JavaScript heap is reported as such, not as /proc's VmData under process_heap_bytes.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Metrics } from "../lib/control/metrics.ts";

/** The value of the unlabelled series `name` in exposition `text`. */
function value(text: string, name: string): number {
  const match = new RegExp(`^${name} ([0-9.e+-]+)$`, "m").exec(text);
  if (!match) throw new Error(`${name} missing`);
  return Number(match[1]);
}

test("CPU used before the first scrape is counted", async () => {
  // Use at least 0.3 s of CPU first (bounded: by CPU time, which only this loop adds to).
  const start = process.cpuUsage();
  let spin = 0;
  while (process.cpuUsage(start).user < 300_000 && spin < 1e10) spin++;
  const before = process.cpuUsage();
  const text = await new Metrics().text();
  expect(value(text, "process_cpu_user_seconds_total")).toBeGreaterThanOrEqual(before.user / 1e6);
  expect(value(text, "process_cpu_system_seconds_total")).toBeGreaterThanOrEqual(
    before.system / 1e6,
  );
  expect(value(text, "process_cpu_seconds_total")).toBeGreaterThanOrEqual(
    (before.user + before.system) / 1e6,
  );
});

test("the JavaScript heap is dstm_js_heap_used_bytes / dstm_js_heap_size_bytes; no process_heap_bytes (that was /proc's VmData, the data segment)", async () => {
  const text = await new Metrics().text();
  expect(text).not.toMatch(/^process_heap_bytes /m);
  expect(text).toContain("# TYPE dstm_js_heap_used_bytes gauge");
  expect(text).toContain("# TYPE dstm_js_heap_size_bytes gauge");
  const used = value(text, "dstm_js_heap_used_bytes");
  const size = value(text, "dstm_js_heap_size_bytes");
  expect(used).toBeGreaterThan(0);
  expect(size).toBeGreaterThanOrEqual(used);
  // The JS heap, not the data segment: far below VmData, which counts every mmap'd arena.
  const vmData = /^VmData:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
  expect(used).toBeLessThan(Number(vmData?.[1]) * 1024);
});
