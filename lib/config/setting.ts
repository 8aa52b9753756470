/**
 * One description of each setting of `dstm server`, `dstm tep` and `dstm client`: its name
 * (the same for the flag `--NAME` and the TOML key `NAME`), its type, default and doc. The
 * command-line options (cli/options.ts), the strict validation of config files (./file.ts)
 * and the README's tables (./readme.ts) are all generated from it, so a setting is
 * described once.
 *
 * Values are carried in their flag form: a string for text, numbers and durations (parsed
 * and range-checked by the command, which names the flag or the file position in errors),
 * a boolean for switches, a string list for repeatable settings. A TOML value is checked for
 * its TOML type here (valibot schemas) and then converted to that form.
 *
 * @module
 */
import * as v from "valibot";

export type SettingKind =
  | { readonly type: "string" }
  | { readonly type: "bool" }
  /** A whole number; TOML: an integer. */
  | { readonly type: "int" }
  /** Seconds, or a duration like 90s, 15m, 1h30m, 1.5h (./duration.ts); TOML: integer or string. */
  | { readonly type: "duration" }
  /** Repeatable flag; TOML: an array of strings. */
  | { readonly type: "list" }
  | { readonly type: "choice"; readonly choices: readonly string[] }
  /** Anything else (e.g. [[pool]] tables): the schema says what is valid. */
  | { readonly type: "custom"; readonly schema: v.GenericSchema; readonly describe: string };

export interface Setting {
  /** kebab-case: the flag `--NAME` and the TOML key `NAME`. */
  readonly name: string;
  readonly kind: SettingKind;
  /** Placeholder of the flag's value (`<cidr>`); none for switches. */
  readonly arg?: string;
  /** One line: what it does (units, RFC); the default is appended from `default`. */
  readonly doc: string;
  /** The default as the user would type it (shown in --help and the README), if any. */
  readonly default?: string;
  /** Describes a default that is computed (e.g. "the source towards the server"). */
  readonly defaultDoc?: string;
  /** A switch that is on unless `--no-NAME` (TOML: NAME = false). */
  readonly negatable?: boolean;
  /** A value that may also be turned off: `--no-NAME` (TOML: NAME = false). */
  readonly offable?: boolean;
  /** A flag that may be given more than once (always so for lists). */
  readonly repeatable?: boolean;
  /** Help of `--no-NAME` (negatable and offable settings). */
  readonly offDoc?: string;
  /** Old flag names (without --), still accepted with a deprecation warning. */
  readonly deprecated?: readonly string[];
  /** Old TOML keys, still accepted with a deprecation warning. */
  readonly deprecatedKeys?: readonly string[];
  /** Only on the command line (config, check, one-time actions). */
  readonly flagOnly?: boolean;
  /** Only in the config file (e.g. [[pool]] tables). */
  readonly fileOnly?: boolean;
  /**
   * A file system path (or a list of them): written relative in a config file, it is relative
   * to the file's directory (./file.ts), as on the command line it is relative to the current
   * directory. "memory" and URLs (`postgres://…`) are no paths and stay as they are.
   */
  readonly path?: boolean;
  /** Changes on reload (SIGHUP) without a restart; the README says so. */
  readonly reloadable?: boolean;
}

/** The settings of one command, in the order of --help. */
export interface SettingSchema {
  readonly command: string;
  readonly settings: readonly Setting[];
}

/** camelCase of a kebab-case name: what commander calls the option's attribute. */
export function camel(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** What a value of the setting must be, in words (for errors and the README). */
export function describeKind(setting: Setting): string {
  const k = setting.kind;
  switch (k.type) {
    case "string":
      return setting.offable ? "a string, or false" : "a string";
    case "bool":
      return "true or false";
    case "int":
      return "an integer";
    case "duration":
      return 'a duration: seconds as an integer, or a string like "90s", "15m", "1h30m"';
    case "list":
      return "an array of strings";
    case "choice":
      return k.choices.map((c) => `"${c}"`).join(" or ");
    case "custom":
      return k.describe;
  }
}

/** The valibot schema of the setting's TOML value. */
export function tomlSchema(setting: Setting): v.GenericSchema {
  const k = setting.kind;
  let schema: v.GenericSchema;
  switch (k.type) {
    case "string":
      schema = v.string();
      break;
    case "bool":
      schema = v.boolean();
      break;
    case "int":
      schema = v.pipe(v.number(), v.integer());
      break;
    case "duration":
      schema = v.union([v.string(), v.pipe(v.number(), v.integer(), v.minValue(0))]);
      break;
    case "list":
      schema = v.array(v.string());
      break;
    case "choice":
      schema = v.picklist(k.choices as string[]);
      break;
    case "custom":
      schema = k.schema;
      break;
  }
  return setting.offable ? v.union([schema, v.literal(false)]) : schema;
}

/** A TOML value (already valid for `tomlSchema`) in its flag form. */
export function flagForm(setting: Setting, value: unknown): unknown {
  switch (setting.kind.type) {
    case "int":
    case "duration":
      return typeof value === "number" ? String(value) : value;
    default:
      return value;
  }
}
