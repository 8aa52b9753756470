/**
 * Leases and their stores: the Lease type and LeaseStore contract, the memory and SQLite
 * backends, and the group committer that batches writes.
 *
 * @module
 */
export * from "./group_commit.ts";
export * from "./lease.ts";
export * from "./memory.ts";
export { SCHEMA_VERSION, SqliteLeaseStore } from "./sqlite.ts";
