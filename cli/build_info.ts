/**
 * What `dstm --version` prints: `dstm 0.1.0 (commit abc1234, bun 1.4.5, linux x64)`.
 *
 * compile.sh bakes the commit into the executable (`bun build --define DSTM_COMMIT=…`); run
 * from a source checkout, the commit comes from `git rev-parse` when asked for.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { dirname } from "node:path";
import { VERSION } from "./version.ts";

declare const DSTM_COMMIT: string | undefined;

/** The commit dstm was built from (short hash, "-dirty" with local changes), or "unknown". */
export function buildCommit(): string {
  if (typeof DSTM_COMMIT === "string" && DSTM_COMMIT !== "") return DSTM_COMMIT;
  const git = (...args: string[]) =>
    spawnSync("git", args, { cwd: dirname(import.meta.dir), encoding: "utf8", timeout: 5000 });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0 || !head.stdout.trim()) return "unknown";
  const dirty = git("diff", "--quiet", "HEAD").status === 1;
  return `${head.stdout.trim()}${dirty ? "-dirty" : ""}`;
}

/** The labels of `dstm_build_info` (lib/control/metrics.ts): version, commit, runtime. */
export function buildInfo(): { version: string; commit: string; runtime: string } {
  const runtime = process.versions.bun
    ? `bun ${process.versions.bun}`
    : `node ${process.versions.node}`;
  return { version: VERSION, commit: buildCommit(), runtime };
}

/** The one line of `dstm --version`. */
export function versionText(): string {
  const runtime = process.versions.bun
    ? `bun ${process.versions.bun}`
    : `node ${process.versions.node}`;
  return `dstm ${VERSION} (commit ${buildCommit()}, ${runtime}, ${process.platform} ${process.arch})`;
}
