/** The message of the `PoolConfigError` a pool spec gets, checked to be one line. */
import { expect } from "bun:test";
import { Pool, PoolConfigError } from "../../lib/alloc/pool.ts";

/** The one-line `PoolConfigError` message `new Pool(spec)` throws; fails the test if it does not. */
export function poolConfigError(spec: ConstructorParameters<typeof Pool>[0]): string {
  try {
    new Pool(spec);
  } catch (e) {
    expect(e).toBeInstanceOf(PoolConfigError);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error("no error");
}
