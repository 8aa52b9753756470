/**
 * The command line of every bench script: node:util's parseArgs, plus what a newcomer
 * expects of a command: `--help` (or `-h`) prints the script's usage and exits 0, and an
 * unknown or malformed option prints one line saying which, then the usage, and exits 2,
 * instead of a stack trace. The usage is the script's own module comment (its first
 * `/** … *\/` block), so it is written once, next to the code it describes.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";

/**
 * `parseArgs(config)` for the bench script at `file` (pass `import.meta.path`): exits 0 after
 * printing the usage on `--help`, exits 2 with a one-line error and the usage on an option
 * parseArgs refuses. Other errors are thrown.
 */
export function parseBenchArgs<T extends ParseArgsConfig>(file: string, config: T) {
  const args = config.args ?? process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(benchUsage(file));
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    if (!code.startsWith("ERR_PARSE_ARGS")) throw error;
    console.error(`${basename(file)}: ${(error as Error).message}\n\n${benchUsage(file)}`);
    process.exit(2);
  }
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
