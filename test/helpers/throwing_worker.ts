/** A Worker module that fails as it loads (test/lease_wal_checkpointer.test.ts). */
throw new Error("test: this Worker cannot start");
