import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Whether a command a test drives as a real peer is installed. On CI its absence fails the test (CI
 * installs the Debian package); elsewhere the test passes with a logged reason, and the caller returns.
 */
export async function hasCommand(t: ExecutionContext, command: string, debianPackage = command): Promise<boolean> {
  try {
    await run('which', [command]);
    return true;
  } catch {
    if (process.env['CI']) throw new Error(`${command} is required (Debian package ${debianPackage})`);
    t.log(`${command} not installed; skipped outside CI`);
    t.pass();
    return false;
  }
}
