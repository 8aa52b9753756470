/**
 * Pieces every long-running subcommand shares: key files, loggers, signals.
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { Option } from "@commander-js/extra-typings";
import { type LogFormat, Logger, type LogLevel } from "../lib/control/log.ts";
import type { Metrics } from "../lib/control/metrics.ts";
import { stdoutIsJournal } from "../lib/sys/journal.ts";
import { type AuthKey, parseKeyFile } from "../lib/wire/auth.ts";
import { UsageError } from "./errors.ts";

/**
 * Reads a key file; throws UsageError naming the file on any problem. Like ssh with a private
 * key, it refuses a file that its group or others may read or write (mode & 0o077): a shared
 * HMAC key anyone on the host can read authenticates anyone.
 */
export function readKeys(path: string): AuthKey[] {
  let text: string;
  try {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0)
      throw new UsageError(
        `key file ${path} is accessible by others (mode 0${mode.toString(8)}); run chmod 600 ${path}`,
      );
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? `no such file (create it with dstm keygen ${path})`
        : code === "EACCES"
          ? "permission denied (run as its owner, or chown it to the user dstm runs as)"
          : (code ?? (error as Error).message);
    throw new UsageError(`cannot read key file ${path}: ${why}`);
  }
  const parsed = parseKeyFile(text);
  if (!parsed.ok) throw new UsageError(`key file ${path}: ${parsed.message}`);
  return parsed.keys;
}

export const logFormatOption = () =>
  new Option("--log-format <format>", "log line format").choices(["text", "json"] as const);
export const logLevelOption = () =>
  new Option("--log-level <level>", "least severe events logged").choices([
    "debug",
    "info",
    "warn",
    "error",
  ] as const);

/** A logger writing to stdout with the format and level flags. */
export function stdoutLogger(flags: { logFormat?: LogFormat; logLevel?: LogLevel }): Logger {
  return new Logger({
    format: flags.logFormat ?? "text",
    level: flags.logLevel ?? "info",
    sink: (text) => process.stdout.write(text),
    priorityPrefix: stdoutIsJournal(),
  });
}

/** Resolves on the first SIGINT or SIGTERM (then stops listening for them). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(signal);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

/**
 * SIGHUP for the client and the TEP: `reload` reads the configuration again and applies what
 * may change live, returning the log level and the settings it changed; it throws (a bad
 * file: UsageError; a setting that needs a restart: an Error saying which) to refuse, and the
 * running configuration stays. Never stops the process (a closed terminal must not take a
 * lease or a tunnel away silently; SIGINT/SIGTERM stop it, with RELEASE). Logs `reload` or
 * `WARN reload-refused`. Returns a function that stops listening.
 */
export function onHangup(
  log: Logger,
  reload: () => { level: LogLevel; changed: readonly string[] },
  metrics?: Metrics,
): () => void {
  metrics?.counter("dstm_reloads_total", "Configuration reloads, by result (applied, refused)");
  const hup = () => {
    try {
      const { level, changed } = reload();
      metrics?.inc("dstm_reloads_total", { result: "applied" });
      log.setLevel(level);
      log.info("reload", {
        reason: "SIGHUP",
        "log-level": level,
        changed: changed.join(",") || "nothing",
      });
    } catch (error) {
      metrics?.inc("dstm_reloads_total", { result: "refused" });
      log.warn("reload-refused", { reason: "SIGHUP", detail: (error as Error).message });
    }
  };
  process.on("SIGHUP", hup);
  return () => process.off("SIGHUP", hup);
}

/** A key as comparable text (id and secret), to tell whether a reload changed it; never logged. */
export function keyText(key: AuthKey | undefined): string {
  if (!key) return "-";
  return `${key.id}:${Array.from(key.secret, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** A port number 1–65535 from a flag, or `fallback` when absent. */
export function parsePort(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`${what}: "${text}" is not a port (1–65535)`);
  return port;
}
