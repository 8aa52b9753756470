/**
 * The layer check of docs/architecture.md: fails (exit 1) on an import one layer may not make,
 * on `bun:ffi` outside lib/sys, `bun:sqlite` outside lib/lease, and on the `Bun` global in
 * lib/ outside lib/sys and lib/lease. Run by .ci/run before the tests, and by
 * test/check_imports.test.ts against the tree and against planted violations.
 *
 * Usage: bun scripts/check_imports.ts [--root DIR]   (DIR defaults to the project root)
 *
 * It reads every .ts file under cli/, lib/, bench/, test/ and mod.ts, drops comments (a small
 * lexer that knows strings and template literals), and collects static, type-only, re-export
 * and dynamic `import("…")` specifiers. Today's known violations are listed in
 * KNOWN_VIOLATIONS, each to be moved (issue 10); anything else fails. A listed violation that
 * no longer occurs is reported so the list can shrink, without failing.
 *
 * A small script rather than dependency-cruiser: the rules are a dozen lines, the project has
 * no other use for that tool, and `npm ci` stays as it is.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

/** The layers of lib/ and which other layers each may import (docs/architecture.md). */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  net: [],
  wire: ["net"],
  lease: ["net"],
  alloc: ["lease", "net"],
  tunnel: ["net", "wire"],
  sys: ["net"],
  dataplane: ["sys", "tunnel", "net", "wire"],
  control: ["lease", "net", "wire"],
  server: ["alloc", "lease", "control", "sys", "net", "wire"],
  client: ["control", "dataplane", "sys", "tunnel", "net", "wire"],
  tep: ["control", "dataplane", "sys", "tunnel", "net", "wire"],
  lab: ["sys", "net", "wire"],
  // the settings of each command; imports lower layers for their defaults only (cli uses it)
  config: ["alloc", "server", "tep", "tunnel", "net", "wire"],
};

/** npm packages a layer may import (everything else under lib/ imports none). */
const PACKAGES: Readonly<Record<string, readonly string[]>> = {
  net: ["ip-address"],
  config: ["smol-toml", "toml-eslint-parser", "valibot"],
  control: ["prom-client"],
};

/**
 * Today's violations of the target layering, each `from → to` (a file, or `Bun.*` for the
 * global). Each is a known violation, issue 10, to be moved; do not add to this list.
 */
export const KNOWN_VIOLATIONS: readonly { from: string; to: string; why: string }[] = [];

/** Where runtime-specific modules may be imported (relative paths' prefixes). */
const RUNTIME_MODULES: Readonly<Record<string, readonly string[]>> = {
  "bun:ffi": ["lib/sys/"],
  "bun:sqlite": ["lib/lease/", "test/", "bench/"],
  // Bun's own module (Bun.SQL for PostgreSQL): runtime code, like the Bun global.
  bun: ["lib/sys/", "lib/lease/", "test/", "bench/", "cli/"],
};

/** lib/ layers that may use the `Bun` global. */
const BUN_GLOBAL = ["sys", "lease"];

export interface Violation {
  readonly from: string;
  readonly to: string;
  readonly rule: string;
}

/**
 * `src` with comments blanked (`code`), and the same with the text of strings and template
 * literals blanked too (`masked`); both keep every offset and newline of `src`.
 */
export function scan(src: string): { code: string; masked: string } {
  const code = src.split("");
  const masked = src.split("");
  const blank = (from: number, to: number, both: boolean) => {
    for (let k = from; k < to && k < src.length; k++) {
      if (src[k] === "\n") continue;
      masked[k] = " ";
      if (both) code[k] = " ";
    }
  };
  let i = 0;
  const braces: number[] = []; // brace depth at each open `${` of a template literal
  let depth = 0;
  while (i < src.length) {
    const c = src[i]!;
    const next = src[i + 1];
    if (c === "/" && next === "/") {
      const end = src.indexOf("\n", i);
      const stop = end < 0 ? src.length : end;
      blank(i, stop, true);
      i = stop;
      continue;
    }
    if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? src.length : end + 2;
      blank(i, stop, true);
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      blank(i + 1, j, false);
      i = j + 1;
      continue;
    }
    if (c === "`" || (c === "}" && braces.length > 0 && braces.at(-1) === depth)) {
      if (c === "}") braces.pop();
      let j = i + 1;
      while (j < src.length && src[j] !== "`" && !(src[j] === "$" && src[j + 1] === "{")) {
        j += src[j] === "\\" ? 2 : 1;
      }
      blank(i + 1, j, false);
      if (src[j] === "$") {
        braces.push(depth);
        i = j + 2;
      } else i = j + 1;
      continue;
    }
    if (c === "{") depth++;
    if (c === "}") depth--;
    i++;
  }
  return { code: code.join(""), masked: masked.join("") };
}

/** Source text without comments; strings and template literals are kept. */
export function stripComments(src: string): string {
  return scan(src).code;
}

// Matched on the masked text (so nothing inside a string counts); each ends at the opening quote.
const IMPORT_PATTERNS = [
  /\b(?:import|export)\s+(?:type\s+)?[^;"'`]*?\bfrom\s*["']/g,
  /\bimport\s*["']/g,
  /\bimport\s*\(\s*["']/g,
];

/** Every module specifier `src` imports or re-exports (static, type-only, dynamic). */
export function importsOf(src: string): string[] {
  const { code, masked } = scan(src);
  const found: { at: number; spec: string }[] = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const m of masked.matchAll(pattern)) {
      const open = m.index + m[0].length - 1;
      const close = code.indexOf(code[open]!, open + 1);
      if (close > open) found.push({ at: open, spec: code.slice(open + 1, close) });
    }
  }
  return found.sort((a, b) => a.at - b.at).map((f) => f.spec);
}

/** True when `src` uses the `Bun` global outside comments and strings. */
export function usesBunGlobal(src: string): boolean {
  return /(?<![.\w$])Bun\./.test(scan(src).masked);
}

function walk(dir: string, out: string[]): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith(".ts")) out.push(path);
  }
}

const layerOf = (rel: string): string | undefined =>
  rel.startsWith("lib/") ? rel.split("/")[1] : undefined;

/** Checks every .ts file under `root`; returns the violations not in KNOWN_VIOLATIONS and the stale exceptions. */
export function checkImports(root: string): { violations: Violation[]; stale: string[] } {
  const files: string[] = [];
  for (const dir of ["lib", "cli", "bench", "test"]) walk(join(root, dir), files);
  if (existsSync(join(root, "mod.ts"))) files.push(join(root, "mod.ts"));
  const all: Violation[] = [];
  for (const file of files) {
    const rel = relative(root, file).split(sep).join("/");
    const src = readFileSync(file, "utf8");
    const layer = layerOf(rel);
    for (const spec of importsOf(src)) {
      const allowedAt = RUNTIME_MODULES[spec];
      if (allowedAt) {
        if (!allowedAt.some((prefix) => rel.startsWith(prefix))) {
          all.push({ from: rel, to: spec, rule: `${spec} only in ${allowedAt.join(", ")}` });
        }
        continue;
      }
      if (layer === undefined) continue; // cli/, bench/, test/, mod.ts: the composition roots
      if (spec.startsWith(".")) {
        const target = relative(root, resolve(dirname(file), spec))
          .split(sep)
          .join("/");
        const to = layerOf(target);
        if (target.startsWith("cli/") || target === "mod.ts") {
          all.push({ from: rel, to: target, rule: "lib/ never imports cli/" });
        } else if (to !== undefined && to !== layer && !(ALLOWED[layer] ?? []).includes(to)) {
          all.push({ from: rel, to: target, rule: `lib/${layer} may not import lib/${to}` });
        }
      } else if (!spec.startsWith("node:") && !(PACKAGES[layer] ?? []).includes(spec)) {
        all.push({ from: rel, to: spec, rule: `lib/${layer} imports no npm package ${spec}` });
      }
    }
    if (layer !== undefined && !BUN_GLOBAL.includes(layer) && usesBunGlobal(src)) {
      all.push({ from: rel, to: "Bun.*", rule: "the Bun global only in lib/sys and lib/lease" });
    }
  }
  const known = new Set(KNOWN_VIOLATIONS.map((k) => `${k.from} -> ${k.to}`));
  const seen = new Set(all.map((v) => `${v.from} -> ${v.to}`));
  return {
    violations: all.filter((v) => !known.has(`${v.from} -> ${v.to}`)),
    stale: [...known].filter((k) => !seen.has(k)),
  };
}

if (import.meta.main) {
  const at = process.argv.indexOf("--root");
  const root = at > 0 ? resolve(process.argv[at + 1] ?? ".") : resolve(import.meta.dir, "..");
  const { violations, stale } = checkImports(root);
  for (const s of stale) console.log(`note: known violation no longer occurs, drop it: ${s}`);
  for (const v of violations) console.error(`forbidden import: ${v.from} -> ${v.to} (${v.rule})`);
  if (violations.length > 0) {
    console.error(`${violations.length} forbidden import(s); see docs/architecture.md`);
    process.exit(1);
  }
  console.log(`imports follow docs/architecture.md (${KNOWN_VIOLATIONS.length} known violations)`);
}
