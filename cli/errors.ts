/** An error the user can fix: printed as one line `dstm: …`, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
