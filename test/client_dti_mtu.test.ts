/**
 * The DTI's MTU (lib/client/dti_mtu.ts): the host's IPv6 link MTU − 40 (RFC 2473) by default;
 * a `--mtu` the link cannot carry with the 40-byte IPv6 header is taken but said at warn
 * (`mtu-above-link`; a newcomer's `--mtu 1500` on a 1500-byte link passed in silence).
 */
import { expect, test } from "bun:test";
import { dtiMtu } from "../lib/client/dti_mtu.ts";
import { Logger } from "../lib/control/log.ts";
import { linkMtu } from "../lib/sys/ifinfo.ts";

function logged(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const log = new Logger({ sink: (t) => lines.push(t) });
  return {
    log,
    text: () => {
      log.flush();
      return lines.join("");
    },
  };
}

test("no --mtu: the link's MTU less 40 bytes, nothing said", () => {
  const { log, text } = logged();
  expect(dtiMtu(undefined, null, "dti0", log)).toBe(1460);
  const lo = linkMtu("lo");
  expect(lo).not.toBeNull();
  expect(dtiMtu(undefined, "lo", "dti0", log)).toBe(lo! - 40);
  expect(text()).toBe("");
});

test("--mtu 1500 on a 1500-byte link is taken, and said at warn", () => {
  const { log, text } = logged();
  expect(dtiMtu(1500, null, "dti0", log)).toBe(1500);
  const said = text();
  expect(said).toContain("mtu-above-link");
  expect(said).toContain("at most 1460");
});

test("--mtu that fits with the IPv6 header is taken in silence", () => {
  const { log, text } = logged();
  expect(dtiMtu(1460, null, "dti0", log)).toBe(1460);
  expect(dtiMtu(1280, null, "dti0", log)).toBe(1280);
  expect(text()).toBe("");
});
