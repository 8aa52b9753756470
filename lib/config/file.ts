/**
 * Config files: TOML (smol-toml, which reports the line and column of syntax errors),
 * checked strictly against a {@link SettingSchema} with valibot. Every error names the place
 * as `FILE:LINE:COL:` — a schema error's key path is mapped back to the key's position in
 * the source ({@link locateKey}, ./toml_places.ts) — and, inside a table, the key path
 * (`pool[1].share`).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse, TomlError } from "smol-toml";
import * as v from "valibot";
import { closestName, normalName } from "./did_you_mean.ts";
import { readErrorText } from "./errors.ts";
import { describeKind, flagForm, type Setting, type SettingSchema, tomlSchema } from "./setting.ts";
import { keyPathText, type Place, placeOf, type TomlPlaces, tomlPlaces } from "./toml_places.ts";

/** A config file that cannot be used; the message starts with `FILE:LINE:COL:` where known. */
export class ConfigFileError extends Error {
  override name = "ConfigFileError";
}

/** One setting read from the file: its value in flag form and where it was written. */
export interface FileValue {
  readonly value: unknown;
  /** `FILE:LINE:COL` of the key. */
  readonly where: string;
}

export interface ConfigFile {
  readonly path: string;
  readonly text: string;
  /** Where each key path is written (./toml_places.ts). */
  readonly places: TomlPlaces;
  /** Setting name → value and place (deprecated keys already under their new name). */
  readonly values: ReadonlyMap<string, FileValue>;
  /** Deprecation notes (a key renamed), to print as warnings. */
  readonly notes: readonly string[];
}

/** Reads, parses and checks a config file. Throws {@link ConfigFileError}. */
export function readConfigFile(path: string, schema: SettingSchema): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigFileError(`cannot read config file ${path}: ${readErrorText(error)}`);
  }
  return parseConfigText(text, path, schema);
}

/** {@link readConfigFile} on text already read (`path` names it in errors). */
export function parseConfigText(text: string, path: string, schema: SettingSchema): ConfigFile {
  const data = parseToml(text, path);
  const byKey = new Map<string, Setting>();
  for (const s of schema.settings) {
    if (s.flagOnly) continue;
    byKey.set(s.name, s);
  }
  const places = tomlPlaces(text);
  const at = (keys: readonly (string | number)[]) => {
    const { line, column } = placeOf(places, keys);
    return `${path}:${line}:${column}`;
  };
  const notes = renameDeprecatedKeys(data, schema, at);
  const entries: Record<string, v.GenericSchema> = {};
  for (const [key, setting] of byKey) entries[key] = v.optional(tomlSchema(setting));
  const result = v.safeParse(v.strictObject(entries), data, { abortEarly: true });
  if (!result.success) throw schemaError(result.issues[0], data, byKey, schema, at);
  const values = new Map<string, FileValue>();
  for (const [key, setting] of byKey) {
    if (data[key] === undefined) continue;
    const value = flagForm(setting, data[key]);
    values.set(key, { value: setting.path ? besideFile(value, path) : value, where: at([key]) });
  }
  return { path, text, places, values, notes };
}

/**
 * A path-valued setting's value (a string or a list of them) with each relative path made
 * relative to the directory of the config file `file` — under systemd the current directory
 * is `/`, and `key = "tep.key"` means the one next to the file. Not paths: "memory" (--db),
 * URLs (`postgres://…`), false (`control = false`), "" (nothing).
 */
export function besideFile(value: unknown, file: string): unknown {
  if (Array.isArray(value)) return value.map((v) => besideFile(v, file));
  if (typeof value !== "string" || value === "" || value === "memory") return value;
  if (isAbsolute(value) || /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value)) return value;
  return resolve(dirname(resolve(file)), value);
}

/** `text` parsed as TOML; a syntax error is a {@link ConfigFileError} at its line and column. */
function parseToml(text: string, path: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const message = error.message.split("\n")[0]?.replace(/^Invalid TOML document: /, "");
      throw new ConfigFileError(
        `${path}:${error.line}:${error.column}: not valid TOML: ${message}`,
      );
    }
    throw error;
  }
}

/** Renamed keys: moved in `data` to their new name; returns a note for each. Both names: an error. */
function renameDeprecatedKeys(
  data: Record<string, unknown>,
  schema: SettingSchema,
  at: (keys: readonly (string | number)[]) => string,
): string[] {
  const aliases = new Map<string, Setting>();
  for (const s of schema.settings)
    for (const old of s.deprecatedKeys ?? []) if (!s.flagOnly) aliases.set(old, s);
  const notes: string[] = [];
  for (const [old, setting] of aliases) {
    if (!(old in data)) continue;
    if (setting.name in data)
      throw new ConfigFileError(
        `${at([old])}: "${old}" and "${setting.name}" are the same setting; keep "${setting.name}"`,
      );
    notes.push(`${at([old])}: "${old}" is deprecated; call it "${setting.name}"`);
    data[setting.name] = data[old];
    delete data[old];
  }
  return notes;
}

/**
 * The {@link ConfigFileError} of the first schema issue: an unknown setting (top level or in a
 * table), a wrong type inside the Nth `[[table]]`, or a setting's wrong type, at its place.
 */
function schemaError(
  first: v.BaseIssue<unknown>,
  data: Record<string, unknown>,
  byKey: ReadonlyMap<string, Setting>,
  schema: SettingSchema,
  at: (keys: readonly (string | number)[]) => string,
): ConfigFileError {
  const { issue, keys } = deepest(first, []);
  const top = keys[0] as string | undefined;
  const setting = top === undefined ? undefined : byKey.get(top);
  const where = at(keys.length ? keys : [String(issue.input)]);
  if (!setting) {
    const name = top ?? String(issue.input);
    // rx_ring for rx-ring, or a typo: the key it was meant to be (lib/config/did_you_mean.ts).
    const meant = closestName(name, byKey.keys());
    if (meant !== undefined) return new ConfigFileError(`${where}: ${unknownKey(name, meant)}`);
    // new-db, check, config: flags for one run, not settings to keep in a file.
    const flag = schema.settings.find((s) => s.flagOnly && s.name === normalName(name));
    if (flag)
      return new ConfigFileError(
        `${where}: unknown setting "${name}": --${flag.name} is a command-line flag only, not a key of the file`,
      );
    return new ConfigFileError(
      `${where}: unknown setting "${name}" (${schema.command} knows: ${[...byKey.keys()].join(", ")})`,
    );
  }
  if (issue.type === "strict_object" && keys.length > 1) {
    const key = String(keys.at(-1));
    const table = keyPathText(keys.slice(0, -1));
    // TOML puts every key after [[pool]] into that table: a top-level setting written last.
    if (byKey.has(key))
      return new ConfigFileError(
        `${where}: unknown setting "${key}" in ${table} (${key} is a top-level setting: write it above the first [[${top}]])`,
      );
    const meant = closestName(key, tableKeys(setting, keys.slice(1, -1)));
    return new ConfigFileError(
      `${where}: ${meant === undefined ? `unknown setting "${key}" in ${table}` : unknownKey(key, meant, ` in ${table}`)}`,
    );
  }
  if (keys.length > 1) {
    // Inside a table or an array ([[pool]], an inline table, a list): the whole key path.
    const field = keyPathText(keys);
    // A list given as one string (prefixes = "192.0.2.0/24"): say how to write it.
    const listHint =
      issue.expected === "Array" && typeof issue.input === "string"
        ? ` (write ${String(keys.at(-1))} = [${JSON.stringify(issue.input)}])`
        : "";
    return new ConfigFileError(
      `${where}: ${field} must be ${expectedOf(issue.expected)}, not ${showValue(issue.input)}${listHint}`,
    );
  }
  const value = data[top as string];
  const got = showValue(value);
  // A repeatable setting given once: say how to write it.
  const hint =
    setting.kind.type === "list" && typeof value === "string"
      ? ` (write ${top} = [${JSON.stringify(value)}])`
      : "";
  return new ConfigFileError(
    `${where}: ${top} must be ${describeKind(setting)}, not ${got}${hint}`,
  );
}

/**
 * `unknown setting "rx_ring"; did you mean "rx-ring"?`, saying why when it is the `_`;
 * `inTable` (` in pool`) follows the name.
 */
function unknownKey(name: string, meant: string, inTable = ""): string {
  const why =
    name.replace(/_/g, "-") === meant ? " (TOML keys are spelled as the flags, with -)" : "";
  return `unknown setting "${name}"${inTable}; did you mean "${meant}"?${why}`;
}

/** The shape of a valibot schema that {@link tableKeys} walks. */
interface SchemaNode {
  readonly type: string;
  readonly options?: readonly SchemaNode[];
  readonly wrapped?: SchemaNode;
  readonly item?: SchemaNode;
  readonly entries?: Readonly<Record<string, SchemaNode>>;
}

/**
 * The keys a table of `setting` may have at `path` (below the setting: `[0]` for the first
 * `[[pool]]`), from its valibot schema; empty when there is no table there.
 */
function tableKeys(setting: Setting, path: readonly (string | number)[]): string[] {
  if (setting.kind.type !== "custom") return [];
  const walk = (node: SchemaNode, rest: readonly (string | number)[]): string[] => {
    if (node.options) return node.options.flatMap((o) => walk(o, rest));
    if (node.wrapped) return walk(node.wrapped, rest);
    if (rest.length === 0) return node.entries ? Object.keys(node.entries) : [];
    const [head, ...tail] = rest;
    if (node.item && typeof head === "number") return walk(node.item, tail);
    const entry = typeof head === "string" ? node.entries?.[head] : undefined;
    return entry ? walk(entry, tail) : [];
  };
  return [...new Set(walk(setting.kind.schema as unknown as SchemaNode, path))];
}

/**
 * The issue a union failed on that reaches deepest into the value (the most telling one),
 * with its full key path (a union's inner issues have paths relative to the union's).
 */
function deepest(
  issue: v.BaseIssue<unknown>,
  parent: readonly (string | number)[],
): { issue: v.BaseIssue<unknown>; keys: (string | number)[] } {
  let best = {
    issue,
    keys: [...parent, ...(issue.path ?? []).map((p) => p.key as string | number)],
  };
  for (const sub of issue.issues ?? []) {
    const candidate = deepest(sub, best.keys);
    if (candidate.keys.length > best.keys.length) best = candidate;
  }
  return best;
}

/** valibot's expected type in words. */
function expectedOf(expected: string | null): string {
  switch (expected) {
    case "boolean":
      return "true or false";
    case "number":
      return "an integer";
    case "string":
      return "a string";
    case "Array":
      return "an array of strings";
    default:
      return expected ?? "something else";
  }
}

function showValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object" && value !== null) return "a table";
  return String(value);
}

/**
 * Line and column (1-based) where the key path `keys` is written in TOML `text`: a top-level
 * key (`name = …`), a key of the Nth `[[table]]` or inline table (`["pool", 1, "share"]`), an
 * element of an array (`["pool", 1, "prefixes", 0]`), a `[table]` header; the nearest
 * enclosing place when the key itself is not written (a missing key: its table's header),
 * else 1:1. From the syntax tree (./toml_places.ts); a caller with many paths to place keeps
 * {@link tomlPlaces} of the text instead.
 */
export function locateKey(text: string, keys: readonly (string | number)[]): Place {
  return placeOf(tomlPlaces(text), keys);
}
