/** A Logger whose lines a test reads back (every line so far, the logger flushed first). */
import { Logger } from "../../lib/control/log.ts";

export function capturedLog(): { log: Logger; lines: () => string[] } {
  const written: string[] = [];
  const log = new Logger({ sink: (l) => written.push(l) });
  return {
    log,
    lines: () => {
      log.flush();
      return written.join("").split("\n");
    },
  };
}
