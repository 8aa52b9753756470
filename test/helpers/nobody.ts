/**
 * Running code as user nobody (uid/gid 65534, via setpriv) independently of where the checkout
 * is: a clone under /root or in a 0700 `mktemp -d` directory is not readable by nobody, and
 * neither may be the Bun binary in node_modules. So everything nobody runs is placed in a
 * fresh 0755 directory: a copy (or hard link) of the Bun binary, and a single-file bundle
 * (`bun build --target=bun`) of each entry point, written there as root from the checkout.
 */
import { chmodSync, copyFileSync, linkSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

/** setpriv as nobody with no supplementary groups and HOME=/tmp; prefix a command with it. */
export const AS_NOBODY: readonly string[] = [
  "setpriv",
  "--reuid=65534",
  "--regid=65534",
  "--clear-groups",
  "env",
  "HOME=/tmp",
];

/** A 0755 directory nobody can use: `bun` in it, and bundles made with {@link NobodyKit.bundle}. */
export interface NobodyKit {
  readonly dir: string;
  /** The Bun binary nobody runs (inside `dir`). */
  readonly bun: string;
  /** Bundles `entry` (a path in the checkout) into `dir`; returns the bundle's path. */
  bundle(entry: string): string;
  /** Removes `dir`. */
  remove(): void;
}

/**
 * Prepares a {@link NobodyKit}, or returns why nobody cannot run anything here (not root, no
 * setpriv, or even the copied Bun does not run as nobody): print that reason and skip.
 */
export function nobodyKit(): NobodyKit | string {
  if (process.getuid?.() !== 0) return "needs root (to switch to user nobody)";
  if (Bun.which("setpriv") === null) return "needs setpriv (util-linux)";
  const dir = mkdtempSync(join(tmpdir(), "dstm-nobody-"));
  chmodSync(dir, 0o755);
  const bun = join(dir, "bun");
  try {
    linkSync(process.execPath, bun);
  } catch {
    copyFileSync(process.execPath, bun);
  }
  chmodSync(bun, 0o755);
  const kit: NobodyKit = {
    dir,
    bun,
    bundle(entry: string): string {
      const out = join(dir, `${basename(entry).replace(/\.ts$/, "")}.js`);
      const built = Bun.spawnSync([
        process.execPath,
        "build",
        "--target=bun",
        entry,
        "--outfile",
        out,
      ]);
      if (built.exitCode !== 0) {
        throw new Error(`bun build ${entry} failed: ${built.stderr.toString().trim()}`);
      }
      chmodSync(out, 0o644);
      return out;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  const probe = Bun.spawnSync([...AS_NOBODY, bun, "--version"], { cwd: dir });
  if (probe.exitCode !== 0) {
    kit.remove();
    return `user nobody cannot run bun even from ${dir}: ${probe.stderr.toString().trim()}`;
  }
  return kit;
}
