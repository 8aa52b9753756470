/**
 * Lists the functions longer than a limit (STYLE.md: split long functions into named steps),
 * longest first: `LINES FILE:FIRST-LAST HEADER`. A report, not a check: it always exits 0.
 *
 * Usage: bun scripts/function_lengths.ts [--max N] [PATH...]
 *   N defaults to 80 lines; PATHs (files or folders) default to cli lib scripts bench mod.ts.
 *
 * How: the comment- and string-blanked text of each .ts file (`scan` of ./check_imports.ts,
 * so braces in strings and comments do not count) is matched brace by brace; a block is a
 * function body when the text before its `{` ends in `)`, `): Type` or `=>`, and its line does
 * not start with if/for/while/switch/catch/do. A heuristic (the TypeScript package here is the
 * native compiler, without the JS API); nested functions are listed on their own.
 *
 * @module
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { scan } from "./check_imports.ts";

/** One function body: its first and last line (1-based) and the text of its first line. */
export interface LongFunction {
  readonly file: string;
  readonly first: number;
  readonly last: number;
  readonly header: string;
}

const CONTROL = /^(\}\s*)?(else\s+)?(if|for|while|switch|catch|do|finally)\b/;
const BODY_BEFORE = /(\)|=>|\)\s*:\s*[^;{}()]+)$/;

/** The function bodies of `source` (a .ts file's text) longer than `max` lines. */
export function longFunctions(file: string, source: string, max: number): LongFunction[] {
  const { masked } = scan(source);
  const lineStarts = [0];
  for (let i = 0; i < masked.length; i++) if (masked[i] === "\n") lineStarts.push(i + 1);
  const lineOf = (offset: number) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const found: LongFunction[] = [];
  const open: number[] = [];
  for (let i = 0; i < masked.length; i++) {
    if (masked[i] === "{") open.push(i);
    if (masked[i] !== "}") continue;
    const at = open.pop();
    if (at === undefined) continue;
    const before = masked
      .slice(Math.max(0, at - 400), at)
      .replace(/\s+/g, " ")
      .trimEnd();
    const header = masked.slice(masked.lastIndexOf("\n", at) + 1, at).trim();
    if (!BODY_BEFORE.test(before) || CONTROL.test(header)) continue;
    const first = lineOf(at);
    const last = lineOf(i);
    if (last - first + 1 > max) found.push({ file, first, last, header: header.slice(0, 70) });
  }
  return found;
}

function tsFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return path.endsWith(".ts") ? [path] : [];
  return readdirSync(path)
    .filter((name) => name !== "node_modules")
    .flatMap((name) => tsFiles(join(path, name)));
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const maxAt = args.indexOf("--max");
  const max = maxAt >= 0 ? Number(args.splice(maxAt, 2)[1]) : 80;
  if (!Number.isInteger(max) || max < 1) {
    console.error("usage: bun scripts/function_lengths.ts [--max N] [PATH...]");
    process.exit(2);
  }
  const paths = args.length > 0 ? args : ["cli", "lib", "scripts", "bench", "mod.ts"];
  const all = paths
    .flatMap(tsFiles)
    .flatMap((file) => longFunctions(file, readFileSync(file, "utf8"), max))
    .sort((a, b) => b.last - b.first - (a.last - a.first));
  for (const f of all)
    console.log(`${f.last - f.first + 1} ${f.file}:${f.first}-${f.last} ${f.header}`);
}
