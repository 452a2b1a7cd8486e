// Loopback rpc-servers for the tests and benchmarks of ggml's RPC backend (test/native/rpc.test.ts,
// test/gpu/scale.test.ts, test/bench/rpc.ts).
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { probeRpcServer } from '../../lib/gpu/rpc.js';

/** A port nobody listens on now (the OS picks it; closed again before use). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Waits (up to about 30 s) until the probe answers: the server listens and serves no other client. Fails at once if `child` exits. */
export async function waitForRpcServer(endpoint: string, child?: ChildProcess): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (child && child.exitCode !== null) throw new Error(`the server for ${endpoint} exited (${child.exitCode})`);
    try {
      await probeRpcServer(endpoint, { timeoutMs: 2000 });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`no rpc-server at ${endpoint}`);
}
