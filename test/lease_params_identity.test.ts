/**
 * `dstm lease ls --identity` / `GET /v1/leases?identity=` take every holder key the IDENTITY
 * column shows: `id:HEX`, `hw:HTYPE:HEX`, and the `ll:ADDRESS@LINK` keys of link-local 4o6
 * clients in `source` mode (lib/server/dhcp4o6_identity.ts, docs/dhcp4o6.md "Link-local
 * clients: naming the link"); anything else is refused with a one-line message.
 */
import { expect, test } from "bun:test";
import { BadRequest, parseLeaseFilter } from "../lib/control/lease_params.ts";

function identityFilter(identity: string): string | undefined {
  return parseLeaseFilter(new URLSearchParams({ identity }), (p) => p).identity;
}

test("parseLeaseFilter() takes the ll: holder keys of link-local 4o6 clients, as lease ls shows them", () => {
  for (const key of [
    "ll:fe80::10@net:20010db800040000",
    "ll:fe80::f8b3:76ff:fe0c:bd5a@at:2001:db8:4::1#01000000",
    "ll:fe80::10%3",
    "ll:fe80::10@2001:db8:1::21|::#65746831>2001:db8:4::1|fe80::1#",
  ])
    expect(identityFilter(key)).toBe(key);
  // Upper-case hex as a user may type it selects the stored (lower-case) key.
  expect(identityFilter("ll:FE80::10@net:20010DB800040000")).toBe(
    "ll:fe80::10@net:20010db800040000",
  );
});

test("parseLeaseFilter() still refuses what is no holder key, naming the forms", () => {
  for (const bad of ["nobody", "ll:", "ll:2001:db8::10@net:20010db800040000", "ll:fe80::10"]) {
    let error: unknown;
    try {
      identityFilter(bad);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BadRequest);
    expect((error as Error).message).toContain("ll:ADDRESS@LINK");
  }
  expect(identityFilter("hw:1:02005e0000aa")).toBe("hw:1:02005e0000aa");
  expect(identityFilter("id:0102005e0000aa")).toBe("id:0102005e0000aa");
});
