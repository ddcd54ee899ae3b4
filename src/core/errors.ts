import type { ErrorCode } from './error-codes.ts';

/** The base of every error that crosses a module boundary: a stable `code`, an operator-facing message, an ES cause. */
export class MeshError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export function isMeshError(err: unknown): err is MeshError {
  return err instanceof MeshError;
}

/** The code of any error for logs and labels; node's own `code` (ECONNRESET…) when it is not ours. */
export function errorCode(err: unknown): string {
  if (err instanceof MeshError) return err.code;
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string') {
    return (err as NodeJS.ErrnoException).code as string;
  }
  return 'UNKNOWN';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
