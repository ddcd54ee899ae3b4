/** Reading Prometheus text exposition in tests. */

/** The value of the first sample of `name` whose label set contains every fragment, or undefined. */
export function sample(text: string, name: string, ...fragments: string[]): number | undefined {
  const line = samples(text, name, fragments)[0];
  return line === undefined ? undefined : valueOf(line);
}

/** The sum of every sample of `name` whose label set contains every fragment (0 when none). */
export function total(text: string, name: string, ...fragments: string[]): number {
  return samples(text, name, fragments).reduce((sum, line) => sum + valueOf(line), 0);
}

function samples(text: string, name: string, fragments: readonly string[]): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) && fragments.every((f) => l.includes(f)));
}

const valueOf = (line: string): number => Number(line.slice(line.lastIndexOf(' ') + 1));

/** Polls `condition` every 20 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
