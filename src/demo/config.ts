import { fail, ok, type Result } from '../core/result.ts';

/** `make demo`'s settings, from its environment (pure). */
export interface DemoConfig {
  /** The cluster's objects (`DEMO_EXAMPLES`, default `examples`). */
  readonly examplesDir: string;
  /** Lock, node dirs and logs (`DEMO_STATE_DIR`, default `/run/ambient-demo`). */
  readonly stateDir: string;
  /** Every network namespace the demo makes starts with `<prefix>-` (`DEMO_PREFIX`, default `ambient-demo`). */
  readonly prefix: string;
  /** `DEMO_ONCE=1`: print the report and stop, without waiting for Ctrl-C. */
  readonly once: boolean;
  /** Requests sent to the canary service (`DEMO_REQUESTS`, default 200). */
  readonly requests: number;
  /** The control plane's monitoring port, which serves the mesh page (`DEMO_PORT`, default 15014; 0 picks one). */
  readonly controlPlaneMonitoringPort: number;
}

export function parseDemoConfig(env: Readonly<Record<string, string | undefined>>): Result<DemoConfig> {
  const errors: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const text = env[name];
    if (text === undefined || text === '') return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) errors.push(`${name}: expected an integer from ${min} to ${max}, got "${text}"`);
    return n;
  };
  const prefix = env['DEMO_PREFIX'] || 'ambient-demo';
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(prefix)) errors.push(`DEMO_PREFIX: expected lowercase letters, digits and dashes, got "${prefix}"`);
  const once = env['DEMO_ONCE'] ?? '';
  if (!['', '0', '1', 'true', 'false'].includes(once)) errors.push(`DEMO_ONCE: expected 1 or 0, got "${once}"`);
  const config: DemoConfig = {
    examplesDir: env['DEMO_EXAMPLES'] || 'examples',
    stateDir: env['DEMO_STATE_DIR'] || '/run/ambient-demo',
    prefix,
    once: once === '1' || once === 'true',
    requests: int('DEMO_REQUESTS', 200, 20, 100_000),
    controlPlaneMonitoringPort: int('DEMO_PORT', 15014, 0, 65535),
  };
  return errors.length ? fail(...errors) : ok(config);
}
