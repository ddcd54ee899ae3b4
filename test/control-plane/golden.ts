import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { addressFromWire, authorizationFromWire } from '../../src/workload-api/convert.ts';
import { decodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import type { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import type { Address__Output } from '../../src/workload-api/generated/istio/workload/Address.ts';
import type { Authorization__Output } from '../../src/workload-api/generated/istio/security/Authorization.ts';

/** The snapshot decoded back to domain values (what a ztunnel would hold), as plain sorted JSON. */
export function snapshotJson(snapshot: ResourceSnapshot): { addresses: Record<string, unknown>; authorizations: Record<string, unknown> } {
  const plain = (value: unknown): unknown =>
    JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries([...v].sort(([a], [b]) => (String(a) < String(b) ? -1 : 1))) : v)));
  const addresses: Record<string, unknown> = {};
  for (const name of [...snapshot.get(TypeUrl.address).keys()].sort()) {
    const decoded = addressFromWire(decodeMessage<Address__Output>('istio.workload.Address', snapshot.get(TypeUrl.address).get(name)!.value));
    if (!decoded.ok) throw new Error(`${name}: ${decoded.errors.join('; ')}`);
    addresses[name] = plain(decoded.value);
  }
  const authorizations: Record<string, unknown> = {};
  for (const name of [...snapshot.get(TypeUrl.authorization).keys()].sort()) {
    const decoded = authorizationFromWire(decodeMessage<Authorization__Output>('istio.security.Authorization', snapshot.get(TypeUrl.authorization).get(name)!.value));
    if (!decoded.ok) throw new Error(`${name}: ${decoded.errors.join('; ')}`);
    authorizations[name] = plain(decoded.value);
  }
  return { addresses, authorizations };
}

const GOLDEN_DIR = join(import.meta.dirname, '..', '..', '..', 'test', 'control-plane', 'golden');

/**
 * Compares with `test/control-plane/golden/<name>.json`. `UPDATE_GOLDEN=1` rewrites the file and fails the test,
 * so a regenerated golden is always reviewed (and a missing one never passes).
 */
export function assertGolden(t: ExecutionContext, name: string, actual: unknown): void {
  const path = join(GOLDEN_DIR, `${name}.json`);
  const text = `${JSON.stringify(actual, null, 2)}\n`;
  if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(path)) {
    writeFileSync(path, text);
    t.fail(`golden ${path} written; review it and run again without UPDATE_GOLDEN`);
    return;
  }
  t.deepEqual(actual, JSON.parse(readFileSync(path, 'utf8')));
}
