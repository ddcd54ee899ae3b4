#!/usr/bin/env node
import { ztunnelConfigCommand, ZTUNNEL_CONFIG_USAGE, type CommandIo } from './ztunnel-config-command.ts';

/**
 * `ambientctl`: istioctl's ambient commands. `waypoint apply|generate|list|status|delete` talks to the
 * Kubernetes API (KUBECONFIG or ~/.kube/config); `ztunnel-config ...` reads a ztunnel's admin dump.
 * Exit codes: 0 done, 1 failed, 2 bad usage.
 */

const USAGE = `usage: ambientctl <command> [flags]
commands:
  waypoint apply|generate|list|status|delete   manage waypoint Gateways (istioctl waypoint)
  ztunnel-config workloads|services|policies|certificates|all   show a ztunnel's configuration
Run "ambientctl <command> --help" for the flags.
`;

const io: CommandIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  env: process.env,
};

async function main(args: readonly string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case 'ztunnel-config':
    case 'zc':
      if (rest.includes('--help') || rest.includes('-h')) {
        io.stdout(ZTUNNEL_CONFIG_USAGE);
        return 0;
      }
      return ztunnelConfigCommand(rest, io);
    case 'waypoint':
    case 'waypoints':
    case 'wp': {
      // Loaded only here: @kubernetes/client-node takes a while to load, and ztunnel-config does not need it.
      const { waypointCommand } = await import('./waypoint-command.ts');
      return waypointCommand(rest, io);
    }
    case '--help':
    case '-h':
    case 'help':
      io.stdout(USAGE);
      return 0;
    default:
      io.stderr(command === undefined ? USAGE : `ambientctl: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
