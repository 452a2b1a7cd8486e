/**
 * ReplicaPool: several instances of one model (one per GPU, or N on the devices given), each a
 * LlamaModel with its own context and engine, behind one router with failover. The router's rule is
 * lib/server/routing.ts. A replica whose context fails (ERR_CONTEXT_FAILED: a fatal llama_decode)
 * leaves the rotation: its running requests end with 503 replica_failed, the ones that had not
 * started are dispatched again to the others, and the pool reloads it in the background with
 * exponential backoff (dispose, then fork or load again).
 *
 * Weights are loaded once per device: the first replica on a device loads the file, and each further
 * one on that device is a fork of it (forkModel: one llama_model, one llama_context per replica), so N
 * replicas on one GPU (or on the CPU) hold one copy of the weights and N contexts (KV cache and
 * compute buffers). A replica on another GPU loads its own copy there. A failed replica is reloaded by
 * forking a serving replica on its device, since only its context failed; with none serving there, it
 * loads the file again. The weights live while any replica holds them (SharedWeights counts them), so
 * disposing the replica that loaded them leaves its forks working.
 */
import { Llama } from '../llama.js';
import { forkModel, type LlamaModel } from '../model.js';
import type { LoadOptions } from '../options.js';
import { CudaLlamaError, ErrorCode } from '../errors.js';
import { cudaGpuNames } from '../gpu/devices.js';
import { expectObject, expectString, optionalInteger, rejectUnknownKeys, typeError, rangeError } from '../validate.js';
import { HttpError } from './errors.js';
import { DEFAULT_AFFINITY_SLACK, PrefixRecord, chooseReplica } from './routing.js';

export type ReplicaState = 'loading' | 'ok' | 'failed' | 'reloading';

export interface ReplicaPoolOptions {
  /** Instances: a count placed round-robin over `devices`, or 'auto' (default): one per device. */
  replicas?: number | 'auto';
  /**
   * Devices to place replicas on, by ggml name ('CUDA0', 'CUDA1', or 'CPU'). Default: every visible
   * CUDA GPU, or the CPU when there is none (or `load.gpu` is 'cpu').
   */
  devices?: string[];
  /** Each replica's load options; a CUDA replica gets its device as its only GPU (mainGpu, splitMode 'none'). */
  load?: LoadOptions;
  /** Delay before the first reload of a failed replica, in ms; doubled after each failed reload. Default 1000. */
  reloadDelayMs?: number;
  /** Longest delay between reloads, in ms. Default 60000. */
  maxReloadDelayMs?: number;
  /** A replica this many requests busier than the least loaded may still get a conversation whose prefix it holds. Default 1. */
  affinitySlack?: number;
}

/** Where each replica goes: its device and the load options that put it there. */
export interface ReplicaPlacement {
  device: string;
  options: LoadOptions;
}

/**
 * Replicas on devices: 'auto' is one per device; N are placed round-robin. `gpus` are the visible
 * CUDA GPUs' names (cudaGpuNames). Pure, for the unit test.
 */
export function placeReplicas(
  replicas: number | 'auto',
  devices: readonly string[] | undefined,
  gpus: readonly string[],
  load: LoadOptions,
): ReplicaPlacement[] {
  const usable = load.gpu === 'cpu' ? [] : gpus;
  const chosen = devices ?? (usable.length > 0 ? usable : ['CPU']);
  for (const device of chosen) {
    if (device !== 'CPU' && !usable.includes(device)) {
      throw rangeError(
        'options.devices',
        `'CPU' or a visible CUDA GPU (${usable.length > 0 ? usable.join(', ') : load.gpu === 'cpu' ? "none with gpu: 'cpu'" : 'none found'})`,
        device,
      );
    }
  }
  const count = replicas === 'auto' ? chosen.length : replicas;
  return Array.from({ length: count }, (_, i) => {
    const device = chosen[i % chosen.length]!;
    if (device === 'CPU') {
      // Without devices given and without a GPU, the caller's policy stands (gpu: 'cuda' is refused by the load).
      return { device, options: devices === undefined && load.gpu !== 'cpu' ? { ...load } : { ...load, gpu: 'cpu' } };
    }
    return { device, options: { ...load, gpu: load.gpu ?? 'auto', mainGpu: usable.indexOf(device), splitMode: 'none' } };
  });
}

/** One instance of the model, as the pool and /health see it. */
export class Replica {
  readonly index: number;
  readonly device: string;
  readonly options: LoadOptions;
  state: ReplicaState = 'loading';
  model: LlamaModel | undefined;
  lastError: string | undefined;
  /** Generations dispatched to it and not settled (running plus waiting in its engine). */
  load = 0;
  /** Times it was taken out of rotation. */
  failovers = 0;
  /** Reloads tried since it last served. */
  reloadAttempts = 0;
  /** What the router sent it lately: its guess of the prefixes the engine's idle sequences hold. */
  record = new PrefixRecord(1);
  /**
   * The replica whose model this one forked at its last load, sharing its weights on the device;
   * undefined when it loaded the file itself.
   */
  sharesWeightsWith: number | undefined;

  constructor(index: number, placement: ReplicaPlacement) {
    this.index = index;
    this.device = placement.device;
    this.options = placement.options;
  }

  get labels(): { replica: string; device: string } {
    return { replica: String(this.index), device: this.device };
  }

  get serving(): boolean {
    return this.state === 'ok' && this.model !== undefined && !this.model.disposed;
  }
}

const poolKeys = ['replicas', 'devices', 'load', 'reloadDelayMs', 'maxReloadDelayMs', 'affinitySlack'] as const;

/** How the pool loads the file for a replica (the first on its device, or none there serves): Llama.load, replaceable in tests. */
export type ReplicaLoader = (path: string, options: LoadOptions) => Promise<LlamaModel>;

export class ReplicaPool {
  readonly path: string;
  readonly replicas: readonly Replica[];
  /** Resolves once every replica has loaded; rejects with the first load error (the pool is then disposed). */
  readonly ready: Promise<void>;
  readonly #loader: ReplicaLoader;
  readonly #reloadDelayMs: number;
  readonly #maxReloadDelayMs: number;
  readonly #slack: number;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #deviceTurns = new Map<string, Promise<unknown>>();
  #disposed = false;

  constructor(path: string, options: ReplicaPoolOptions = {}, loader: ReplicaLoader = (p, o) => Llama.load(p, o)) {
    expectString('path', path, { allowEmpty: false });
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, poolKeys);
    const replicas = options.replicas ?? 'auto';
    if (replicas !== 'auto' && (!Number.isInteger(replicas) || replicas < 1 || replicas > 64))
      throw typeError('options.replicas', "'auto' or an integer from 1 to 64", replicas);
    if (options.devices !== undefined && (!Array.isArray(options.devices) || options.devices.length === 0))
      throw typeError('options.devices', 'a non-empty array of device names', options.devices);
    this.#reloadDelayMs = optionalInteger('options.reloadDelayMs', options.reloadDelayMs, 1, 3_600_000) ?? 1000;
    this.#maxReloadDelayMs = optionalInteger('options.maxReloadDelayMs', options.maxReloadDelayMs, 1, 3_600_000) ?? 60_000;
    this.#slack = optionalInteger('options.affinitySlack', options.affinitySlack, 0, 1_000_000) ?? DEFAULT_AFFINITY_SLACK;
    const load = options.load ?? {};
    const gpus = load.gpu === 'cpu' ? [] : cudaGpuNames(Llama.devices());
    this.path = path;
    this.#loader = loader;
    this.replicas = Object.freeze(placeReplicas(replicas, options.devices, gpus, load).map((p, i) => new Replica(i, p)));
    this.ready = this.#loadAll();
    this.ready.catch(() => undefined); // the caller awaits it; never unhandled here
  }

  /** Devices load at once; on each, its first replica loads the file and the others then fork it, one by one. */
  async #loadAll(): Promise<void> {
    const last = new Map<string, Promise<void>>();
    const loads = this.replicas.map((r) => {
      const before = last.get(r.device);
      // A failed load fails the replicas after it on its device with its error (the pool is disposed).
      const load = before === undefined ? this.#loadReplica(r) : before.then(() => this.#loadReplica(r));
      last.set(r.device, load);
      return load;
    });
    const settled = await Promise.allSettled(loads);
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure) {
      await this.dispose();
      throw failure.reason;
    }
  }

  /**
   * One load or fork at a time on each device, whoever asks (the first loads, a reload after a
   * failover): two contexts are never being created at once on one llama_model, and a reload that
   * comes while its device's first replica still loads forks it instead of loading the file twice.
   */
  #onDevice<T>(device: string, work: () => Promise<T>): Promise<T> {
    const turn = (this.#deviceTurns.get(device) ?? Promise.resolve()).then(work);
    this.#deviceTurns.set(
      device,
      turn.catch(() => undefined),
    );
    return turn;
  }

  /** Forks a serving replica on the same device (the weights once per device), else loads the file. */
  #loadReplica(replica: Replica): Promise<void> {
    return this.#onDevice(replica.device, () => this.#loadOrFork(replica));
  }

  async #loadOrFork(replica: Replica): Promise<void> {
    // Replicas on one device have the same load options (placeReplicas), so a fork is what a load would be.
    const donor = this.replicas.find((r) => r !== replica && r.device === replica.device && r.serving);
    const model = donor
      ? await forkModel(donor.model!, { warmup: replica.options.warmup !== false })
      : await this.#loader(this.path, replica.options);
    if (this.#disposed) {
      await model.dispose();
      throw new CudaLlamaError(ErrorCode.DISPOSED, 'the replica pool was disposed while a replica loaded');
    }
    replica.model = model;
    replica.sharesWeightsWith = donor?.index;
    replica.record = new PrefixRecord(model.contextInfo.sequences);
    replica.state = 'ok';
    replica.lastError = undefined;
    replica.reloadAttempts = 0;
  }

  /** Requests the serving replicas run at once (their sequences). */
  capacity(): number {
    return this.replicas.reduce((sum, r) => sum + (r.serving ? r.model!.contextInfo.sequences : 0), 0);
  }

  /**
   * The replica for a request with routing key `key` (routing.ts), or for a request without one
   * (undefined: the least loaded). A 503 when none serves: model_not_ready while they first load,
   * no_replica once they have failed.
   */
  pick(key?: string): Replica {
    const candidates = this.replicas.map((r) => ({
      healthy: r.serving,
      load: r.load,
      prefix: key === undefined || !r.serving ? 0 : r.record.longestPrefix(key),
    }));
    const chosen = chooseReplica(candidates, key === undefined ? 0 : this.#slack);
    if (chosen >= 0) return this.replicas[chosen]!;
    if (this.#disposed) throw new HttpError(503, 'the server is shutting down', { code: 'shutting_down', headers: { 'retry-after': '1' } });
    if (this.replicas.every((r) => r.state === 'loading'))
      throw new HttpError(503, 'the model is loading', { code: 'model_not_ready', headers: { 'retry-after': '1' } });
    const states = this.replicas.map((r) => `${r.index} (${r.device}) ${r.state}${r.lastError ? `: ${r.lastError}` : ''}`).join('; ');
    throw new HttpError(503, `no replica is serving; each is being reloaded: ${states}`, {
      code: 'no_replica',
      headers: { 'retry-after': String(Math.max(1, Math.ceil(this.#reloadDelayMs / 1000))) },
    });
  }

  /**
   * Runs one generation on the replica the router picks. A failed context (ERR_CONTEXT_FAILED) takes
   * that replica out of rotation; the request is then sent to another replica when it had not
   * started there (it was refused or still waiting), or ends with 503 replica_failed when it had.
   * `reply` gives the text the routing key grows by once the request settles (its reply).
   */
  async run<T>(key: string, attempt: (model: LlamaModel, replica: Replica) => Promise<T>, reply: (value: T) => string): Promise<T> {
    for (;;) {
      const replica = this.pick(key);
      const model = replica.model!;
      replica.load++;
      replica.record.add(key);
      try {
        const value = await attempt(model, replica);
        replica.record.add(key + reply(value));
        return value;
      } catch (error) {
        if (!(error instanceof CudaLlamaError) || error.code !== ErrorCode.CONTEXT_FAILED) throw error;
        this.markFailed(replica, model, error);
        if (error.details?.started === false) continue;
        throw new HttpError(
          503,
          `replica ${replica.index} (${replica.device}) failed while this request ran (${error.message.split('\n')[0]}); ` +
            'it is out of rotation and being reloaded: a retry will land on another replica',
          { code: 'replica_failed', headers: { 'retry-after': '1' } },
        );
      } finally {
        replica.load--;
      }
    }
  }

  /** Takes `replica` out of rotation (once per failure of `model`) and schedules its reload. */
  markFailed(replica: Replica, model: LlamaModel, error: unknown): void {
    if (replica.model !== model || replica.state !== 'ok') return;
    replica.state = 'failed';
    replica.lastError = error instanceof Error ? error.message.split('\n')[0] : String(error);
    replica.failovers++;
    replica.record.clear();
    this.#scheduleReload(replica);
  }

  #scheduleReload(replica: Replica): void {
    if (this.#disposed) return;
    const delay = Math.min(this.#maxReloadDelayMs, this.#reloadDelayMs * 2 ** replica.reloadAttempts);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void this.#reload(replica);
    }, delay);
    timer.unref();
    this.#timers.add(timer);
  }

  async #reload(replica: Replica): Promise<void> {
    if (this.#disposed) return;
    replica.state = 'reloading';
    replica.reloadAttempts++;
    const failed = replica.model;
    replica.model = undefined;
    // Frees its context; its weights stay while another replica (a fork, or the one it forked) holds them.
    await failed?.dispose().catch(() => undefined); // a failed context's requests have all ended
    try {
      await this.#loadReplica(replica);
    } catch (error) {
      if (this.#disposed) return;
      replica.state = 'failed';
      replica.lastError = `reload ${replica.reloadAttempts} failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
      this.#scheduleReload(replica);
    }
  }

  /** /health's view: 'ok' when every replica serves, 'degraded' when some do, else 'loading' or 'failed'. */
  health(): { status: 'ok' | 'degraded' | 'loading' | 'failed'; replicas: ReplicaHealth[] } {
    const replicas = this.replicas.map((r): ReplicaHealth => ({
      replica: r.index,
      device: r.device,
      state: r.state,
      load: r.load,
      failovers: r.failovers,
      ...(r.lastError !== undefined ? { lastError: r.lastError } : {}),
    }));
    const serving = this.replicas.filter((r) => r.serving).length;
    const status =
      serving === this.replicas.length
        ? 'ok'
        : serving > 0
          ? 'degraded'
          : this.replicas.every((r) => r.state === 'loading')
            ? 'loading'
            : 'failed';
    return { status, replicas };
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Stops reloading and disposes every replica's model. Idempotent. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all(this.replicas.map((r) => r.model?.dispose()));
  }
}

export interface ReplicaHealth {
  replica: number;
  device: string;
  state: ReplicaState;
  /** Generations dispatched and not settled. */
  load: number;
  failovers: number;
  lastError?: string;
}
