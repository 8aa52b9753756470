/**
 * Static bindings for the TEP from a file (`dstm tep --binding-file FILE`), beside the
 * repeatable `--binding V4=V6`.
 *
 * One binding per line, fields separated by spaces or tabs, `#` starts a comment:
 *
 * ```
 * # IPV4         IPV6              [OFFSET/PSIDLEN/PSID]
 * 198.51.100.9   2001:db8:1::99                  # the whole address
 * 198.51.100.10  2001:db8:1::a0   6/2/0          # RFC 7597 §5.1 port set: a quarter of it
 * 198.51.100.10  2001:db8:1::a1   6/2/1
 * ```
 *
 * The third field is the port set as `dstm lease ls` prints it (lib/net/portset.ts); `all`
 * means the whole address, like no third field. Two lines for the same (IPv4, PSID) are an
 * error, and so are two sharing rules for one address (the binding table keys an address's
 * bindings by its one rule, binding.ts): a static table is checked whole before the TEP
 * starts, so that a typo cannot surface later as a rejected BIND from the server.
 *
 * Errors name the file and the line (`bindings.txt:12: …`), or the `--binding` flag.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { canonicalIPv6, formatIPv4, parseIPv4 } from "../net/addr.ts";
import { type PortSetValue, portSetProblem } from "../net/portset.ts";
import { MAX_BINDINGS } from "../tunnel/binding.ts";
import type { WireBinding } from "../wire/dstm_types.ts";

/** Size of the TEP's binding table when `--max-bindings` is not given and static bindings fit. */
export const DEFAULT_MAX_BINDINGS = 1 << 17;
/** Room left for the server's bindings when static bindings make the default table grow. */
export const SERVER_ROOM = 1 << 16;

/** A line of a binding file (or a `--binding` flag) the TEP cannot use; the message names it. */
export class BindingFileError extends Error {
  override name = "BindingFileError";

  /** `file`: the binding file that could not be read (its `cause` the system's error), if that is the problem. */
  constructor(message: string, options?: ErrorOptions & { readonly file?: string }) {
    super(message, options);
    this.file = options?.file;
  }

  readonly file: string | undefined;
}

const WHOLE: PortSetValue = Object.freeze({ offset: 0, psidLength: 0, psid: 0 });

/**
 * The static bindings of a TEP with where each came from, checked as they are added: no
 * (IPv4, PSID) twice, one sharing rule per address. Memory stays a few numbers per binding,
 * so a file of a few hundred thousand lines loads in well under a second.
 *
 * @example
 * const set = new StaticBindings();
 * set.add({ host4: parseIPv4("198.51.100.9")!, host6: "2001:db8:1::99", portSet: WHOLE }, "--binding", 1);
 * parseBindingFile(text, "bindings.txt", set);
 * set.bindings.length // every binding, in the order added
 */
export class StaticBindings {
  readonly bindings: WireBinding[] = [];
  /** Names of the sources (files, "--binding"); an origin is `line * 256 + source index`. */
  readonly #sources: string[] = [];
  /** (IPv4 · 65536 + PSID) → origin. */
  readonly #keys = new Map<number, number>();
  /** IPv4 → rule (psidLength | offset << 8, 0 when whole) · 2^40 + origin. */
  readonly #rules = new Map<number, number>();

  get size(): number {
    return this.bindings.length;
  }

  /**
   * Adds one binding from `source` (a file name, or "--binding"), `line` 1-based. Throws a
   * BindingFileError naming this place and the earlier one on a duplicate or a second rule.
   */
  add(binding: WireBinding, source: string, line: number): void {
    const origin = line * 256 + this.#source(source);
    const { host4, portSet } = binding;
    const k = portSet.psidLength;
    const rule = k === 0 ? 0 : k | (portSet.offset << 8);
    const psid = k === 0 ? 0 : portSet.psid;
    const previous = this.#rules.get(host4);
    if (previous !== undefined) {
      const oldRule = Math.floor(previous / 2 ** 40);
      if (oldRule !== rule) {
        throw new BindingFileError(
          `${this.#where(origin)}: ${formatIPv4(host4)} is bound with ${_ruleText(oldRule)} at ${this.#where(previous % 2 ** 40)}, not ${_ruleText(rule)}: one sharing rule per address`,
        );
      }
    }
    const key = host4 * 65536 + psid;
    const earlier = this.#keys.get(key);
    if (earlier !== undefined) {
      const what = k === 0 ? formatIPv4(host4) : `${formatIPv4(host4)} PSID ${psid}`;
      throw new BindingFileError(
        `${this.#where(origin)}: ${what} is already bound at ${this.#where(earlier)}`,
      );
    }
    this.#keys.set(key, origin);
    if (previous === undefined) this.#rules.set(host4, rule * 2 ** 40 + origin);
    this.bindings.push(binding);
  }

  /** Where the binding of `host4` was given (`FILE:LINE` or `--binding #N`), or "" if none was. */
  whereOf(host4: number): string {
    const entry = this.#rules.get(host4);
    return entry === undefined ? "" : this.#where(entry % 2 ** 40);
  }

  #source(name: string): number {
    let index = this.#sources.indexOf(name);
    if (index < 0) {
      if (this.#sources.length === 256) throw new RangeError("more than 256 binding sources");
      index = this.#sources.push(name) - 1;
    }
    return index;
  }

  #where(origin: number): string {
    const source = this.#sources[origin % 256]!;
    const line = Math.floor(origin / 256);
    return source.startsWith("--") ? `${source} #${line}` : `${source}:${line}`;
  }
}

/**
 * One line of a binding file: a binding, `null` for a blank or comment line, or the problem
 * as text (without the place; `parseBindingFile` adds it).
 *
 * @example parseBindingLine("198.51.100.10 2001:db8:1::a0 6/2/0 # node A")
 * // { host4: 3325256714, host6: "2001:db8:1::a0", portSet: { offset: 6, psidLength: 2, psid: 0 } }
 */
export function parseBindingLine(line: string): WireBinding | string | null {
  const hash = line.indexOf("#");
  const text = (hash >= 0 ? line.slice(0, hash) : line).trim();
  if (text === "") return null;
  const fields = text.split(/[ \t]+/);
  if (fields.length < 2 || fields.length > 3) {
    return `expected "IPV4 IPV6" or "IPV4 IPV6 OFFSET/PSIDLEN/PSID", not ${fields.length} field${fields.length === 1 ? "" : "s"}`;
  }
  const host4 = parseIPv4(fields[0]!);
  if (host4 === null) return `"${fields[0]}" is not an IPv4 address`;
  const host6 = canonicalIPv6(fields[1]!);
  if (host6 === null) return `"${fields[1]}" is not an IPv6 address`;
  if (fields.length === 2) return { host4, host6, portSet: WHOLE };
  const portSet = _parsePortSetField(fields[2]!);
  if (typeof portSet === "string") return portSet;
  return { host4, host6, portSet };
}

/**
 * Parses the text of a binding file named `file` into `into` (a new StaticBindings when
 * absent) and returns it. Throws a BindingFileError `file:line: problem` at the first bad
 * line, duplicate or conflicting rule.
 *
 * @example parseBindingFile("198.51.100.9 2001:db8:1::99\n", "b.txt").size // 1
 */
export function parseBindingFile(
  text: string,
  file: string,
  into: StaticBindings = new StaticBindings(),
): StaticBindings {
  let line = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    line++;
    const parsed = parseBindingLine(text.slice(start, end));
    if (typeof parsed === "string") throw new BindingFileError(`${file}:${line}: ${parsed}`);
    if (parsed !== null) into.add(parsed, file, line);
    start = end + 1;
  }
  return into;
}

/**
 * A `--binding V4=V6` flag (the whole address).
 *
 * @example parseBindingFlag("198.51.100.9=2001:db8:1::99").host6 // "2001:db8:1::99"
 */
export function parseBindingFlag(text: string): WireBinding | null {
  const [v4, v6, ...rest] = text.split("=");
  if (rest.length > 0 || v4 === undefined || v6 === undefined) return null;
  const host4 = parseIPv4(v4.trim());
  const host6 = canonicalIPv6(v6.trim());
  return host4 === null || host6 === null ? null : { host4, host6, portSet: WHOLE };
}

/**
 * The `--binding` flags (`V4=V6` texts), then every `--binding-file`, checked as one table.
 * Throws BindingFileError naming the flag, or the file and line, at fault (also for a file
 * that cannot be read).
 *
 * @example loadStaticBindings(["198.51.100.9=2001:db8:1::99"], ["/etc/dstm/bindings.txt"]).size
 */
export function loadStaticBindings(
  flags: readonly string[],
  files: readonly string[],
): StaticBindings {
  const statics = new StaticBindings();
  flags.forEach((text, i) => {
    const binding = parseBindingFlag(text);
    if (!binding) throw new BindingFileError(`--binding: "${text}" is not IPV4=IPV6`);
    statics.add(binding, "--binding", i + 1);
  });
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      // The cause keeps the system's error: the CLI says it in words (lib/config/errors.ts).
      throw new BindingFileError(
        `--binding-file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        { cause: error, file },
      );
    }
    parseBindingFile(text, file, statics);
  }
  return statics;
}

/**
 * The binding table size for `statics` static bindings: `explicit` (`--max-bindings`) when
 * given, else DEFAULT_MAX_BINDINGS, or the static bindings plus SERVER_ROOM when the default
 * would leave the server less than that (capped at MAX_BINDINGS). A string says why no size
 * works: the static bindings alone exceed `explicit` or MAX_BINDINGS.
 *
 * @example bindingTableSize(262_144) // { size: 327_680 }
 * @example bindingTableSize(10, 5)   // "--max-bindings 5 is less than the 10 static bindings; …"
 */
export function bindingTableSize(statics: number, explicit?: number): { size: number } | string {
  if (explicit !== undefined) {
    return statics > explicit
      ? `--max-bindings ${explicit} is less than the ${statics} static bindings; raise it or leave it out`
      : { size: explicit };
  }
  if (statics > MAX_BINDINGS)
    return `${statics} static bindings: a TEP's binding table holds at most ${MAX_BINDINGS}`;
  return { size: Math.max(DEFAULT_MAX_BINDINGS, Math.min(statics + SERVER_ROOM, MAX_BINDINGS)) };
}

/** `OFFSET/PSIDLEN/PSID` or `all`, with portSetProblem's reason when the numbers do not fit. */
function _parsePortSetField(text: string): PortSetValue | string {
  if (text === "all") return WHOLE;
  const m = /^(\d{1,2})\/(\d{1,2})\/(\d{1,5})$/.exec(text);
  if (!m) return `port set "${text}" is not OFFSET/PSIDLEN/PSID (e.g. 6/2/1) or "all"`;
  const set = { offset: Number(m[1]), psidLength: Number(m[2]), psid: Number(m[3]) };
  const problem = portSetProblem(set);
  if (problem !== null) return `port set "${text}": ${problem}`;
  // k = 0 is the whole address whatever the other numbers say; store it one way.
  return set.psidLength === 0 ? WHOLE : set;
}

function _ruleText(rule: number): string {
  const k = rule & 0xff;
  return k === 0 ? "the whole address" : `port sets of offset ${rule >>> 8}, PSID length ${k}`;
}
