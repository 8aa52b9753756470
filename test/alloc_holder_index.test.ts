import { describe, expect, test } from "bun:test";
import { HolderIndex, holderHash } from "../lib/lease/holder_index.ts";

/** A lease table in miniature: key → holder of its row, what HolderIndex checks entries against. */
function model() {
  const rows = new Map<number, string>();
  const index = new HolderIndex((key) => rows.get(key));
  const reference = new Map<string, number>();
  return { rows, index, reference };
}

describe("HolderIndex", () => {
  test("behaves as a Map<string, number> through 20,000 random sets and deletes (growth, runs, wrap-around)", () => {
    const { rows, index, reference } = model();
    let seed = 12345;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let step = 0; step < 20_000; step++) {
      const holder = `2001:db8::${random(3000).toString(16)}`;
      if (random(3) === 0) {
        // the row leaves the table after its entry (as the engine does)
        const key = reference.get(holder);
        expect(index.delete(holder)).toBe(key !== undefined);
        reference.delete(holder);
        if (key !== undefined) rows.delete(key);
      } else {
        const key = 1_000_000 + step;
        const before = reference.get(holder);
        if (before !== undefined && random(2) === 0) {
          // its old row leaves first: the entry goes out before it
          expect(index.delete(holder)).toBe(true);
          rows.delete(before);
        }
        // (else the old row stays and the entry is pointed at the new one)
        rows.set(key, holder);
        index.set(holder, key);
        reference.set(holder, key);
      }
      expect(index.size).toBe(reference.size);
    }
    for (let i = 0; i < 3000; i++) {
      const holder = `2001:db8::${i.toString(16)}`;
      expect(index.get(holder)).toBe(reference.get(holder));
    }
    index.clear();
    expect(index.size).toBe(0);
    expect(index.get("2001:db8::1")).toBeUndefined();
  });

  test("an entry whose row says another holder is not taken for this one (equal hashes are checked)", () => {
    const rows = new Map<number, string>();
    // every holder hashes alike: the index can only tell them apart by the rows
    const index = new HolderIndex((key) => rows.get(key));
    rows.set(1, "a");
    index.set("a", 1);
    expect(index.get("b")).toBeUndefined();
    rows.set(2, "b");
    index.set("b", 2);
    expect([index.get("a"), index.get("b")]).toEqual([1, 2]);
    // a row replaced under its key no longer answers for its old holder
    rows.set(1, "c");
    expect(index.get("a")).toBeUndefined();
  });
});

describe("holderHash", () => {
  /** The hash of `text` computed afresh: another text hashed just before, so none is kept for it. */
  const fresh = (text: string) => {
    holderHash(`\u0000${text}`);
    return holderHash(text);
  };

  test("the hash kept for the last text is never another text's", () => {
    const texts = ["2001:db8::1", "2001:db8::2", "2001:db8::1", "", "id:01", "2001:db8::2"];
    for (const text of [...texts, ...texts.map((t) => `${t}`.slice(0)), ...texts.reverse()]) {
      expect([text, holderHash(text)]).toEqual([text, fresh(text)]);
      expect([text, holderHash(text)]).toEqual([text, fresh(text)]);
    }
    // The same characters in another string object: the same hash.
    const built = ["2001", "db8", "", "1"].join(":");
    holderHash("2001:db8::2");
    expect(holderHash(built)).toBe(fresh("2001:db8::1"));
  });
});
