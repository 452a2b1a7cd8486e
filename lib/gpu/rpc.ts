/**
 * Remote devices of ggml's RPC backend: `rpc-server` processes (llama.cpp's, or `cuda-llama
 * rpc-server`) whose devices appear as RPC0, RPC1, ... (description: the endpoint).
 *
 * ggml ABORTS the process when it cannot connect to an endpoint, when the handshake fails, and on
 * any send or receive failure later. So before the addon ever registers an endpoint, this file
 * speaks the first commands of the protocol itself (ggml/src/ggml-rpc/ggml-rpc.cpp, protocol
 * RPC_PROTO_*_VERSION of ggml-rpc.h) over a node:net socket: a wrong address, a server of another
 * llama.cpp, or a server busy with another client is a typed RpcError with the endpoint, and the
 * process lives. What stays out of reach is a server that dies once it serves us (docs/robustness.md).
 */
import { connect, type Socket } from 'node:net';
import { ErrorCode, RpcError } from '../errors.js';
import type { NativeAddon, NativeDevice } from '../binding/native.js';
import { typeError } from '../validate.js';

/** The protocol of the vendored ggml-rpc.h (RPC_PROTO_MAJOR/MINOR/PATCH_VERSION); test/native/rpc.test.ts reads it back from both servers. */
export const RPC_PROTOCOL_VERSION = { major: 7, minor: 0, patch: 0 } as const;

/** The RPC backend's backend name in ggml's registry (ggml_backend_rpc_reg_get_name). */
export const RPC_BACKEND = 'RPC';

/** GGML_RPC_MAX_SERVERS of ggml-rpc.h. */
export const RPC_MAX_SERVERS = 16;

/** ggml's rpc-server's default port (tools/rpc/rpc-server.cpp). */
export const RPC_DEFAULT_PORT = 50052;

/** Commands of enum rpc_cmd that the probe sends (RPC_CMD_HELLO is pinned to 14 by a static_assert upstream). */
const CMD_GET_DEVICE_MEMORY = 11;
const CMD_HELLO = 14;
const CMD_DEVICE_COUNT = 15;
/** rpc_msg_hello_req: conn_caps[RPC_CONN_CAPS_SIZE] (transport.h); zeros ask for plain TCP. */
const CONN_CAPS_SIZE = 24;
/** rpc_msg_hello_rsp: major, minor, patch, padding, conn_caps. */
const HELLO_RESPONSE_SIZE = 4 + CONN_CAPS_SIZE;

export interface RpcEndpoint {
  /** As given: 'host:port'. */
  endpoint: string;
  host: string;
  port: number;
}

export interface RpcDeviceMemory {
  /** The device's index on its server. */
  index: number;
  memoryFree: number;
  memoryTotal: number;
}

export interface RpcProbe {
  endpoint: string;
  /** The server's protocol version. */
  version: { major: number; minor: number; patch: number };
  devices: RpcDeviceMemory[];
}

/**
 * 'host:port' as ggml parses it (parse_endpoint: split at the FIRST ':', std::stoi of the rest).
 * Stricter where ggml would misread: the host must be non-empty and the port all digits, 1 to
 * 65535. IPv6 addresses cannot be written (their first ':' ends the host), so they are refused.
 */
export function parseRpcEndpoint(endpoint: unknown, name = 'endpoint'): RpcEndpoint {
  if (typeof endpoint !== 'string') throw typeError(name, "a 'host:port' string", endpoint);
  const colon = endpoint.indexOf(':');
  const host = colon < 0 ? '' : endpoint.slice(0, colon);
  const portText = colon < 0 ? '' : endpoint.slice(colon + 1);
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (colon < 0 || host === '' || /\s/.test(host) || !(port >= 1 && port <= 65535)) {
    const ipv6 = endpoint.startsWith('[') || endpoint.split(':').length > 2;
    throw new RpcError(ErrorCode.RPC_ENDPOINT, `${name} ${JSON.stringify(endpoint)} is not an RPC endpoint 'host:port'`, {
      remedy: ipv6
        ? "ggml splits an endpoint at its first ':', so IPv6 addresses are not supported: use an IPv4 address or a host name that resolves to one"
        : "write it as 'host:port' with a port from 1 to 65535, e.g. '127.0.0.1:50052'",
      details: { endpoint },
    });
  }
  return { endpoint, host, port };
}

/** The remedy for a server that cannot be reached. */
function startRemedy({ host, port }: RpcEndpoint): string {
  return `start one there: \`npx cuda-llama rpc-server --host ${host} --port ${port}\` (or llama.cpp's rpc-server of the same llama.cpp), and check that the address is reachable from here`;
}

/** Bytes arriving on a socket, read as exact-length records. */
class Reader {
  #chunks: Buffer[] = [];
  #length = 0;
  #wake: (() => void) | null = null;
  #ended: Error | null = null;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#wake?.();
    });
    const end = (error: Error) => {
      this.#ended ??= error;
      this.#wake?.();
    };
    socket.on('end', () => end(Object.assign(new Error('the server closed the connection'), { code: 'EOF' })));
    socket.on('error', end);
    socket.on('close', () => end(Object.assign(new Error('the connection closed'), { code: 'EOF' })));
  }

  async read(n: number): Promise<Buffer> {
    while (this.#length < n) {
      if (this.#ended) throw this.#ended;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = null;
    }
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all.subarray(n)];
    this.#length = all.length - n;
    return all.subarray(0, n);
  }
}

function command(cmd: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUInt8(cmd, 0);
  header.writeBigUInt64LE(BigInt(payload.length), 1);
  return Buffer.concat([header, payload]);
}

/** One response: u64 size (must be `size`) and the payload. */
async function response(reader: Reader, size: number, what: string): Promise<Buffer> {
  const got = Number((await reader.read(8)).readBigUInt64LE(0));
  if (got !== size) throw Object.assign(new Error(`${what}: a response of ${got} bytes, expected ${size}`), { code: 'EPROTO' });
  return reader.read(size);
}

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'EPIPE',
]);

/**
 * Connects to an rpc-server, says HELLO as ggml's client does (protocol version check included),
 * asks for its device count and each device's memory, and disconnects. The server serves one client
 * at a time, so a server busy with another client does not answer HELLO: after `timeoutMs` that is
 * ERR_RPC_BUSY. Refusals: ERR_RPC_ENDPOINT, ERR_RPC_UNREACHABLE, ERR_RPC_VERSION, ERR_RPC_BUSY.
 */
export async function probeRpcServer(endpoint: string, options: { timeoutMs?: number } = {}): Promise<RpcProbe> {
  const parsed = parseRpcEndpoint(endpoint);
  const timeoutMs = options.timeoutMs ?? 5000;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0))
    throw typeError('options.timeoutMs', 'a positive number of milliseconds', timeoutMs);
  const socket = connect({ host: parsed.host, port: parsed.port });
  socket.setNoDelay(true);
  const reader = new Reader(socket);
  let stage: 'connect' | 'hello' | 'devices' = 'connect';
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEOUT' })), timeoutMs);
  });
  const exchange = async (): Promise<RpcProbe> => {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    stage = 'hello';
    socket.write(command(CMD_HELLO, Buffer.alloc(CONN_CAPS_SIZE)));
    const hello = await response(reader, HELLO_RESPONSE_SIZE, 'HELLO');
    const version = { major: hello[0], minor: hello[1], patch: hello[2] };
    if (version.major !== RPC_PROTOCOL_VERSION.major || version.minor > RPC_PROTOCOL_VERSION.minor) {
      throw versionError(parsed, version);
    }
    stage = 'devices';
    socket.write(command(CMD_DEVICE_COUNT));
    const count = (await response(reader, 4, 'DEVICE_COUNT')).readUInt32LE(0);
    const devices: RpcDeviceMemory[] = [];
    for (let index = 0; index < count; index++) {
      const request = Buffer.alloc(4);
      request.writeUInt32LE(index, 0);
      socket.write(command(CMD_GET_DEVICE_MEMORY, request));
      const memory = await response(reader, 16, 'GET_DEVICE_MEMORY');
      devices.push({ index, memoryFree: Number(memory.readBigUInt64LE(0)), memoryTotal: Number(memory.readBigUInt64LE(8)) });
    }
    return { endpoint, version, devices };
  };
  try {
    return await Promise.race([exchange(), timedOut]);
  } catch (error) {
    if (error instanceof RpcError) throw error;
    throw probeError(parsed, stage, error as NodeJS.ErrnoException, timeoutMs);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

function versionError(endpoint: RpcEndpoint, version: RpcProbe['version'] | null): RpcError {
  const ours = `${RPC_PROTOCOL_VERSION.major}.${RPC_PROTOCOL_VERSION.minor}.${RPC_PROTOCOL_VERSION.patch}`;
  const theirs = version ? `${version.major}.${version.minor}.${version.patch}` : 'unknown (it closed the connection at HELLO)';
  return new RpcError(
    ErrorCode.RPC_VERSION,
    `the rpc-server at ${endpoint.endpoint} speaks RPC protocol ${theirs}; this build speaks ${ours} (the major versions must match and the server's minor may not be newer)`,
    {
      remedy:
        'build both sides from the same llama.cpp: run `npx cuda-llama rpc-server` of this cuda-llama version there, or a llama.cpp rpc-server of the same commit',
      details: { endpoint: endpoint.endpoint, serverVersion: version, clientVersion: { ...RPC_PROTOCOL_VERSION } },
    },
  );
}

function probeError(
  endpoint: RpcEndpoint,
  stage: 'connect' | 'hello' | 'devices',
  error: NodeJS.ErrnoException,
  timeoutMs: number,
): RpcError {
  const at = endpoint.endpoint;
  if (error.code === 'ETIMEOUT' && stage !== 'connect') {
    return new RpcError(
      ErrorCode.RPC_BUSY,
      `the rpc-server at ${at} accepted the connection but did not answer ${stage === 'hello' ? 'the handshake' : 'its device queries'} within ${timeoutMs} ms: it is probably serving another client (an rpc-server serves one client at a time)`,
      {
        remedy:
          'wait for the other client (another process using this server) to finish, or start another rpc-server for this process; a larger timeout helps only a slow server',
        details: { endpoint: at, stage, timeoutMs },
      },
    );
  }
  if (stage === 'hello' && (error.code === 'EOF' || error.code === 'EPROTO')) {
    // ggml's server closes the connection on a HELLO of another size (another protocol major), and
    // anything else that is not an rpc-server answers with something else.
    return versionError(endpoint, null);
  }
  const reason =
    error.code === 'ETIMEOUT'
      ? `no connection within ${timeoutMs} ms`
      : error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN'
        ? `the host ${endpoint.host} could not be resolved`
        : `${error.code ?? 'error'}: ${error.message}`;
  return new RpcError(ErrorCode.RPC_UNREACHABLE, `no rpc-server answers at ${at} (${reason})`, {
    remedy: startRemedy(endpoint),
    cause: error,
    details: { endpoint: at, stage, code: error.code ?? null, knownCode: UNREACHABLE_CODES.has(error.code ?? '') },
  });
}

/** What this process knows of an endpoint it registered. */
interface Registered {
  probe: RpcProbe;
  /** The ggml device names of its devices, in the server's order. */
  devices: string[];
  /** Loaded models on it: while one lives, this process holds the server's one connection. */
  users: number;
}

const registered = new Map<string, Registered>();

/**
 * Probes each endpoint and registers its devices with ggml; returns the device names, in order.
 * An endpoint this process is using right now (a live model on it) is not probed again: the server
 * serves this process's connection and would not answer a second one.
 */
export async function addRpcServers(
  addon: Pick<NativeAddon, 'rpcAddServer'>,
  endpoints: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<string[]> {
  const names: string[] = [];
  for (const endpoint of endpoints) {
    const known = registered.get(endpoint);
    if (known && known.users > 0) {
      names.push(...known.devices);
      continue;
    }
    const probe = await probeRpcServer(endpoint, options);
    const devices = known?.devices ?? addon.rpcAddServer(endpoint);
    registered.set(endpoint, { probe, devices, users: known?.users ?? 0 });
    names.push(...devices);
  }
  return names;
}

/** Counts a loaded model on these endpoints; the returned function releases it (once). */
export function useRpcServers(endpoints: readonly string[]): () => void {
  const held = endpoints.map((e) => registered.get(e)).filter((r): r is Registered => r !== undefined);
  for (const r of held) r.users++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const r of held) r.users--;
  };
}

/** The endpoint a device serves from, for an RPC device this process registered; null for any other. */
export function rpcEndpointOf(device: string): string | null {
  for (const [endpoint, r] of registered) if (r.devices.includes(device)) return endpoint;
  return null;
}

/** Whether a registry device is a remote one (ggml's RPC backend). */
export function isRpcDevice(device: Pick<NativeDevice, 'backend'>): boolean {
  return device.backend === RPC_BACKEND;
}

/**
 * ggml's device list with the memory of RPC devices filled in from the last probe of their
 * endpoints (the addon reports 0 for them rather than ask a server that may have gone away).
 */
export function listDevices(addon: Pick<NativeAddon, 'listDevices'>): NativeDevice[] {
  return addon.listDevices().map((device) => {
    if (!isRpcDevice(device)) return device;
    const r = registered.get(device.description);
    const memory = r?.probe.devices[r.devices.indexOf(device.name)];
    return memory ? { ...device, memoryFree: memory.memoryFree, memoryTotal: memory.memoryTotal } : device;
  });
}
