import test from 'ava';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { CertManager, type CaClient, type CertificateRequest, type Timers } from '../../src/identity/cert-manager.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';

const id = spiffeId('cluster.local', 'default', 'sleep');
const HOUR = 3600;

/** A real CA behind a switch: counts calls, can be made to fail, can hold calls until released. */
class ControlledCa implements CaClient {
  calls: CertificateRequest[] = [];
  failing = false;
  #inner: LocalCaClient;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;

  constructor(ca: CertificateAuthority) {
    this.#inner = new LocalCaClient(ca);
  }

  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  async createCertificate(request: CertificateRequest): Promise<readonly string[]> {
    this.calls.push(request);
    await this.#gate;
    if (this.failing) throw new Error('CA unavailable');
    return this.#inner.createCertificate(request);
  }
}

/** Timers that only record; the test fires them. */
class ManualTimers implements Timers {
  pending: Array<{ callback: () => void; delayMs: number; cleared: boolean }> = [];
  set(callback: () => void, delayMs: number): unknown {
    const timer = { callback, delayMs, cleared: false };
    this.pending.push(timer);
    return timer;
  }
  clear(handle: unknown): void {
    (handle as { cleared: boolean }).cleared = true;
  }
  /** Fires the newest live timer, returning its delay. */
  fire(): number {
    const timer = [...this.pending].reverse().find((p) => !p.cleared);
    if (!timer) throw new Error('no timer scheduled');
    timer.cleared = true;
    timer.callback();
    return timer.delayMs;
  }
  get live() {
    return this.pending.filter((p) => !p.cleared);
  }
}

function setup(clockStart = Date.UTC(2026, 0, 1)) {
  const clock = { now: clockStart };
  const ca = new ControlledCa(CertificateAuthority.generate('cluster.local', { now: () => clock.now }));
  const timers = new ManualTimers();
  const manager = new CertManager({ ca, ttlSeconds: HOUR, impersonate: true, now: () => clock.now, timers, backoff: { initialMs: 500, maxMs: 150_000 } });
  return { clock, ca, timers, manager };
}

const nextCertificate = (manager: CertManager) => new Promise((resolve) => manager.once('certificate', resolve));

test('concurrent fetches of one identity make one CA call and share the certificate', async (t) => {
  const { ca, manager } = setup();
  ca.hold();
  const fetches = Array.from({ length: 20 }, () => manager.fetch(id));
  ca.release();
  const certs = await Promise.all(fetches);
  t.is(ca.calls.length, 1);
  t.true(certs.every((c) => c === certs[0]));
  const [first] = certs;
  t.is(ca.calls[0]!.impersonatedIdentity, 'spiffe://cluster.local/ns/default/sa/sleep');
  t.is(ca.calls[0]!.ttlSeconds, HOUR);
  t.is(await manager.fetch(id), first!, 'cached');
  t.is(ca.calls.length, 1);
});

test('refresh is scheduled at half the lifetime and replaces the certificate', async (t) => {
  const { clock, ca, timers, manager } = setup();
  const first = await manager.fetch(id);
  t.is(timers.live.length, 1);
  t.is(timers.live[0]!.delayMs, (HOUR * 1000) / 2);
  clock.now += (HOUR * 1000) / 2;
  const refreshed = nextCertificate(manager);
  timers.fire();
  const second = (await refreshed) as typeof first;
  t.is(ca.calls.length, 2);
  t.not(second.privateKeyPem, first.privateKeyPem, 'a new key each time');
  t.is(await manager.fetch(id), second);
});

test('a failed refresh backs off exponentially while the unexpired certificate is served', async (t) => {
  const { clock, ca, timers, manager } = setup();
  const first = await manager.fetch(id);
  clock.now += (HOUR * 1000) / 2;
  ca.failing = true;
  const delays: number[] = [];
  for (let i = 0; i < 4; i++) {
    timers.fire();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    delays.push(timers.live[0]!.delayMs);
    t.is(await manager.fetch(id), first, 'still served');
  }
  t.is(ca.calls.length, 5);
  const bases = [500, 1000, 2000, 4000];
  delays.forEach((d, i) => t.true(d >= bases[i]! * 0.8 && d <= bases[i]! * 1.2, `delay ${d} near ${bases[i]}`));
  ca.failing = false;
  const recovered = nextCertificate(manager);
  timers.fire();
  t.not(await recovered, first);
});

test('backoff is capped and a retry never waits past expiry', async (t) => {
  const { clock, ca, timers, manager } = setup();
  await manager.fetch(id);
  ca.failing = true;
  clock.now += HOUR * 1000 - 300; // 300 ms of validity left
  timers.fire();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.true(timers.live[0]!.delayMs <= 300);
});

test('an expired certificate is not served when the refresh fails', async (t) => {
  const { clock, ca, manager } = setup();
  await manager.fetch(id);
  clock.now += HOUR * 1000 + 1;
  ca.failing = true;
  await t.throwsAsync(manager.fetch(id), { code: ErrorCode.IDENTITY_CERT_FETCH_FAILED } as never);
  t.is(manager.peek(id), undefined);
});

test('at most maxConcurrentRequests CSR calls are in flight', async (t) => {
  const clock = { now: Date.now() };
  const ca = new ControlledCa(CertificateAuthority.generate('cluster.local'));
  const manager = new CertManager({ ca, maxConcurrentRequests: 3, timers: new ManualTimers(), now: () => clock.now });
  ca.hold();
  const fetches = Array.from({ length: 10 }, (_, i) => manager.fetch(spiffeId('cluster.local', 'ns', `sa${i}`)));
  await new Promise((r) => setImmediate(r));
  t.is(ca.calls.length, 3);
  ca.release();
  await Promise.all(fetches);
  t.is(ca.calls.length, 10);
});

test('forget stops refreshing and close refuses new fetches', async (t) => {
  const { timers, manager } = setup();
  await manager.fetch(id);
  manager.forget(id);
  t.is(timers.live.length, 0);
  t.is(manager.peek(id), undefined);
  await manager.close();
  await t.throwsAsync(manager.fetch(id), { code: ErrorCode.CORE_CLOSED } as never);
});
