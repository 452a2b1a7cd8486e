/**
 * `cuda-llama doctor`: what was loaded, what the machine has, and whether the GPU really works,
 * proven by loading a tiny synthetic model fully on it and comparing speeds with the CPU. Every
 * problem is one line with its remedy; `ok` is true only when everything asked for works.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CudaLlamaError } from '../errors.js';
import { formatBytes } from '../format.js';
import { Llama, type BuildReport } from '../llama.js';
import { packageRoot } from '../binding/load-native.js';
import type { NativeDevice } from '../binding/native.js';
import { ensureSyntheticModel } from '../gguf/synthetic-model.js';
import type { GpuTelemetry } from '../gpu/telemetry.js';
import { PTX_JIT_NOTE } from '../gpu/availability.js';
import { isRpcDevice } from '../gpu/rpc.js';

export interface DoctorOptions {
  /** Check the GPU path (default true); false checks the CPU path only. */
  gpu?: boolean;
  /** Load and run the probe model (default true). */
  probe?: boolean;
  /** rpc-server endpoints ('host:port') to probe and list as remote devices (`doctor --rpc`). */
  rpcServers?: string[];
}

export interface ProbeResult {
  target: 'cpu' | 'cuda';
  loadMs: number;
  tokensPerSecond: number;
  summary: string;
  layerReport?: unknown;
}

export interface DoctorReport {
  ok: boolean;
  build: BuildReport | null;
  devices: NativeDevice[];
  telemetry: GpuTelemetry | null;
  probes: ProbeResult[];
  /** Things that are wrong: "what - remedy". */
  problems: string[];
  /** Worth knowing, not failures (a throttled GPU, a skipped probe). */
  warnings: string[];
}

/** Where llama.cpp's SentencePiece vocabulary is: a source checkout, or the packed package's assets. */
export function probeVocabPath(root = packageRoot): string | null {
  for (const candidate of [
    join(root, 'vendor', 'llama.cpp', 'models', 'ggml-vocab-llama-spm.gguf'),
    join(root, 'assets', 'ggml-vocab-llama-spm.gguf'),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

function problemLine(error: unknown): string {
  if (error instanceof CudaLlamaError) return `${error.message.split('\nRemedy:')[0]} - ${error.remedy ?? 'see README Troubleshooting'}`;
  return String((error as Error)?.message ?? error);
}

async function probe(path: string, target: 'cpu' | 'cuda'): Promise<ProbeResult> {
  const started = performance.now();
  const model = await Llama.load(path, { gpu: target, contextSize: 512 });
  try {
    const loadMs = performance.now() - started;
    await model.generate('warm up', { maxTokens: 4, temperature: 0 });
    const result = await model.generate('The doctor checks the generation speed of', { maxTokens: 64, temperature: 0 });
    const report = await model.layerReport();
    return {
      target,
      loadMs,
      tokensPerSecond: result.timings.tokensPerSecond,
      summary: report.summary,
      layerReport: JSON.parse(JSON.stringify(report)),
    };
  } finally {
    await model.dispose();
  }
}

export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const wantGpu = options.gpu ?? true;
  const report: DoctorReport = { ok: false, build: null, devices: [], telemetry: null, probes: [], problems: [], warnings: [] };
  try {
    report.build = Llama.build();
    for (const endpoint of options.rpcServers ?? []) {
      // One problem per endpoint that cannot be used; the others are still listed.
      await Llama.addRpcServers([endpoint]).catch((error: unknown) => report.problems.push(problemLine(error)));
    }
    report.devices = Llama.devices();
    report.telemetry = Llama.telemetry();
  } catch (error) {
    report.problems.push(problemLine(error));
    return report;
  }
  const { build, telemetry } = report;
  if (wantGpu) {
    if (!telemetry.available)
      report.problems.push(
        `no NVIDIA driver found (NVML: ${telemetry.reason}) - install the NVIDIA driver, or run \`cuda-llama doctor --cpu\` to check the CPU path only`,
      );
    if (!build.cuda.available) report.problems.push(`CUDA is not usable: ${build.cuda.reason} - ${build.cuda.remedy}`);
  }
  if (telemetry.available) {
    for (const d of telemetry.devices.filter((g) => g.throttled)) {
      report.warnings.push(
        `GPU ${d.index} (${d.name}) is throttled now: ${d.throttleReasons.join(', ')} - check cooling and power limits (${d.powerW ?? '?'} W of ${d.powerLimitW ?? '?'} W, ${d.temperatureC ?? '?'} °C)`,
      );
    }
  }
  if (options.probe ?? true) {
    const vocab = probeVocabPath();
    if (!vocab) {
      report.warnings.push("probe skipped: llama.cpp's vocabulary file is not in this installation (vendor/ or assets/)");
    } else {
      const cacheDir = join(tmpdir(), 'cuda-llama-doctor');
      await mkdir(cacheDir, { recursive: true });
      const path = await ensureSyntheticModel({ cacheDir, shape: 'small', vocabPath: vocab });
      try {
        report.probes.push(await probe(path, 'cpu'));
      } catch (error) {
        report.problems.push(`the CPU probe failed: ${problemLine(error)}`);
      }
      if (wantGpu && build.cuda.available) {
        try {
          const gpu = await probe(path, 'cuda');
          report.probes.push(gpu);
          const cpu = report.probes.find((p) => p.target === 'cpu');
          if (cpu && gpu.tokensPerSecond < cpu.tokensPerSecond) {
            report.warnings.push(
              `the GPU generated slower than the CPU on the probe model (${gpu.tokensPerSecond.toFixed(1)} vs ${cpu.tokensPerSecond.toFixed(1)} tok/s): tiny models are launch-bound; check real models with \`npm run bench\``,
            );
          }
        } catch (error) {
          report.problems.push(`the GPU probe failed: ${problemLine(error)}`);
        }
      }
    }
  }
  report.ok = report.problems.length === 0;
  return report;
}

const gib = (n: number | null) => (n === null ? '?' : formatBytes(n, { unit: 'GiB', digits: 1 }));

export function formatDoctorReport(report: DoctorReport): string {
  const lines: string[] = [];
  const { build } = report;
  if (build) {
    const m = build.metadata;
    lines.push(`binary: ${build.path} (${build.source})`);
    lines.push(
      `  variant ${m?.variant ?? 'unknown'}, llama.cpp ${build.llamaCppCommit.slice(0, 12)}, CPU features ${m?.cpuFeatures ?? '?'}, CUDA architectures ${m?.cudaArchitectures ?? 'none'}`,
    );
    lines.push(`backends: ${build.backends.map((b) => `${b.name} (${b.deviceCount} device${b.deviceCount === 1 ? '' : 's'})`).join(', ')}`);
    const cm = build.cudaModule;
    if (cm) {
      lines.push(
        `CUDA module: ${cm.path} (${cm.source === 'package' ? 'optional CUDA package' : 'beside the addon'}; CUDA ${cm.metadata?.cudaCompilerVersion ?? '?'}, architectures ${cm.metadata?.cudaArchitectures ?? '?'})` +
          (cm.problem ? ` not used: ${cm.problem}` : ''),
      );
      if (build.cudaModuleCode) lines.push(`  its GPU code: ${build.cudaModuleCode}`);
    }
    lines.push(`CUDA: ${build.cuda.available ? `usable on ${build.cuda.devices.join(', ')}` : `not usable - ${build.cuda.reason}`}`);
    for (const way of build.cuda.runsAs ?? []) lines.push(`  runs on ${way}`);
    if (build.cuda.jitGpus) lines.push(`  ${build.cuda.jitGpus.join(', ')}: ${PTX_JIT_NOTE}`);
    for (const lib of build.cudaRuntime?.preloaded ?? []) lines.push(`  CUDA runtime ${lib.soname}: ${lib.path} (${lib.source})`);
  }
  for (const d of report.devices)
    lines.push(
      `device ${d.name} [${isRpcDevice(d) ? 'remote rpc-server' : d.type}] ${d.description}: ${gib(d.memoryFree)} free of ${gib(d.memoryTotal)}`,
    );
  const t = report.telemetry;
  if (t && t.available) {
    lines.push(`NVIDIA driver ${t.driverVersion ?? '?'}, CUDA driver API ${t.cudaDriverVersion ?? '?'}`);
    for (const d of t.devices) {
      lines.push(
        `  GPU ${d.index} ${d.name} (compute ${d.computeCapability}): SM ${d.smClockMHz ?? '?'}/${d.maxSmClockMHz ?? '?'} MHz, memory ${d.memoryClockMHz ?? '?'} MHz, ` +
          `${d.powerW?.toFixed(0) ?? '?'}/${d.powerLimitW?.toFixed(0) ?? '?'} W, ${d.temperatureC ?? '?'} °C, util ${d.utilizationGpu ?? '?'}%, ` +
          `throttle: ${d.throttleReasons.join(', ') || 'none'}`,
      );
    }
  } else if (t) {
    lines.push(`NVML: not available (${t.reason})`);
  }
  for (const p of report.probes)
    lines.push(`probe ${p.target}: load ${p.loadMs.toFixed(0)} ms, ${p.tokensPerSecond.toFixed(1)} tok/s; ${p.summary}`);
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  for (const p of report.problems) lines.push(`PROBLEM: ${p}`);
  lines.push(report.ok ? 'doctor: everything asked for works' : `doctor: ${report.problems.length} problem(s)`);
  return lines.join('\n');
}
