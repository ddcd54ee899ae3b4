/** `--a 1 --b=2` → { a: '1', b: '2' }; a flag without a value is an error. */
export function parseFlags(args: readonly string[]): { flags: Record<string, string>; errors: string[] } {
  const flags: Record<string, string> = {};
  const errors: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith('--')) {
      errors.push(`${arg}: unexpected argument`);
      continue;
    }
    const eq = arg.indexOf('=');
    if (eq > 0) {
      flags[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else if (i + 1 < args.length && !(args[i + 1] as string).startsWith('--')) {
      flags[arg.slice(2)] = args[++i] as string;
    } else {
      errors.push(`${arg}: missing value`);
    }
  }
  return { flags, errors };
}
