/**
 * Packaging and system integration, checked by the tools that consume it: man pages rendered by
 * groff/man with warnings on; scripts/build-deb.sh's .deb listed by dpkg-deb and unpacked into a
 * scratch root, where systemd-analyze verifies the units against the packaged /usr/bin/dstm and
 * its man pages, rates their hardening, and systemd-sysusers / systemd-tmpfiles create the user
 * and directories. Nothing is installed on this machine.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allCommands, commandTree } from "../cli/command_tree.ts";
import { completionScript } from "../cli/completion.ts";
import { program } from "../cli/main.ts";
import { VERSION } from "../cli/version.ts";
import { manPages } from "../scripts/man.ts";
import { ROOT } from "./helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "dstm-pkg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tree = commandTree(program());
const sh = (argv: string[], env: Record<string, string> = {}, cwd = dir) => {
  const r = Bun.spawnSync(argv, {
    cwd,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
};

describe.skipIf(!Bun.which("groff") || !Bun.which("man"))("man pages (scripts/man.ts)", () => {
  const pages = manPages(tree, "2026-01-01");
  const mandir = join(dir, "man");
  beforeAll(() => {
    mkdirSync(mandir, { recursive: true });
    for (const [name, text] of pages) writeFileSync(join(mandir, name), text);
  });

  test("one page per command, each rendered by groff and man without a warning", () => {
    expect([...pages.keys()].sort()).toEqual(
      ["dstm.1", ...tree.subcommands.map((s) => `dstm-${s.name}.1`)].sort(),
    );
    for (const name of pages.keys()) {
      const groff = sh(["groff", "-man", "-Tutf8", "-ww", "-z", join(mandir, name)]);
      expect({ name, stderr: groff.stderr, code: groff.code }).toEqual({
        name,
        stderr: "",
        code: 0,
      });
      const man = sh(["man", "--warnings", "-l", join(mandir, name)], {
        MANWIDTH: "100",
        LC_ALL: "C.UTF-8",
      });
      expect({ name, stderr: man.stderr }).toEqual({ name, stderr: "" });
      expect(man.stdout).toContain(`dstm ${VERSION}`);
    }
  });

  test("each page lists every option and subcommand its --help lists", () => {
    for (const node of allCommands(tree).filter((n) => n.path.length >= 1)) {
      const page = `dstm-${node.path[0]}.1`;
      const text = sh(["man", "-l", join(mandir, page)], {
        MANWIDTH: "200",
        LC_ALL: "C.UTF-8",
      }).stdout;
      for (const option of node.options)
        expect({ page, option: option.long, found: text.includes(option.long!) }).toEqual({
          page,
          option: option.long,
          found: true,
        });
      if (node.path.length === 2)
        expect(text).toContain(`dstm ${node.path.join(" ")} ${node.usage}`);
    }
    const main = sh(["man", "-l", join(mandir, "dstm.1")], { MANWIDTH: "200" }).stdout;
    for (const sub of tree.subcommands) expect(main).toContain(`dstm-${sub.name}(1)`);
    expect(main).toContain("NOTIFY_SOCKET");
  });
});

const canBuild = Bun.which("dpkg-deb") && Bun.which("systemd-analyze");
describe.skipIf(!canBuild)("the .deb (scripts/build-deb.sh) and its systemd units", () => {
  const root = join(dir, "root");
  let deb = "";
  beforeAll(() => {
    const built = sh([join(ROOT, "scripts", "build-deb.sh"), join(dir, "out")], {}, ROOT);
    if (built.code !== 0) throw new Error(`build-deb.sh failed: ${built.stderr}`);
    deb = join(dir, "out", readdirSync(join(dir, "out")).find((f) => f.endsWith(".deb"))!);
    expect(sh(["dpkg-deb", "-x", deb, root]).code).toBe(0);
    // systemd-analyze --root needs the base units (sysinit.target …) next to ours.
    const system = "/usr/lib/systemd/system";
    for (const unit of readdirSync(system)) {
      const target = join(root, system, unit);
      if (!existsSync(target))
        cpSync(join(system, unit), target, { recursive: true, verbatimSymlinks: true });
    }
    mkdirSync(join(root, "etc"), { recursive: true });
  }, 240_000);

  test("dpkg-deb lists the binary, units, man pages, completion, dissector", () => {
    const info = sh(["dpkg-deb", "--info", deb]).stdout;
    expect(info).toContain(`Version: ${VERSION}`);
    expect(info).toMatch(/Package: dstm\n/);
    const contents = sh(["dpkg-deb", "--contents", deb]).stdout;
    for (const path of [
      "./usr/bin/dstm",
      "./usr/lib/systemd/system/dstm-server.service",
      "./usr/lib/systemd/system/dstm-tep.service",
      "./usr/lib/systemd/system/dstm-client@.service",
      "./usr/lib/sysusers.d/dstm.conf",
      "./usr/lib/tmpfiles.d/dstm.conf",
      "./usr/share/man/man1/dstm.1.gz",
      "./usr/share/man/man1/dstm-server.1.gz",
      "./usr/share/bash-completion/completions/dstm",
      "./usr/share/zsh/vendor-completions/_dstm",
      "./usr/share/fish/vendor_completions.d/dstm.fish",
      "/wireshark/plugins/dstm.lua",
      "./usr/share/doc/dstm/examples/server.toml",
    ])
      expect(contents).toContain(path);
  });

  test("the packaged executable runs; packaged completion and dissector are the generated ones", () => {
    const version = sh([join(root, "usr/bin/dstm"), "--version"]);
    expect(version.stdout).toStartWith(`dstm ${VERSION} (commit `);
    expect(readFileSync(join(root, "usr/share/bash-completion/completions/dstm"), "utf8")).toBe(
      completionScript(tree, "bash"),
    );
    expect(readFileSync(join(root, "usr/share/fish/vendor_completions.d/dstm.fish"), "utf8")).toBe(
      completionScript(tree, "fish"),
    );
    const lua = readdirSync(join(root, "usr/lib")).find((d) =>
      existsSync(join(root, "usr/lib", d, "wireshark/plugins/dstm.lua")),
    )!;
    expect(readFileSync(join(root, "usr/lib", lua, "wireshark/plugins/dstm.lua"), "utf8")).toBe(
      readFileSync(join(ROOT, "contrib/wireshark/dstm.lua"), "utf8"),
    );
  });

  const UNITS = ["dstm-server.service", "dstm-tep.service", "dstm-client@dti0.service"];
  test("systemd-analyze verify: no warning for any unit (ExecStart, man pages, keys)", () => {
    for (const unit of UNITS) {
      const r = sh(
        ["systemd-analyze", "verify", `--root=${root}`, unit],
        { MANPATH: join(root, "usr/share/man") },
        root,
      );
      expect({ unit, code: r.code, stderr: r.stderr }).toEqual({ unit, code: 0, stderr: "" });
    }
    // The same check notices a misspelt setting and a missing executable.
    const broken = readFileSync(join(root, "usr/lib/systemd/system/dstm-tep.service"), "utf8")
      .replace("NoNewPrivileges=", "NoNewPrivilege=")
      .replace("/usr/bin/dstm", "/usr/bin/dstm-missing");
    writeFileSync(join(root, "usr/lib/systemd/system/dstm-broken.service"), broken);
    const r = sh(
      ["systemd-analyze", "verify", "--man=no", `--root=${root}`, "dstm-broken.service"],
      {},
      root,
    );
    expect(r.stderr).toContain("Unknown key 'NoNewPrivilege'");
    expect(r.stderr).toContain("dstm-missing");
    rmSync(join(root, "usr/lib/systemd/system/dstm-broken.service"));
  });

  test("units: Type=notify, dedicated user with only the capabilities it needs, hardened (exposure ≤ 3)", () => {
    const unit = (name: string) => readFileSync(join(root, "usr/lib/systemd/system", name), "utf8");
    for (const name of ["dstm-tep.service", "dstm-client@.service"]) {
      expect(unit(name)).toContain("AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW\n");
      expect(unit(name)).toContain("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n");
    }
    for (const name of ["dstm-server.service", "dstm-tep.service", "dstm-client@.service"]) {
      expect(unit(name)).toMatch(/^Type=notify$/m);
      expect(unit(name)).toMatch(/^User=dstm$/m);
    }
    for (const name of UNITS) {
      const r = sh(
        ["systemd-analyze", "security", "--offline=yes", `--root=${root}`, name],
        {},
        root,
      );
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout + r.stderr);
      expect({ name, level: level && Number(level[1]) <= 3 }).toEqual({ name, level: true });
    }
  });

  test("sysusers.d creates the dstm user, tmpfiles.d its directories", () => {
    expect(sh(["systemd-sysusers", `--root=${root}`]).code).toBe(0);
    const passwd = readFileSync(join(root, "etc/passwd"), "utf8");
    const entry = passwd.split("\n").find((l) => l.startsWith("dstm:"))!;
    expect(entry).toMatch(
      /^dstm:x:(\d+):(\d+):DSTM services:\/var\/lib\/dstm:\/usr\/sbin\/nologin$/,
    );
    const uid = Number(entry.split(":")[2]);
    expect(uid).toBeLessThan(1000); // a system user
    expect(sh(["systemd-tmpfiles", `--root=${root}`, "--create", "dstm.conf"]).code).toBe(0);
    for (const [path, mode] of [
      ["run/dstm", 0o755],
      ["var/lib/dstm", 0o750],
    ] as const) {
      const st = statSync(join(root, path));
      expect({ path, uid: st.uid, mode: st.mode & 0o777 }).toEqual({ path, uid, mode });
    }
  });
});
