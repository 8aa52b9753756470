/**
 * Pieces every long-running subcommand shares: loggers, signals, reload.
 *
 * @module
 */
import { Option } from "@commander-js/extra-typings";
import { type LogFormat, Logger, type LogLevel } from "../lib/control/log.ts";
import type { Metrics } from "../lib/control/metrics.ts";
import { stdoutIsJournal } from "../lib/sys/journal.ts";
import type { AuthKey } from "../lib/wire/auth.ts";

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
  metrics?.counter("dstm_reloads_total", "Configuration reloads, by result (applied, refused)", [
    "result",
  ]);
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
