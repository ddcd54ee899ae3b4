#!/usr/bin/env node
import { errorCode, errorMessage } from '../core/errors.ts';
import { createLogger, type LogLevel } from '../core/logger.ts';
import { parseZtunnelConfig, ZTUNNEL_FLAGS } from '../ztunnel/config.ts';
import { startZtunnel } from '../ztunnel/ztunnel.ts';
import { parseFlags } from './flags.ts';

/**
 * `ambientd <component> [--flag value | --flag=value ...]`: the node daemons. Exit codes: 0 after a
 * graceful stop, 1 on a start failure or a forced stop, 2 on bad usage or configuration.
 */

const USAGE = `usage: ambientd ztunnel [flags]
  Configured from ztunnel's environment variables (PROXY_MODE, PROXY_WORKLOAD_INFO, XDS_ADDRESS,
  CA_ADDRESS, LOCAL_XDS_PATH, FAKE_CA, NODE_NAME, NETWORK, PACKET_MARK, ...) and these flags:
${ZTUNNEL_FLAGS.map((f) => `    --${f.replace(/^--/, '')}`).join('\n')}
`;

async function ztunnel(args: readonly string[]): Promise<number> {
  const { flags, errors } = parseFlags(args);
  const parsed = parseZtunnelConfig(flags, process.env);
  const problems = [...errors, ...(parsed.ok ? [] : parsed.errors)];
  if (problems.length > 0 || !parsed.ok) {
    process.stderr.write(`ambientd ztunnel: invalid configuration:\n  ${problems.join('\n  ')}\n\n${USAGE}`);
    return 2;
  }
  const config = parsed.value;
  const level: LogLevel = config.logLevel === 'off' ? 'silent' : config.logLevel;
  const logger = createLogger({ level });
  let app;
  try {
    app = await startZtunnel(config, { logger, env: process.env });
  } catch (err) {
    logger.fatal({ code: errorCode(err), err: errorMessage(err) }, 'ztunnel failed to start');
    return 1;
  }
  let interrupts = 0;
  const stop = (signal: NodeJS.Signals) => {
    if (signal === 'SIGINT' && ++interrupts > 1) {
      logger.warn('second SIGINT: exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'shutdown requested');
    void app.close();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await app.stopped;
  return 0;
}

const [component, ...rest] = process.argv.slice(2);
switch (component) {
  case 'ztunnel':
    process.exitCode = await ztunnel(rest);
    break;
  default:
    process.stderr.write(USAGE);
    process.exitCode = 2;
}
// Anything left (a straggling socket) must not keep a stopped daemon alive.
setImmediate(() => process.exit()).unref();
