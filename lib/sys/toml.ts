/**
 * TOML configuration files, parsed by Bun's built-in TOML parser (`Bun.TOML.parse`,
 * https://bun.sh/docs/runtime/bun-apis).
 *
 * @module
 */
import { readFileSync } from "node:fs";

/** Reads and parses a TOML file; throws an Error whose message names the file and the problem. */
export function readTomlFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(
      `cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  try {
    return Bun.TOML.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new Error(
      `config file ${path} is not valid TOML: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}
