import { MeshError } from '../core/errors.ts';
import type { ErrorCode } from '../core/error-codes.ts';

/** An HBONE failure; `status` is the HTTP/2 status that was (or would be) answered, when there is one. */
export class HboneError extends MeshError {
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; status?: number } = {}) {
    super(code, message, options.cause === undefined ? {} : { cause: options.cause });
    this.status = options.status;
  }
}
