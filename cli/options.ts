/**
 * Commander options generated from a setting schema (lib/config/setting.ts), and the merge of
 * flags over the config file over the defaults — one place for every long-running command.
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import { type ConfigFile, ConfigFileError, locateKey, readConfigFile } from "../lib/config/file.ts";
import { camel, type Setting, type SettingSchema } from "../lib/config/setting.ts";
import { UsageError } from "./errors.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The help text of a setting: its doc and, one way for every setting, its default. */
export function helpText(setting: Setting): string {
  const fallback = setting.default ?? setting.defaultDoc;
  return fallback === undefined ? setting.doc : `${setting.doc} (default: ${fallback})`;
}

/** Adds one option per setting of `schema` (plus hidden, deprecated aliases) to `command`. */
export function addSettings<C extends Command<[], Record<string, unknown>>>(
  command: C,
  schema: SettingSchema,
): C {
  for (const s of schema.settings) {
    if (s.fileOnly) continue;
    for (const option of optionsOf(s)) command.addOption(option);
    for (const old of s.deprecated ?? []) {
      const alias = new Option(s.arg ? `--${old} ${s.arg}` : `--${old}`, `deprecated: --${s.name}`);
      if (s.kind.type === "list") alias.argParser(collect);
      command.addOption(alias.hideHelp());
    }
  }
  return command;
}

function optionsOf(s: Setting): Option[] {
  const doc = helpText(s);
  if (s.kind.type === "bool")
    return [
      s.negatable
        ? new Option(`--no-${s.name}`, s.offDoc ?? `turn off: ${s.doc}`)
        : new Option(`--${s.name}`, doc),
    ];
  const option = new Option(`--${s.name} ${s.arg ?? "<value>"}`, doc);
  if (s.kind.type === "list" || s.repeatable) option.argParser(collect);
  if (s.kind.type === "choice") option.choices(s.kind.choices);
  if (!s.offable) return [option];
  return [option, new Option(`--no-${s.name}`, s.offDoc ?? `no ${s.name}`)];
}

/** Flags merged over the config file and the defaults, with where each value came from. */
export interface Settings {
  /** camelCase name → value in flag form (string, boolean, string[]; false for `--no-X`). */
  readonly values: Record<string, unknown>;
  /** Rewrites a UsageError about `--NAME` when NAME came from the file: `FILE:LINE:COL: NAME…`. */
  explain(error: unknown): unknown;
  /** `FILE:LINE:COL` of a key path in the config file (e.g. ["pool", 0]), if one was read. */
  where(keys: readonly (string | number)[]): string | undefined;
  /** `FILE:LINE:COL` of the setting when its value came from the config file, else undefined. */
  fromFile(name: string): string | undefined;
}

export interface MergeOptions {
  /** Whether the flag `camelName` was given on the command line (default: its value is defined). */
  fromCli?: (camelName: string) => boolean;
  /** Fill in each setting's `default` when neither flag nor file gives it (default true). */
  defaults?: boolean;
  /** Deprecation warnings (default: `dstm: …` on stderr). */
  warn?: (text: string) => void;
}

/**
 * Merges parsed flags over `--config FILE` (read and checked strictly now, so a reload that
 * calls this again reads the file again) over the schema's defaults. Deprecated flag names
 * and TOML keys are accepted with a warning. Throws UsageError (exit 2) with
 * `FILE:LINE:COL:` for anything wrong in the file.
 */
export function mergeSettings(
  schema: SettingSchema,
  flags: Readonly<Record<string, unknown>>,
  opts: MergeOptions = {},
): Settings {
  const values: Record<string, unknown> = { ...flags };
  const warn = opts.warn ?? ((text: string) => process.stderr.write(`dstm: ${text}\n`));
  const fromCli = opts.fromCli ?? ((key: string) => flags[key] !== undefined);
  const given = new Set<string>();
  for (const s of schema.settings) {
    const key = camel(s.name);
    if (fromCli(key)) given.add(key);
    for (const old of s.deprecated ?? []) {
      const value = values[camel(old)];
      delete values[camel(old)];
      if (value === undefined) continue;
      if (given.has(key))
        throw new UsageError(`--${old} and --${s.name} are the same setting; give --${s.name}`);
      warn(`--${old} is deprecated; use --${s.name}`);
      values[key] = value;
      given.add(key);
    }
  }
  const origins = new Map<string, string>();
  const path = values.config as string | undefined;
  let file: ConfigFile | undefined;
  if (path !== undefined) {
    try {
      file = readConfigFile(path, schema);
    } catch (error) {
      throw error instanceof ConfigFileError ? new UsageError(error.message) : error;
    }
    for (const note of file.notes) warn(note);
    for (const s of schema.settings) {
      const entry = file.values.get(s.name);
      if (!entry || given.has(camel(s.name))) continue;
      values[camel(s.name)] = entry.value;
      origins.set(s.name, entry.where);
    }
  }
  if (opts.defaults !== false) {
    for (const s of schema.settings) {
      if (values[camel(s.name)] === undefined && s.default !== undefined)
        values[camel(s.name)] = s.default;
    }
  }
  return {
    values,
    explain(error) {
      if (!(error instanceof UsageError)) return error;
      const match = /^--([a-z0-9-]+)(.*)$/s.exec(error.message);
      const where = match ? origins.get(match[1] as string) : undefined;
      return where ? new UsageError(`${where}: ${match?.[1]}${match?.[2]}`) : error;
    },
    fromFile: (name) => origins.get(name),
    where(keys) {
      if (!file) return undefined;
      const { line, column } = locateKey(file.text, keys);
      return `${file.path}:${line}:${column}`;
    },
  };
}

/** {@link mergeSettings} of a parsed commander command: "from the command line" is its value source. */
export function commandSettings(
  command: Command<[], Record<string, unknown>>,
  schema: SettingSchema,
): Settings {
  return mergeSettings(schema, command.opts(), {
    fromCli: (key) => command.getOptionValueSource(key) === "cli",
  });
}

/** Runs `fn`, rewriting its UsageError to the config file's position (Settings.explain). */
export async function explained<T>(settings: Settings, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw settings.explain(error);
  }
}
