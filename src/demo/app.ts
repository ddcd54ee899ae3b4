/**
 * The demo's container image, `ambient-node/demo-app`, run by the demo's kubelet inside a pod's network
 * namespace: `serve <port>` answers every HTTP request with who it is (pod, namespace, version), `idle` waits to
 * be told what to run, as a pod one `kubectl exec`s into. SIGTERM stops it.
 */
import { createServer } from 'node:http';

const [mode, portText] = process.argv.slice(2);
const who = { pod: process.env['POD_NAME'] ?? '', namespace: process.env['POD_NAMESPACE'] ?? '', version: process.env['APP_VERSION'] ?? '' };

process.on('SIGTERM', () => process.exit(0));
if (mode === 'serve') {
  const port = Number(portText);
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ ...who, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'x-demo-pod': who.pod, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.listen(port, '0.0.0.0', () => process.stdout.write(`serving on ${port}\n`));
} else if (mode === 'idle') {
  setInterval(() => {}, 1 << 30);
  process.stdout.write('idle\n');
} else {
  process.stderr.write(`demo-app: unknown mode "${mode ?? ''}" (serve <port> | idle)\n`);
  process.exit(2);
}
