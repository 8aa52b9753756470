/**
 * Worker entry of the SQLite lease store's writer (./sqlite_writer.ts): opens its own
 * connection to the lease database (WAL, `synchronous=FULL`) and applies each batch posted to
 * it in one transaction (./sqlite_write.ts), in the order posted, answering each with
 * `{ id }` once committed (fsynced) or `{ id, failure }`. The main thread keeps receiving and
 * deciding requests while a batch's statements and fsync run here.
 *
 * Messages in: `{ kind: "open", path, identity, walIdentity }` first, then `{ id, kind:
 * "write", ops }` (an encodeOps batch), `{ id, kind: "reservation", op }`, `{ id, kind:
 * "close" }`.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import type { ReservationOp } from "./lease.ts";
import type { FileId } from "./sqlite_files.ts";
import { failureOf, SqliteBatchWriter } from "./sqlite_write.ts";

/** What the store posts first. */
export interface WriterOpen {
  readonly kind: "open";
  readonly path: string;
  readonly identity: FileId | undefined;
  readonly walIdentity: FileId | undefined;
}

/** A request after the open. */
export type WriterRequest =
  | { readonly id: number; readonly kind: "write"; readonly ops: unknown[] }
  | { readonly id: number; readonly kind: "reservation"; readonly op: ReservationOp }
  | { readonly id: number; readonly kind: "close" };

interface _Scope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
}

const scope = globalThis as unknown as _Scope;
let db: Database | undefined;
let writer: SqliteBatchWriter | undefined;
let path = "";

scope.onmessage = (event: MessageEvent) => {
  const message = event.data as WriterOpen | WriterRequest;
  if (message.kind === "open") {
    path = message.path;
    try {
      db = new Database(path, { readwrite: true });
      // The store's connection may briefly hold a lock (opening, a read): wait for it.
      db.run("PRAGMA busy_timeout = 2000");
      db.run("PRAGMA synchronous = FULL");
      writer = new SqliteBatchWriter(db, path, message.identity, message.walIdentity);
      scope.postMessage({ id: 0 });
    } catch (error) {
      scope.postMessage({ id: 0, failure: failureOf(path, error) });
    }
    return;
  }
  const { id } = message;

  try {
    if (message.kind === "close") {
      writer?.finalize();
      db?.close();
      writer = undefined;
      scope.onmessage = null;
      scope.postMessage({ id });
      return;
    }
    if (!writer) throw new Error("the writer is not open");
    if (message.kind === "write") writer.write(message.ops);
    else writer.reservation(message.op);
    scope.postMessage({ id });
  } catch (error) {
    scope.postMessage({ id, failure: failureOf(path, error) });
  }
};
