/**
 * The demo's traffic, run inside a client pod's network namespace (as `kubectl exec` would):
 * `load <host> <port> <requests> <connections>` sends that many GETs over that many keep-alive connections
 * and prints one JSON line: answers by the pod that served them, status codes, and failures by error code.
 * A connection the mesh refuses shows up as a failure (reset or closed before an answer).
 */
import { Agent, get } from 'node:http';

export interface LoadResult {
  readonly byPod: Record<string, number>;
  readonly statuses: Record<string, number>;
  readonly failures: Record<string, number>;
}

const [host, portText, requestsText, connectionsText] = process.argv.slice(2);
const port = Number(portText);
const requests = Number(requestsText);
const connections = Math.max(1, Number(connectionsText));
const agent = new Agent({ keepAlive: true, maxSockets: connections });
const result: LoadResult = { byPod: {}, statuses: {}, failures: {} };
const add = (into: Record<string, number>, key: string) => (into[key] = (into[key] ?? 0) + 1);

function one(): Promise<void> {
  return new Promise((resolve) => {
    const req = get({ host, port, path: '/', agent, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        add(result.statuses, String(res.statusCode));
        try {
          add(result.byPod, String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { pod?: string }).pod ?? '?'));
        } catch {
          add(result.byPod, '?');
        }
        resolve();
      });
      res.on('error', (err: NodeJS.ErrnoException) => {
        add(result.failures, err.code ?? 'ERROR');
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => {
      add(result.failures, err.code ?? 'ERROR');
      resolve();
    });
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (next < requests) {
    next++;
    await one();
  }
}
await Promise.all(Array.from({ length: connections }, worker));
agent.destroy();
process.stdout.write(`${JSON.stringify(result)}\n`);
