/**
 * `./demo.sh` installs what the lab drives and nothing else (scripts/demo-deps.sh), not the whole
 * suite's ~25 packages (scripts/test-deps.sh: PostgreSQL, Kea, Prometheus, tshark, gcc, …, whose
 * services it also disables): a newcomer found the README promising "ping, curl, vsftpd,
 * python3" while demo.sh ran test-deps.sh. The lists are read, nothing is installed.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LAB_PACKAGES } from "../lib/lab/services.ts";
import { ROOT } from "./helpers/process.ts";

const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
/** The packages a deps script may install: its `need+=(…)` entries, in order. */
const needs = (script: string) =>
  [...script.matchAll(/need\+=\(([^)]*)\)/g)].flatMap((m) => (m[1] as string).trim().split(/\s+/));

test("demo.sh installs through scripts/demo-deps.sh, not the test suite's list", () => {
  const demo = read("demo.sh");
  const commands = demo.split("\n").filter((l) => !l.trimStart().startsWith("#"));
  expect(commands).toContain("scripts/demo-deps.sh");
  expect(commands.join("\n")).not.toContain("test-deps.sh");
});

test("scripts/demo-deps.sh installs exactly the lab's packages (lib/lab/services.ts)", () => {
  const script = read("scripts/demo-deps.sh");
  expect(needs(script)).toEqual([...LAB_PACKAGES]);
  // It disables only the vsftpd it brought: no other service is touched.
  const disabled = [...script.matchAll(/systemctl disable --now ([^\n2]*)/g)].map((m) =>
    (m[1] as string).trim(),
  );
  expect(disabled).toEqual(["vsftpd"]);
  // And the suite's list is much longer: the reason to keep them apart.
  expect(needs(read("scripts/test-deps.sh")).length).toBeGreaterThan(LAB_PACKAGES.length * 3);
});

test("the README says what demo.sh installs, that test.sh installs more, and ./demo.sh --name", () => {
  const readme = read("README.md").replace(/\s+/g, " ");
  const start = readme.indexOf("`demo.sh` installs");
  expect(start).toBeGreaterThan(0);
  const paragraph = readme.slice(start, readme.indexOf("The examples below", start));
  for (const pkg of LAB_PACKAGES) expect(paragraph).toContain(pkg);
  expect(paragraph).toContain("scripts/demo-deps.sh");
  expect(paragraph).toContain("./demo.sh --name b");
  expect(paragraph).toContain("scripts/test-deps.sh");
  expect(paragraph).not.toContain("(ping, curl, vsftpd, python3)");
});
