/**
 * scripts/function_lengths.ts finds the function bodies longer than a limit: declarations,
 * methods and arrows, not if/for blocks or object literals, and not braces inside strings or
 * comments.
 */
import { describe, expect, test } from "bun:test";
import { longFunctions } from "../scripts/function_lengths.ts";

/** `n` statement lines. */
const body = (n: number) => Array.from({ length: n }, (_, i) => `  x += ${i};`).join("\n");

describe("longFunctions()", () => {
  test("lists a function, a method and an arrow over the limit, with their lines", () => {
    const src = [
      "export function long(a: number): number {", // line 1
      body(5),
      "  return a;",
      "}", // line 8
      "class C {",
      "  m(): void {", // line 10
      body(5),
      "  }", // line 16
      "}",
      "const f = async () => {", // line 18
      body(5),
      "};", // line 24
      "function short() {",
      "  return 1;",
      "}",
    ].join("\n");
    const found = longFunctions("x.ts", src, 5).map((f) => [f.first, f.last]);
    expect(found).toEqual([
      [1, 8],
      [10, 16],
      [18, 24],
    ]);
  });

  test("an if or for block, an object literal, and braces in strings or comments are not functions", () => {
    const src = [
      "function f(a: number) {",
      "  if (a > 0) {",
      body(8),
      "  }",
      "  for (const b of [a]) {",
      body(8),
      "  }",
      "  const o = {",
      body(8).replaceAll(";", ","),
      "  };",
      '  const s = "function g() {";',
      "  // ) {",
      "}",
    ].join("\n");
    const found = longFunctions("y.ts", src, 10);
    expect(found.map((f) => f.header)).toEqual(["function f(a: number)"]);
    expect(longFunctions("y.ts", src, 40)).toEqual([]);
  });
});
