#!/usr/bin/env node
// The `cuda-llama` command.
//   cuda-llama doctor [--json] [--cpu] [--no-probe]: exit code 0 only when everything asked for
//     works (the GPU path, unless --cpu).
//   cuda-llama tune <model.gguf> [--prompt 512] [--output 128] [--sequences 1] [--gpu auto|cuda|cpu] [--threads N]
//     [--reps 2] [--json]: measures configurations for that workload and recommends one.
import { parseArgs } from 'node:util';
import { CudaLlamaError } from '../errors.js';
import { formatDoctorReport, runDoctor } from './doctor.js';
import { Llama } from '../llama.js';
import type { GpuPolicy } from '../options.js';

const usage = [
  'usage: cuda-llama doctor [--json] [--cpu] [--no-probe]',
  '       cuda-llama tune <model.gguf> [--prompt 512] [--output 128] [--sequences 1] [--gpu auto|cuda|cpu] [--threads N] [--reps 2] [--json]',
].join('\n');

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer, got '${value}'`);
  return n;
}

async function tuneCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      prompt: { type: 'string' }, output: { type: 'string' }, sequences: { type: 'string' }, gpu: { type: 'string' }, threads: { type: 'string' },
      reps: { type: 'string' }, json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) {
    console.error(usage);
    return 2;
  }
  const result = await Llama.tune(positionals[0]!, {
    promptTokens: integer('prompt', values.prompt),
    outputTokens: integer('output', values.output),
    sequences: integer('sequences', values.sequences),
    gpu: values.gpu as GpuPolicy | undefined,
    threads: integer('threads', values.threads),
    repetitions: integer('reps', values.reps),
    // Progress to stderr: stdout carries the answer (or the JSON).
    onProgress: (line) => console.error(line),
  });
  if (values.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(result.reasons.join('\n'));
  }
  return 0;
}

async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'tune') return tuneCommand(rest);
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, cpu: { type: 'boolean', default: false }, 'no-probe': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals[0] !== 'doctor') {
    console.error(usage);
    return values.help ? 0 : 2;
  }
  const report = await runDoctor({ gpu: !values.cpu, probe: !values['no-probe'] });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
  return report.ok ? 0 : 1;
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  // Typed errors say what and what to do; anything else is a bug worth its stack.
  console.error(error instanceof CudaLlamaError ? `${error.name} ${error.code}: ${error.message}` : error);
  process.exitCode = 1;
});
