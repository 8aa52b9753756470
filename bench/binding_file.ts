/**
 * Micro-benchmark: parsing a TEP binding file (`dstm tep --binding-file`) of 262,144 lines,
 * 65,536 addresses of 198.18.0.0/16 (RFC 2544's benchmarking range) shared by 4. Prints the
 * best of `rounds` parses in ms and lines per second. Not a test (test/tep_binding_file.test.ts
 * checks what the parse returns).
 *
 *   node_modules/.bin/bun bench/binding_file.ts [rounds]
 *
 * @module
 */
import { parseBindingFile } from "../lib/tep/binding_file.ts";
import { benchNumbers } from "./bench_args.ts";

const [rounds = 5] = benchNumbers(import.meta.path, ["rounds"], [5]);
const lines = ["# 198.18.0.0/16 × 4 PSIDs"];
for (let i = 0; i < 262_144; i++) {
  const a = i >>> 2;
  lines.push(
    `198.${18 + (a >>> 16)}.${(a >>> 8) & 255}.${a & 255} 2001:db8:2::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)} 6/2/${i & 3}`,
  );
}
const text = `${lines.join("\n")}\n`;
let best = Number.POSITIVE_INFINITY;
let size = 0;
for (let r = 0; r < rounds; r++) {
  const started = performance.now();
  size = parseBindingFile(text, "bench.txt").size;
  best = Math.min(best, performance.now() - started);
}
console.log(
  JSON.stringify({
    bindings: size,
    bestMs: Math.round(best),
    linesPerSecond: Math.round((262_144 / best) * 1000),
  }),
);
