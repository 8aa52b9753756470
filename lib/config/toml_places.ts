/**
 * Where each key and value of a TOML file is written: line and column of every key path, from
 * the syntax tree of toml-eslint-parser (https://github.com/ota-meshi/toml-eslint-parser),
 * which keeps the position of every node. smol-toml, which reads the values (./file.ts),
 * reports positions only for syntax errors; a line scanner of ours (before) knew top-level
 * keys and the keys of `[[table]]` blocks written one per line, and put anything else (a value
 * inside an inline table or a multi-line array, a dotted key, a key after a multi-line
 * string) at the table's header.
 *
 * A key path is what valibot's issues and the settings use: `["pool", 1, "share"]` is `share`
 * in the second `[[pool]]` (or in the second inline table of `pool = [...]`), written
 * {@link keyPathText} as `pool[1].share`.
 *
 * @module
 */
import { type AST, parseTOML } from "toml-eslint-parser";

/** A place in the file, both 1-based. */
export interface Place {
  readonly line: number;
  readonly column: number;
}

/** Key path → place of its key (an array element: of the element; a table: of its header's key). */
export type TomlPlaces = ReadonlyMap<string, Place>;

/**
 * Key paths deeper than this get no place of their own (they are placed at their ancestor of
 * this depth by {@link placeOf}): every setting's path is far shallower (`pool[1].exclude[1]`
 * is 4), and recording every depth of a crafted `a.a.a.…` key or `[a.a.…]` header (each
 * path a string of its own length) took time quadratic in the file: a 1 MB file, hours.
 */
const MAX_DEPTH = 16;

/** The map key of a key path. */
function pathKey(keys: readonly (string | number)[]): string {
  return JSON.stringify(keys);
}

/**
 * Every key path of TOML `text` with its place; an empty map when toml-eslint-parser cannot
 * read the text (the caller has read it with smol-toml already: a dialect difference, not an
 * error of the file).
 */
export function tomlPlaces(text: string): TomlPlaces {
  const places = new Map<string, Place>();
  let program: AST.TOMLProgram;
  try {
    program = parseTOML(text, { tomlVersion: "latest" });
  } catch {
    return places;
  }
  const put = (keys: readonly (string | number)[], node: AST.TOMLNode) => {
    if (keys.length > MAX_DEPTH) return;
    const key = pathKey(keys);
    // The first place a path is written: `[[pool]]` names pool at its first header.
    if (!places.has(key))
      places.set(key, { line: node.loc.start.line, column: node.loc.start.column + 1 });
  };
  const keyValues = (base: readonly (string | number)[], body: readonly AST.TOMLKeyValue[]) => {
    if (base.length >= MAX_DEPTH) return;
    for (const kv of body) {
      const path = [...base];
      for (const part of kv.key.keys) {
        if (path.length >= MAX_DEPTH) break;
        path.push(part.type === "TOMLBare" ? part.name : part.value);
        put(path, part);
      }
      if (path.length - base.length === kv.key.keys.length) value(path, kv.value);
    }
  };
  const value = (path: readonly (string | number)[], node: AST.TOMLContentNode) => {
    if (path.length >= MAX_DEPTH) return;
    if (node.type === "TOMLArray")
      node.elements.forEach((element, i) => {
        put([...path, i], element);
        value([...path, i], element);
      });
    else if (node.type === "TOMLInlineTable") keyValues(path, node.body);
  };
  for (const item of program.body[0].body) {
    if (item.type === "TOMLKeyValue") {
      keyValues([], [item]);
      continue;
    }
    // A header `[[pool]]` names `pool` and `pool[N]`; `[a.b]` names `a` and `a.b`.
    const header = item.key.keys[0] ?? item.key;
    const depth = Math.min(item.resolvedKey.length, MAX_DEPTH);
    for (let n = 1; n <= depth; n++) put(item.resolvedKey.slice(0, n), header);
    keyValues(item.resolvedKey, item.body);
  }
  return places;
}

/**
 * The place of `keys` in `places`: the key itself, else the nearest written path above it (a
 * key missing from its table: the table's header), else 1:1.
 */
export function placeOf(places: TomlPlaces, keys: readonly (string | number)[]): Place {
  for (let n = Math.min(keys.length, MAX_DEPTH); n > 0; n--) {
    const place = places.get(pathKey(keys.slice(0, n)));
    if (place) return place;
  }
  return { line: 1, column: 1 };
}

/**
 * A key path as text: `pool[1].share`, `pool[0].prefixes[2]`; a key that is not a bare TOML
 * key is quoted (`a."b c"`).
 *
 * @example keyPathText(["pool", 1, "links", 0]) // "pool[1].links[0]"
 */
export function keyPathText(keys: readonly (string | number)[]): string {
  let text = "";
  for (const key of keys) {
    if (typeof key === "number") text += `[${key}]`;
    else {
      const bare = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
      text += text === "" ? bare : `.${bare}`;
    }
  }
  return text;
}
