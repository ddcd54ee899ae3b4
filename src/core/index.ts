export * from './error-codes.ts';
export * from './errors.ts';
export * from './result.ts';
export * from './logger.ts';
export * from './backoff.ts';
export * from './lifecycle.ts';
