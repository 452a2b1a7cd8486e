/**
 * The server's Prometheus metrics (prom-client, one Registry per server so that two servers in
 * one process do not share counters), all prefixed cuda_llama_, in base units. The GPU gauges are
 * NVML readings taken at scrape time (Llama.telemetry()), so a dashboard shows the clocks, power
 * and throttle reasons next to the request latencies they explain.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GenerateResult } from '../generation.js';
import type { EngineStats } from '../model.js';
import { throttleReasonBits, type GpuReading, type GpuTelemetry, type ThrottleReason } from '../gpu/telemetry.js';

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const tokenBuckets = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1];
const durationBuckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** A replica's labels: `replica` (its index) and `device` (ggml's name). Empty for a single-model server. */
export type ReplicaLabels = { replica: string; device: string } | Record<string, never>;

/** What the metrics read of one replica at scrape time (a pool's server only). */
export interface ReplicaView {
  labels: { replica: string; device: string };
  /** Its device's PCI bus id (ggml's deviceId for a CUDA device), which finds its NVML readings; null on the CPU. */
  pciBusId: string | null;
  up: boolean;
  /** Generations dispatched and not settled. */
  load: number;
  sequences: number;
  failovers: number;
  engineStats(): EngineStats | undefined;
}

export class ServerMetrics {
  readonly registry = new Registry();
  /** With a pool, `replica` and `device` label the request, token and queue series as well. */
  readonly requests: Counter<string>;
  readonly running: Gauge<string>;
  readonly waiting: Gauge<string>;
  readonly promptTokens: Counter<string>;
  readonly cachedTokens: Counter<string>;
  readonly generationTokens: Counter<string>;
  readonly timeToFirstToken: Histogram<string>;
  readonly interTokenLatency: Histogram<string>;
  readonly requestDuration: Histogram<string>;
  readonly queueTime: Histogram<string>;
  readonly embeddingTexts: Counter<'kind'>;
  readonly embeddingTokens: Counter<'kind'>;

  constructor(options: {
    sequences: () => number;
    telemetry: () => GpuTelemetry;
    inFlight: () => number;
    /** The model's engineStats(), undefined while it loads or once it is disposed. */
    engineStats: () => EngineStats | undefined;
    /** A pool's replicas: every series below gets `replica` and `device` labels, plus replica_up and replica_failovers_total. */
    replicas?: () => readonly ReplicaView[];
  }) {
    const registers = [this.registry];
    const p = 'cuda_llama_';
    collectDefaultMetrics({ register: this.registry, prefix: p });
    const { replicas } = options;
    const gpuReadings = sampledReadings(options.telemetry);
    // A single-model server's series keep no replica labels (unchanged); a pool's all have them.
    const rl = replicas ? ['replica', 'device'] : [];
    this.requests = new Counter({
      name: `${p}requests_total`,
      help: 'HTTP requests answered, by route and status',
      labelNames: ['route', 'status', ...rl],
      registers,
    });
    // The engine runs up to `sequences` requests and queues the rest first come first served.
    const { sequences, inFlight } = options;
    this.running = new Gauge({
      name: `${p}requests_running`,
      help: 'Generation requests holding a sequence',
      labelNames: rl,
      registers,
      collect() {
        if (!replicas) return this.set(Math.min(inFlight(), sequences()));
        this.reset();
        for (const r of replicas()) this.set(r.labels, Math.min(r.load, r.sequences));
      },
    });
    this.waiting = new Gauge({
      name: `${p}requests_waiting`,
      help: 'Generation requests queued for a sequence',
      labelNames: rl,
      registers,
      collect() {
        if (!replicas) return this.set(Math.max(0, inFlight() - sequences()));
        this.reset();
        for (const r of replicas()) this.set(r.labels, Math.max(0, r.load - r.sequences));
      },
    });
    this.promptTokens = new Counter({
      name: `${p}prompt_tokens_total`,
      help: 'Prompt tokens of finished requests',
      labelNames: rl,
      registers,
    });
    this.cachedTokens = new Counter({
      name: `${p}prompt_tokens_cached_total`,
      help: 'Prompt tokens reused from the KV cache, not evaluated again',
      labelNames: rl,
      registers,
    });
    this.generationTokens = new Counter({ name: `${p}generation_tokens_total`, help: 'Tokens generated', labelNames: rl, registers });
    this.timeToFirstToken = new Histogram({
      name: `${p}time_to_first_token_seconds`,
      help: 'From the request to its first token',
      labelNames: rl,
      buckets: latencyBuckets,
      registers,
    });
    this.interTokenLatency = new Histogram({
      name: `${p}inter_token_latency_seconds`,
      help: 'Between two tokens of one request, at the engine',
      labelNames: rl,
      buckets: tokenBuckets,
      registers,
    });
    this.requestDuration = new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'Whole HTTP request',
      labelNames: ['route', ...rl],
      buckets: durationBuckets,
      registers,
    });
    this.queueTime = new Histogram({
      name: `${p}queue_time_seconds`,
      help: 'From the request to a sequence taking its prompt',
      labelNames: rl,
      buckets: latencyBuckets,
      registers,
    });
    // kind: 'embeddings' (POST /v1/embeddings: one text per input) or 'rerank' (one query–document pair per document).
    this.embeddingTexts = new Counter({
      name: `${p}embedding_texts_total`,
      help: 'Texts embedded, or query–document pairs scored, by kind (embeddings, rerank)',
      labelNames: ['kind'],
      registers,
    });
    this.embeddingTokens = new Counter({
      name: `${p}embedding_tokens_total`,
      help: 'Tokens of the texts embedded or pairs scored, by kind (embeddings, rerank)',
      labelNames: ['kind'],
      registers,
    });
    if (replicas) {
      registerEngineGauges(registers, () => replicas().map((r) => ({ labels: r.labels, stats: r.up ? r.engineStats() : undefined })), rl);
      registerReplicaSeries(registers, replicas, gpuReadings);
    } else {
      registerEngineGauges(registers, () => [{ labels: {}, stats: options.engineStats() }], rl);
    }
    registerGpuGauges(this.registry, gpuReadings);
  }

  /**
   * A finished generation's tokens and latencies: the prompt once, every completion's tokens (n).
   * `labels`: the replica that ran it (a pool's server), or none.
   */
  observeGeneration(result: ObservedGeneration, labels: ReplicaLabels = {}): void {
    const { timings } = result;
    this.promptTokens.inc(labels, result.promptTokens);
    this.cachedTokens.inc(labels, result.cachedTokens);
    if (result.tokens.length > 0) this.timeToFirstToken.observe(labels, timings.timeToFirstTokenMs / 1000);
    this.queueTime.observe(labels, queueMs(result) / 1000);
    for (const choice of result.choices ?? [result]) {
      this.generationTokens.inc(labels, choice.tokens.length);
      // One observation per gap, at the engine's average pace for this completion.
      const gaps = choice.tokens.length - 1;
      if (gaps > 0) {
        const gap = choice.timings.generationMs / gaps / 1000;
        for (let i = 0; i < gaps; i++) this.interTokenLatency.observe(labels, gap);
      }
    }
  }

  /** A finished embeddings or rerank request: its texts (or pairs) and their tokens. */
  observeEmbedding(kind: 'embeddings' | 'rerank', tokenCounts: readonly number[]): void {
    this.embeddingTexts.inc({ kind }, tokenCounts.length);
    this.embeddingTokens.inc(
      { kind },
      tokenCounts.reduce((a, b) => a + b, 0),
    );
  }
}

/** What the metrics read of a result (a generation's or a chat's). */
export type ObservedGeneration = Pick<GenerateResult, 'tokens' | 'timings' | 'promptTokens' | 'cachedTokens'> & {
  choices?: Pick<GenerateResult, 'tokens' | 'timings'>[] | undefined;
};

/** Waiting for a sequence: the time to first token not spent on the prompt. */
export function queueMs(result: Pick<GenerateResult, 'tokens' | 'timings'>): number {
  const { timeToFirstTokenMs, promptMs, totalMs } = result.timings;
  const untilFirst = result.tokens.length > 0 ? timeToFirstTokenMs : totalMs;
  return Math.max(0, untilFirst - promptMs);
}

/** A pool's replicas: whether each serves, and how often it was taken out of rotation. */
function registerReplicaSeries(registers: Registry[], replicas: () => readonly ReplicaView[], gpuReadings: () => GpuReading[]): void {
  const p = 'cuda_llama_replica_';
  // The NVML series (cuda_llama_gpu_*) are per GPU, labelled with NVML's index; a replica's are found
  // by joining on `gpu`. NVML counts GPUs in PCI bus order and CUDA (CUDA0, ...) may not, so the two
  // are matched by PCI bus id, never by position.
  new Gauge({
    name: `${p}gpu_info`,
    help: '1 for each replica on a GPU: `gpu` is the NVML index of its device (join with cuda_llama_gpu_* on gpu)',
    labelNames: ['replica', 'device', 'gpu'],
    registers,
    collect() {
      this.reset();
      const readings = gpuReadings();
      for (const r of replicas()) {
        const gpu = nvmlIndexOf(r.pciBusId, readings);
        if (gpu !== null) this.set({ ...r.labels, gpu: String(gpu) }, 1);
      }
    },
  });
  new Gauge({
    name: `${p}up`,
    help: 'Whether the replica serves (1) or is failed, reloading or loading (0)',
    labelNames: ['replica', 'device'],
    registers,
    collect() {
      this.reset();
      for (const r of replicas()) this.set(r.labels, r.up ? 1 : 0);
    },
  });
  // The pool counts failovers itself; each scrape reports its (monotonic) count.
  new Counter({
    name: `${p}failovers_total`,
    help: 'Times the replica was taken out of rotation after its context failed',
    labelNames: ['replica', 'device'],
    registers,
    collect() {
      this.reset();
      for (const r of replicas()) this.inc(r.labels, r.failovers);
    },
  });
}

/** The KV cache's fill and the parked sessions, read at scrape time (atomics the engine publishes each step). */
function registerEngineGauges(
  registers: Registry[],
  engineStats: () => { labels: ReplicaLabels; stats: EngineStats | undefined }[],
  labelNames: string[],
): void {
  const p = 'cuda_llama_kv_cache_';
  const gauges: { name: string; help: string; value: (s: EngineStats) => number }[] = [
    {
      name: 'usage_ratio',
      help: 'Share of the KV-cache cells holding tokens, running and idle sequences alike',
      value: (s) => (s.totalCells > 0 ? s.usedCells / s.totalCells : 0),
    },
    { name: 'parked_sessions', help: 'Idle sessions whose KV state is parked in host memory', value: (s) => s.parkedSessions },
    { name: 'parked_bytes', help: 'Host memory of the parked session states', value: (s) => s.parkedBytes },
  ];
  for (const g of gauges) {
    new Gauge({
      name: `${p}${g.name}`,
      help: g.help,
      labelNames,
      registers,
      collect() {
        for (const { labels, stats } of engineStats()) this.set(labels, stats === undefined ? 0 : g.value(stats));
      },
    });
  }
}

function registerGpuGauges(registry: Registry, read: () => GpuReading[]): void {
  const p = 'cuda_llama_gpu_';
  const labelNames = ['gpu', 'name'] as const;
  type Reading = GpuReading;
  const gauges: { name: string; help: string; value: (d: Reading) => number | null }[] = [
    { name: 'sm_clock_hertz', help: 'SM clock', value: (d) => (d.smClockMHz === null ? null : d.smClockMHz * 1e6) },
    { name: 'sm_clock_max_hertz', help: 'Highest SM clock', value: (d) => (d.maxSmClockMHz === null ? null : d.maxSmClockMHz * 1e6) },
    { name: 'memory_clock_hertz', help: 'Memory clock', value: (d) => (d.memoryClockMHz === null ? null : d.memoryClockMHz * 1e6) },
    { name: 'power_watts', help: 'Power draw', value: (d) => d.powerW },
    { name: 'power_limit_watts', help: 'Enforced power limit', value: (d) => d.powerLimitW },
    { name: 'temperature_celsius', help: 'GPU temperature', value: (d) => d.temperatureC },
    {
      name: 'utilization_ratio',
      help: 'Share of time a kernel ran (NVML utilization.gpu)',
      value: (d) => (d.utilizationGpu === null ? null : d.utilizationGpu / 100),
    },
    {
      name: 'memory_utilization_ratio',
      help: 'Share of time memory was read or written',
      value: (d) => (d.utilizationMemory === null ? null : d.utilizationMemory / 100),
    },
    { name: 'memory_total_bytes', help: 'Device memory', value: (d) => d.memoryTotal },
    { name: 'memory_free_bytes', help: 'Free device memory', value: (d) => d.memoryFree },
  ];
  const labels = (d: Reading) => ({ gpu: String(d.index), name: d.name ?? 'unknown' });
  for (const g of gauges) {
    new Gauge({
      name: `${p}${g.name}`,
      help: g.help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const d of read()) {
          const v = g.value(d);
          if (v !== null) this.set(labels(d), v);
        }
      },
    });
  }
  new Gauge({
    name: `${p}throttle_reason`,
    help: 'NVML clock event reasons: 1 when active (swPowerCap, hwSlowdown, swThermalSlowdown, ...)',
    labelNames: [...labelNames, 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of read()) {
        for (const reason of Object.keys(throttleReasonBits) as ThrottleReason[])
          this.set({ ...labels(d), reason }, d.throttleReasons.includes(reason) ? 1 : 0);
      }
    },
  });
}

/** One NVML sample per scrape, shared by every gauge that reads the GPUs. */
function sampledReadings(telemetry: () => GpuTelemetry): () => GpuReading[] {
  let sample: { at: number; value: GpuTelemetry } | undefined;
  return () => {
    const now = Date.now();
    if (!sample || now - sample.at > 500) sample = { at: now, value: telemetry() };
    return sample.value.available ? sample.value.devices : [];
  };
}

/**
 * The NVML index of the GPU at `pciBusId` (ggml's deviceId of a CUDA device: 'dddd:bb:dd.f' in lower
 * case, '-vN' appended for a virtual device), or null. Compared as numbers, as the two libraries
 * may write the domain and the function differently.
 */
export function nvmlIndexOf(pciBusId: string | null, readings: readonly Pick<GpuReading, 'index' | 'pciBusId'>[]): number | null {
  const key = (id: string | null) => {
    const m = id === null ? null : /^([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)/i.exec(id);
    return m
      ? m
          .slice(1, 4)
          .map((part) => Number.parseInt(part, 16))
          .join(':')
      : null;
  };
  const wanted = key(pciBusId);
  if (wanted === null) return null;
  return readings.find((d) => key(d.pciBusId) === wanted)?.index ?? null;
}
