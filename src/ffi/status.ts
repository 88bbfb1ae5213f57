// The shim's calling convention, shared by every library behind src/ffi: a function returns an int32
// status (negative = failure) and writes a NUL-terminated message into a caller-provided buffer.

/** A NUL-terminated UTF-8 string for a `const char *` argument. */
export function cstr(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}

/** The text of a NUL-terminated buffer the C side filled. */
export function cText(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString("utf8", 0, end < 0 ? buf.length : end);
}

/**
 * Call `f` with a fresh error buffer; a negative status becomes the error `fail` builds from the status and
 * the C side's message. Returns the (non-negative) status.
 */
export function callChecked(f: (err: Buffer, len: number) => number, fail: (status: number, message: string) => Error, errLen = 2048): number {
  const err = Buffer.alloc(errLen);
  const status = f(err, errLen);
  if (status < 0) throw fail(status, cText(err));
  return status;
}
