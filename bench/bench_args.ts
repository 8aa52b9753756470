/**
 * The command line of every bench script: node:util's parseArgs, plus what a newcomer
 * expects of a command: `--help` (or `-h`) prints the script's usage and exits 0, and an
 * unknown or malformed option prints one line saying which, then the usage, and exits 2,
 * instead of a stack trace; so does a number that is none (an option whose default is a
 * number, or one named in `numeric`, must be a finite number above 0, or 0 or more where 0
 * means something: `--hosts abc` or `--rounds 0` would otherwise run nothing and print NaN). The usage is the script's own
 * module comment (its first `/** … *\/` block), so it is written once, next to the code it
 * describes.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";

/**
 * `parseArgs(config)` for the bench script at `file` (pass `import.meta.path`): exits 0 after
 * printing the usage on `--help`, exits 2 with a one-line error and the usage on an option
 * parseArgs refuses or a number that is none (see the module comment; `numeric`: options
 * without a numeric default that take one). Other errors are thrown.
 */
export function parseBenchArgs<T extends ParseArgsConfig>(
  file: string,
  config: T,
  numeric: readonly string[] = [],
) {
  const args = config.args ?? process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(benchUsage(file));
    process.exit(0);
  }
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    if (!code.startsWith("ERR_PARSE_ARGS")) throw error;
    refuse(file, (error as Error).message);
  }
  const values = parsed.values as Record<string, unknown>;
  for (const [name, option] of Object.entries(config.options ?? {})) {
    const value = values[name];
    if (typeof value !== "string") continue;
    if (!numeric.includes(name) && !isNumberText(option.default)) continue;
    const n = Number(value);
    const zeroOk = option.default === "0" || MAY_BE_ZERO.has(name);
    if (!Number.isFinite(n) || n < 0 || (n === 0 && !zeroOk))
      refuse(
        file,
        `--${name} ${JSON.stringify(value)}: expected a number ${zeroOk ? "of 0 or more" : "above 0"}`,
      );
  }
  return parsed;
}

/**
 * The positional numbers of a script without options (`bun bench/X.ts [count] [rounds]`):
 * each finite and above 0, else its default; `--help` prints the usage (exit 0), anything
 * else that is not a number is refused with the usage (exit 2).
 */
export function benchNumbers(file: string, names: readonly string[], defaults: readonly number[]) {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(benchUsage(file));
    process.exit(0);
  }
  if (args.length > names.length)
    refuse(file, `at most ${names.length} arguments: ${names.join(" ")}`);
  return defaults.map((fallback, i) => {
    const text = args[i];
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!(n > 0 && Number.isFinite(n)))
      refuse(file, `${names[i]} ${JSON.stringify(text)}: expected a number above 0`);
    return n;
  });
}

/**
 * Numeric options for which 0 means something (iperf3's --omit: no warm-up seconds;
 * reclaim.ts's --max-leases and --max-ms: no limit, the engine's own meaning of 0).
 */
const MAY_BE_ZERO = new Set(["omit", "max-leases", "max-ms"]);

function isNumberText(value: unknown): boolean {
  return typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value));
}

function refuse(file: string, message: string): never {
  console.error(`${basename(file)}: ${message}\n\n${benchUsage(file)}`);
  process.exit(2);
}

/** The module comment of `file` as plain text (the leading ` * ` and `@module` removed). */
export function benchUsage(file: string): string {
  const text = readFileSync(file, "utf8");
  const comment = /\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? "";
  return comment
    .split("\n")
    .map((line) => line.replace(/^\s*\* ?/, ""))
    .filter((line) => !line.startsWith("@module"))
    .join("\n")
    .trim();
}
