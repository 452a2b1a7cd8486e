/** The GPU side of the benchmark: the up-front CUDA check, NVML sampling while a run is measured, and its summaries. */
import { performance } from 'node:perf_hooks';
import { CudaLlamaError, Llama, type BuildReport, type GpuReading, type GpuTelemetry, type ThrottleReason } from '../../lib/index.js';
import { fail } from './common.js';

/**
 * Exits with the library's own refusal when CUDA cannot be used, before the llama-bench build,
 * the model and the CPU rows spend minutes. The refusal is taken from a real `gpu: 'cuda'` load,
 * so its message and remedy are exactly what a user of the API gets; `probePath` only has to be a
 * valid GGUF, because the policy refuses before llama.cpp loads anything.
 */
export async function requireCuda(probePath: string): Promise<BuildReport> {
  const build = Llama.build();
  if (build.cuda.available) return build;
  try {
    const model = await Llama.load(probePath, { gpu: 'cuda' });
    await model.dispose();
  } catch (error) {
    if (!(error instanceof CudaLlamaError)) throw error;
    // The message already ends with "Remedy: ..." when there is one.
    fail(`--gpu: ${error.name} ${error.code}: ${error.message}`);
  }
  fail(
    `--gpu: CUDA is not available: ${build.cuda.reason ?? 'unknown reason'}${build.cuda.remedy ? `\nRemedy: ${build.cuda.remedy}` : ''}`,
  );
}

/** What NVML saw while one run was measured, over every sample and device. */
export interface GpuWindow {
  samples: number;
  /** Power, thermal or hardware slowdown in at least one sample. */
  throttled: boolean;
  throttleReasons: ThrottleReason[];
  maxTemperatureC: number | null;
  maxPowerW: number | null;
  minSmClockMHz: number | null;
  maxSmClockMHz: number | null;
  /** The longest one sample blocked the event loop: what it could add to a JavaScript-clock TTFT. */
  maxSampleMs: number;
}

function extreme(values: (number | null)[], pick: (...v: number[]) => number): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length ? pick(...known) : null;
}

function summarizeWindow(readings: GpuReading[], maxSampleMs: number): GpuWindow {
  return {
    samples: readings.length,
    throttled: readings.some((r) => r.throttled),
    throttleReasons: [...new Set(readings.flatMap((r) => r.throttleReasons))],
    maxTemperatureC: extreme(
      readings.map((r) => r.temperatureC),
      Math.max,
    ),
    maxPowerW: extreme(
      readings.map((r) => r.powerW),
      Math.max,
    ),
    minSmClockMHz: extreme(
      readings.map((r) => r.smClockMHz),
      Math.min,
    ),
    maxSmClockMHz: extreme(
      readings.map((r) => r.smClockMHz),
      Math.max,
    ),
    maxSampleMs: Math.round(maxSampleMs * 1000) / 1000,
  };
}

/**
 * Samples NVML every `intervalMs` while `run` is in flight. Samples taken only before and after
 * would see an idle GPU; during the run both programs leave the event loop free (cuda-llama
 * decodes on its own thread, llama-bench is a child process), so the timer fires on time. A sample
 * is a synchronous NVML call on the main thread: the interval is long so that one rarely lands
 * on cuda-llama's time to first token (a JavaScript-clock measurement), and its cost is recorded.
 */
export async function withGpuSamples<T>(run: () => Promise<T>, intervalMs = 500): Promise<T & { gpu: GpuWindow }> {
  const readings: GpuReading[] = [];
  let maxSampleMs = 0;
  const take = () => {
    const started = performance.now();
    const t = Llama.telemetry();
    maxSampleMs = Math.max(maxSampleMs, performance.now() - started);
    if (t.available) readings.push(...t.devices);
  };
  const timer = setInterval(take, intervalMs);
  let value: T;
  try {
    value = await run();
  } finally {
    clearInterval(timer);
  }
  take();
  return { ...value, gpu: summarizeWindow(readings, maxSampleMs) };
}

export function windowNote(w: GpuWindow): string {
  if (w.samples === 0) return '; no NVML samples';
  const clock = w.minSmClockMHz === null ? '' : `, SM ${w.minSmClockMHz}–${w.maxSmClockMHz} MHz`;
  return (
    `; GPU max ${w.maxTemperatureC ?? '?'} °C, ${w.maxPowerW?.toFixed(0) ?? '?'} W${clock}` +
    (w.throttled ? `, THROTTLED (${w.throttleReasons.join(', ')})` : '')
  );
}

/** "NVIDIA H100 80GB HBM3 (compute 9.0, 79.6 GiB); driver 570.86.15, CUDA driver 12.8" */
export function gpuMachineLine(t: GpuTelemetry): string {
  if (!t.available) return `GPU: no NVML readings (${t.reason})`;
  const gpus = t.devices.map(
    (d) =>
      `${d.name ?? 'unknown GPU'} (compute ${d.computeCapability ?? '?'}` +
      `${d.memoryTotal === null ? '' : `, ${(d.memoryTotal / 2 ** 30).toFixed(1)} GiB`})`,
  );
  return `GPU: ${gpus.join(', ') || 'none'}; driver ${t.driverVersion ?? 'unknown'}, CUDA driver ${t.cudaDriverVersion ?? 'unknown'}`;
}

function readingLine(d: GpuReading): string {
  const power = d.powerW === null ? '? W' : `${d.powerW.toFixed(0)}${d.powerLimitW === null ? '' : `/${d.powerLimitW.toFixed(0)}`} W`;
  return (
    `${d.name ?? `GPU ${d.index}`}: SM ${d.smClockMHz ?? '?'}/${d.maxSmClockMHz ?? '?'} MHz, memory ${d.memoryClockMHz ?? '?'} MHz, ` +
    `${power}, ${d.temperatureC ?? '?'} °C, throttle reasons [${d.throttleReasons.join(', ')}]${d.throttled ? ' THROTTLED' : ''}`
  );
}

export function telemetryLine(label: string, t: GpuTelemetry): string {
  return t.available ? `NVML ${label}: ${t.devices.map(readingLine).join('; ')}` : `NVML ${label}: unavailable (${t.reason})`;
}

/** Where throttling was seen: the start/end samples and the per-run windows. Empty when nowhere. */
export function throttleFindings(start: GpuTelemetry, end: GpuTelemetry, windows: { label: string; gpu: GpuWindow }[]): string[] {
  const found: string[] = [];
  for (const [label, t] of [
    ['start', start],
    ['end', end],
  ] as const) {
    if (t.available && t.devices.some((d) => d.throttled)) found.push(`${label} sample`);
  }
  for (const w of windows) if (w.gpu.throttled) found.push(`${w.label} (${w.gpu.throttleReasons.join(', ')})`);
  return found;
}
