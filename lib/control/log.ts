/**
 * One line per event, as text (`2026-11-26T10:00:00.000Z allocate ipv4=192.0.2.10 host6=…`)
 * or JSON (`{"ts":"…","event":"allocate","ipv4":"192.0.2.10",…}`) for log shippers.
 *
 * Lines go to a sink in batches: at tens of thousands of events per second, one write()
 * per line would cost more than the allocation itself.
 *
 * @module
 */

export type LogFormat = "text" | "json";
export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | undefined>;

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Receives whole lines, each ending in "\n", possibly several at once. */
  sink: (text: string) => void;
  /** Clock for timestamps (ms); injectable for tests. */
  now?: () => number;
  /**
   * Start each line with its syslog priority, `<7>` debug, `<6>` info, `<4>` warn, `<3>` error
   * (sd-daemon(3)), which journald turns into PRIORITY=; only when stdout is the journal
   * (lib/sys/journal.ts stdoutIsJournal).
   */
  priorityPrefix?: boolean;
}
const PRIORITIES: Record<LogLevel, string> = {
  debug: "<7>",
  info: "<6>",
  warn: "<4>",
  error: "<3>",
};

export class Logger {
  readonly #format: LogFormat;
  #level: number;
  readonly #sink: (text: string) => void;
  readonly #now: () => number;
  readonly #priorityPrefix: boolean;
  #pending: string[] = [];
  #scheduled = false;
  /** The last timestamp made and its time (ms): lines of one millisecond share it. */
  #tsAt = Number.NaN;
  #ts = "";
  /** Timestamps of one second share their date and time up to the second. */
  readonly #iso = new IsoTime();

  constructor(options: LoggerOptions) {
    this.#format = options.format ?? "text";
    this.#level = LEVELS[options.level ?? "info"];
    this.#sink = options.sink;
    this.#now = options.now ?? Date.now;
    this.#priorityPrefix = options.priorityPrefix ?? false;
  }

  debug(event: string, fields: LogFields = {}): void {
    this.log("debug", event, fields);
  }
  info(event: string, fields: LogFields = {}): void {
    this.log("info", event, fields);
  }
  warn(event: string, fields: LogFields = {}): void {
    this.log("warn", event, fields);
  }
  error(event: string, fields: LogFields = {}): void {
    this.log("error", event, fields);
  }

  /** Whether `level` is logged now (to skip building the fields of a line that would not be). */
  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.#level;
  }

  /** Changes the least severe level logged from now on (configuration reload). */
  setLevel(level: LogLevel): void {
    this.#level = LEVELS[level];
  }

  log(level: LogLevel, event: string, fields: LogFields): void {
    if (LEVELS[level] < this.#level) return;
    const ts = this.#stamp();
    this.#push(
      level,
      this.#format === "json"
        ? jsonLine(ts, level, event, fields)
        : textLine(ts, level, event, fields),
    );
  }

  /** The time stamp of a line written now (formatted once per millisecond). */
  #stamp(): string {
    const now = this.#now();
    if (now !== this.#tsAt) {
      this.#tsAt = now;
      this.#ts = this.#iso.format(now);
    }
    return this.#ts;
  }

  /** Queues `line` (with the journal's priority prefix when on); written at the next flush. */
  #push(level: LogLevel, line: string): void {
    if (this.#priorityPrefix) this.#pending.push(PRIORITIES[level]);
    this.#pending.push(line);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The line format: a caller may write a `text` line's fields itself ({@link logText}). */
  get format(): LogFormat {
    return this.#format;
  }

  /**
   * One text-format line whose fields are written already: `fieldsText` is what `log` would
   * write after the event, ` key=value` per field, each value through {@link textValue}, so
   * the line has the same bytes. For the hot paths (a lease line per allocation), which skip
   * the fields object and its walk; only for {@link format} `text` (throws otherwise).
   */
  logText(level: LogLevel, event: string, fieldsText: string): void {
    if (LEVELS[level] < this.#level) return;
    if (this.#format !== "text") throw new Error("logText: the log format is not text");
    this.#push(level, `${textHead(this.#stamp(), level, event)}${fieldsText}\n`);
  }

  /** Writes every pending line now (call before exit). */
  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const text = this.#pending.join("");
    this.#pending = [];
    this.#sink(text);
  }
}

/** Milliseconds since the epoch of 10000-01-01T00:00:00.000Z: beyond, toISOString has 6-digit years. */
const ISO_MAX_MS = 253_402_300_800_000;

/**
 * `new Date(ms).toISOString()` (`2026-11-30T15:30:51.123Z`, UTC, RFC 3339) for many times, most
 * of them in the same second: the text up to the second is made once per second and kept,
 * the milliseconds appended, so a time costs a short concatenation instead of a `Date` and
 * its formatting. Times outside 1970–9999 or not whole milliseconds go to `Date` itself.
 * Keep one per stream of times (line timestamps, lease expiries): each keeps one second.
 */
export class IsoTime {
  #second = Number.NaN;
  /** `2026-11-30T15:30:51.` of {@link #second}. */
  #prefix = "";

  /** The last time formatted and its text: the leases of one millisecond expire in the same one. */
  #lastMs = Number.NaN;
  #lastText = "";

  /** The ISO 8601 text of `ms` (ms since the Unix epoch), exactly as `Date#toISOString` writes it. */
  format(ms: number): string {
    if (ms === this.#lastMs) return this.#lastText;
    if (!(ms >= 0 && ms < ISO_MAX_MS) || !Number.isInteger(ms)) return new Date(ms).toISOString();
    const second = Math.floor(ms / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#prefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    const milli = ms - second * 1000;
    this.#lastMs = ms;
    this.#lastText = `${this.#prefix}${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}Z`;
    return this.#lastText;
  }
}

/**
 * What lies under `error` for a log line's `cause` field: its `code` (e.g. `SQLITE_IOERR`,
 * `ECONNREFUSED`) and the chain of `error.cause` messages, `a: b` joined by " <- "; undefined
 * when there is nothing beyond the message itself.
 */
export function causeOf(error: unknown): string | undefined {
  const parts: string[] = [];
  let e: unknown = error;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (depth > 0) parts.push(e instanceof Error ? e.message : String(e));
    if (typeof code === "string" || typeof code === "number") parts.push(String(code));
    e = (e as { cause?: unknown }).cause;
  }
  return parts.length > 0 ? parts.join(" <- ") : undefined;
}

const NEEDS_QUOTES = /[\s"=]/;

/**
 * A field's value as a text line writes it: as it is, or JSON-quoted when empty or holding
 * white space, `"` or `=`.
 */
export function textValue(text: string): string {
  return text === "" || NEEDS_QUOTES.test(text) ? JSON.stringify(text) : text;
}

/** A text line up to its fields: the time, the level unless info, the event. */
function textHead(ts: string, level: LogLevel, event: string): string {
  return `${ts} ${level === "info" ? "" : `${level.toUpperCase()} `}${event}`;
}

function textLine(ts: string, level: LogLevel, event: string, fields: LogFields): string {
  let line = textHead(ts, level, event);
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined) continue;
    line += ` ${key}=${textValue(typeof value === "string" ? value : String(value))}`;
  }
  return `${line}\n`;
}

function jsonLine(ts: string, level: LogLevel, event: string, fields: LogFields): string {
  const record: Record<string, unknown> = { ts, level, event };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) record[key] = value;
  return `${JSON.stringify(record)}\n`;
}
