// The benchmark's handling of node-llama-cpp's CUDA module: which one its GPU rows load, and the
// carry that takes its install to a GPU host. On fixture modules in a temporary install folder.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCudaModuleCode, readFatbinEntries } from '../../lib/gpu/fatbin.js';
import { zeroCudaCode } from '../bench/carry-node-llama-cpp.js';
import { TRIMMED_MARK, nodeLlamaCppCudaModulePaths, selectNodeLlamaCppCudaModule } from '../bench/node-llama-cpp.js';
import { ptx, sass, writeModule } from '../helpers/cuda-module.js';

// node-llama-cpp 3.22.1's CUDA 13 package (CUDA 13.1): no SASS for an H100, PTX ISA 9.1.
const theirs = [ptx(75, '9.1'), ptx(80, '9.1'), sass(86), sass(89), ptx(90, '9.1'), sass(120), sass(121)];
const h100 = [{ name: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0' }];

function install(): { dir: string; active: string; kept: string; ours: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-nlc-'));
  const { active, kept } = nodeLlamaCppCudaModulePaths(dir);
  mkdirSync(dirname(active), { recursive: true });
  copyFileSync(writeModule([theirs]), active);
  const ours = join(dir, 'ours.so');
  copyFileSync(writeModule([[sass(90)]]), ours);
  return { dir, active, kept, ours };
}

describe("node-llama-cpp's CUDA module in the benchmark", () => {
  it("stands cuda-llama's module in for its own where no GPU can run that, and puts its own back where one can", () => {
    const { dir, active, kept, ours } = install();
    const original = readFileSync(active);

    const swapped = selectNodeLlamaCppCudaModule(ours, h100, '13.0', dir);
    expect(swapped.source).toBe('cuda-llama');
    expect(swapped.reason).toMatch(/^NVIDIA H100 80GB HBM3: its only code for compute capability 9\.0 is PTX compute_90 of PTX ISA 9\.1/);
    expect(swapped.ownCode).toMatch(/^SASS sm_86, sm_89, sm_120, sm_121; PTX compute_75, compute_80, compute_90/);
    expect(readFileSync(active)).toEqual(readFileSync(ours));
    expect(readFileSync(kept)).toEqual(original);
    // Again: the kept original is what gets judged, not the stand-in.
    expect(selectNodeLlamaCppCudaModule(ours, h100, '13.0', dir).source).toBe('cuda-llama');

    // A CUDA 13.1 driver compiles its PTX: its own goes back.
    expect(selectNodeLlamaCppCudaModule(ours, h100, '13.1', dir)).toEqual({ source: 'own', ownCode: swapped.ownCode });
    expect(readFileSync(active)).toEqual(original);
    expect(existsSync(kept)).toBe(false);
  });

  it('never loads a carried copy whose code was zeroed, even where its headers say it would run', () => {
    const { dir, active, kept, ours } = install();
    writeFileSync(active + TRIMMED_MARK, 'zeroed\n');
    const ampere = [{ name: 'NVIDIA A10', computeCapability: '8.6' }];
    const result = selectNodeLlamaCppCudaModule(ours, ampere, '13.0', dir);
    expect(result.source).toBe('cuda-llama');
    expect(result.reason).toMatch(/carried with its GPU code removed .*, though by its fatbin a GPU here could have run it$/);
    // Where its code would not have run either, that comes first.
    const h100Result = selectNodeLlamaCppCudaModule(ours, h100, '13.0', dir);
    expect(h100Result.reason).toMatch(/^NVIDIA H100 80GB HBM3: its only code .* \(and its copy here was carried with its GPU code removed/);
    expect(existsSync(kept + TRIMMED_MARK)).toBe(true);
    expect(existsSync(active + TRIMMED_MARK)).toBe(false);
  });

  it("the carry zeroes every entry's code and keeps every header", () => {
    const path = writeModule([theirs, [sass(90), ptx(90, '9.0')]]);
    const before = readCudaModuleCode(path);
    const entries = readFatbinEntries(path)!;
    const bytes = readFileSync(path);
    expect(entries.every((e) => bytes.subarray(e.payloadOffset, e.payloadOffset + e.payloadBytes).every((b) => b === 0xab))).toBe(true);

    expect(zeroCudaCode(path)).toBe(entries.reduce((sum, e) => sum + e.payloadBytes, 0));
    const after = readFileSync(path);
    expect(entries.every((e) => after.subarray(e.payloadOffset, e.payloadOffset + e.payloadBytes).every((b) => b === 0))).toBe(true);
    expect(readCudaModuleCode(path)).toEqual(before);
    // Nothing outside the payloads changed.
    const outside = (buffer: Buffer) => {
      const copy = Buffer.from(buffer);
      for (const e of entries) copy.fill(0, e.payloadOffset, e.payloadOffset + e.payloadBytes);
      return copy;
    };
    expect(outside(after)).toEqual(outside(bytes));
  });
});
