/**
 * CPU affinity of the calling thread: sched_setaffinity(2) with pid 0, through `bun:ffi`
 * (https://bun.sh/docs/api/ffi). Pinning the two forwarding Workers of a node to different
 * CPUs keeps them from trading places with the threads they wake (measured on these 2-vCPU
 * machines: single-stream TCP through client and TEP 1.16 → 1.54 Gbit/s, docs/benchmarks.md).
 *
 * Opened lazily, per thread: call it from inside the Worker to pin.
 *
 * @module
 */
import { dlopen } from "bun:ffi";

let _setaffinity: ((pid: number, size: number, mask: Uint8Array) => number) | undefined;

/** Number of CPUs this process may run on (from the current affinity mask), at least 1. */
export function cpuCount(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/**
 * Pins the calling thread to `cpu`. Returns false (and leaves the thread as it was) when the
 * CPU does not exist or the call fails: pinning is an optimisation, never a requirement.
 */
export function pinThisThread(cpu: number): boolean {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= 1024) return false;
  if (!_setaffinity) {
    const lib = dlopen("libc.so.6", {
      sched_setaffinity: { args: ["i32", "u64", "ptr"], returns: "i32" },
    });
    _setaffinity = (pid, size, mask) => lib.symbols.sched_setaffinity(pid, size, mask);
  }
  const mask = new Uint8Array(128); // cpu_set_t: 1024 bits
  mask[cpu >> 3] = 1 << (cpu & 7);
  return _setaffinity(0, mask.length, mask) === 0;
}
