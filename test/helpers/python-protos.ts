import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { protoDir, PROTO_FILES } from '../../src/workload-api/proto.ts';

/** Python interpreter with Debian's grpcio and protobuf (another python3 may come first on PATH). */
export const PYTHON = '/usr/bin/python3';

/** Why Python interop cannot run here, or undefined when it can. */
export function pythonGrpcMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' });
    execFileSync('protoc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'needs Debian python3-grpcio, python3-protobuf and protobuf-compiler (protoc)';
  }
}

/**
 * Compiles the project's .proto files with protoc into a fresh directory of `*_pb2.py` modules
 * (plus google/rpc/status_pb2.py); returns it and a cleanup. Add the directory to PYTHONPATH.
 */
export async function compilePythonProtos(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-pyproto-'));
  const src = protoDir();
  execFileSync('protoc', [`-I${src}`, '-I/usr/include', `--python_out=${dir}`, ...PROTO_FILES, 'google/rpc/status.proto'], { cwd: src, stdio: ['ignore', 'ignore', 'pipe'] });
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * True when Python gRPC interop can run. When it cannot: on CI the test fails loudly (throws);
 * elsewhere it logs the reason and passes, so a machine without the Debian packages can still run
 * the rest.
 */
export function canRunPythonGrpc(t: { log(...values: unknown[]): void; pass(): void }): boolean {
  const missing = pythonGrpcMissing();
  if (!missing) return true;
  if (process.env['CI']) throw new Error(`Python grpcio interop cannot run on CI: ${missing}`);
  t.log(`not run: ${missing}`);
  t.pass();
  return false;
}
