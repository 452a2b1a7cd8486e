/**
 * `cuda-llama rpc-server`: ggml's RPC server (ggml_backend_rpc_start_server, through the RPC
 * module's proc address) run from our own libraries in this process, on a native thread of its own,
 * so that other machines' cuda-llama (`rpcServers`) or llama.cpp (`--rpc`) can place layers on this
 * machine's device. Binds loopback unless told otherwise, and warns loudly when told otherwise:
 * llama.cpp calls the RPC server insecure (whoever reaches the port can allocate, read and write its
 * device memory and run graphs on it). SIGINT and SIGTERM end it with exit code 0.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Command } from 'commander';
import { nativeBinary } from '../../binding/load-native.js';
import { ErrorCode, RpcError } from '../../errors.js';
import { formatBytes } from '../../format.js';
import { isCudaGpu } from '../../gpu/devices.js';
import { isRpcDevice, parseRpcEndpoint, RPC_DEFAULT_PORT, RPC_PROTOCOL_VERSION } from '../../gpu/rpc.js';
import { defaultThreadCount } from '../../options.js';
import { isArgumentError, positiveInteger, type CliContext } from './program.js';
import { rangeError } from '../../validate.js';

interface RpcServerFlags {
  host: string;
  port: number;
  device?: string;
  mem?: number;
  cache?: string;
  threads?: number;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost']);

/** The warning llama.cpp's own rpc-server prints for a host other than 127.0.0.1, in our words. */
export function exposedWarning(host: string): string {
  return (
    `WARNING: rpc-server binds ${host}, not loopback. ggml's RPC server has no authentication and no encryption: ` +
    'anyone who can reach this port can allocate, read and overwrite memory of the served device and run graphs on it. ' +
    'Never expose it to an untrusted network; prefer 127.0.0.1 with an SSH tunnel or a private network.'
  );
}

/** Whether host:port can be bound now: the clear error for a port in use, before ggml's thread tries. */
async function checkBindable(host: string, port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (error: NodeJS.ErrnoException) => {
      const why =
        error.code === 'EADDRINUSE'
          ? 'the port is already in use (another rpc-server, or another program)'
          : error.code === 'EADDRNOTAVAIL'
            ? `${host} is not an address of this machine`
            : error.code === 'EACCES'
              ? 'permission denied (ports below 1024 need privileges)'
              : `${error.code}: ${error.message}`;
      reject(
        new RpcError(ErrorCode.RPC_LISTEN, `rpc-server cannot listen on ${host}:${port}: ${why}`, {
          remedy: `pick another --port (e.g. --port ${port + 1}), or stop whatever listens there`,
          details: { host, port, code: error.code ?? null },
        }),
      );
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** Whether a TCP socket listens on `port` (Linux /proc/net/tcp, state 0A): no connection, so the server sees no client. */
function listening(port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6'].some((file) => {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return false;
    }
    return text.split('\n').some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A';
    });
  });
}

/** How long the startup line waits for the socket to appear (it says "listening" only once it does). */
const LISTEN_WAIT_MS = 10_000;

export async function runRpcServer(flags: RpcServerFlags, context: CliContext): Promise<void> {
  const { host, port } = parseRpcEndpoint(`${flags.host}:${flags.port}`, '--host:--port');
  if (!LOOPBACK.has(host)) context.err(`${exposedWarning(host)}\n`);
  const { addon } = nativeBinary();
  const devices = addon.listDevices().filter((d) => !isRpcDevice(d));
  const device =
    flags.device === undefined
      ? (devices.find(isCudaGpu) ?? devices.find((d) => d.type === 'cpu'))
      : devices.find((d) => d.name === flags.device);
  // A device name that is not here is a usage mistake (the action turns it into commander's error), not a listen failure.
  if (!device) throw rangeError('--device', `one of ${devices.map((d) => d.name).join(', ')}`, flags.device ?? 'CPU');
  await checkBindable(host, port);
  const capBytes = flags.mem === undefined ? 0 : flags.mem * 2 ** 20;
  const free = capBytes > 0 ? Math.min(device.memoryFree, capBytes) : device.memoryFree;
  const total = capBytes > 0 ? Math.min(device.memoryTotal, capBytes) : device.memoryTotal;
  const threads = flags.threads ?? defaultThreadCount();
  const stopped = addon.rpcServe(`${host}:${port}`, device.name, flags.cache ?? '', threads, capBytes);
  const stop = (signal: NodeJS.Signals) => {
    context.err(`rpc-server: ${signal}, stopping\n`);
    // The server thread blocks in accept() for good; ending the process is how it stops.
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // Wait for the socket to listen (or the server to give up), then say so in one line.
  let outcome: string | null = null;
  void stopped.then((why) => (outcome = why));
  const since = Date.now();
  let up = false;
  while (outcome === null && !(up = listening(port)) && Date.now() - since < LISTEN_WAIT_MS)
    await new Promise((resolve) => setTimeout(resolve, 20));
  if (outcome === null && !up)
    context.err(
      `rpc-server: no listening socket seen on port ${port} after ${LISTEN_WAIT_MS / 1000} s (no /proc/net/tcp?); serving anyway\n`,
    );
  if (outcome === null && up) {
    const version = `${RPC_PROTOCOL_VERSION.major}.${RPC_PROTOCOL_VERSION.minor}.${RPC_PROTOCOL_VERSION.patch}`;
    context.out(
      `rpc-server listening on ${host}:${port} (RPC protocol ${version}): ${device.name} (${device.description}), ` +
        `${formatBytes(free, { unit: 'MiB', digits: 0 })} free of ${formatBytes(total, { unit: 'MiB', digits: 0 })}${capBytes > 0 ? ' (--mem cap)' : ''}\n`,
    );
  }
  const why = outcome ?? (await stopped);
  throw new RpcError(ErrorCode.RPC_LISTEN, `rpc-server on ${host}:${port} stopped: ${why}`, {
    remedy: 'check that the port is free and the host is an address of this machine; llama.cpp logs the reason with NODE_DEBUG=cuda-llama',
    details: { host, port },
  });
}

export function registerRpcServer(program: Command, context: CliContext): void {
  program
    .command('rpc-server')
    .description("serve this machine's device to other cuda-llama (rpcServers) or llama.cpp (--rpc) processes over ggml's RPC protocol")
    .option('--host <host>', 'address to bind; anything but loopback is reachable by others (see the warning)', '127.0.0.1')
    .option('--port <port>', 'TCP port', positiveInteger, RPC_DEFAULT_PORT)
    .option('--device <name>', 'ggml device to serve (CUDA0, CPU); default: the first CUDA GPU, else the CPU')
    .option('--mem <MiB>', 'report at most this much memory to clients (their fit checks plan within it)', positiveInteger)
    .option('--cache <dir>', "ggml's local cache of large tensors (clients send a hash instead of the data the second time)")
    .option('--threads <n>', 'CPU threads for the CPU device (default: physical cores)', positiveInteger)
    .addHelpText(
      'after',
      '\nServes one client connection at a time. Binds 127.0.0.1 by default: the protocol has no authentication.\n' +
        'Runs until SIGINT or SIGTERM (exit 0); a port in use exits 1, a device that is not here is a usage error (exit 2).',
    )
    .action(async (flags: RpcServerFlags, command: Command) => {
      try {
        await runRpcServer(flags, context);
      } catch (error) {
        if (isArgumentError(error)) command.error(`error: ${error.message}`);
        throw error;
      }
    });
}
