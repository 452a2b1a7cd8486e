// Test models, made by our own generator into the git-ignored test/.models cache (never downloaded).
import { mkdir, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Llama } from '../../lib/index.js';
import { ensureSyntheticModel, type SyntheticShapeName } from '../../lib/gguf/synthetic-model.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const cacheDir = fileURLToPath(new URL('../.models', import.meta.url));
export const vocabPath = fileURLToPath(new URL('../../vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf', import.meta.url));

export async function syntheticModel(shape: SyntheticShapeName = 'tiny', seed = 1): Promise<string> {
  await mkdir(cacheDir, { recursive: true });
  return ensureSyntheticModel({ cacheDir, shape, vocabPath, seed });
}

/** A quantized copy of a synthetic model, made with llama.cpp's quantizer through our API. */
export async function quantizedModel(shape: SyntheticShapeName, type: 'Q8_0' | 'Q4_0', seed = 1): Promise<string> {
  const f16 = await syntheticModel(shape, seed);
  const out = f16.replace(/-f16\.gguf$/, `-${type.toLowerCase()}.gguf`);
  try {
    await stat(out);
  } catch {
    await Llama.quantize(f16, `${out}.partial`, type);
    const { rename } = await import('node:fs/promises');
    await rename(`${out}.partial`, out);
  }
  return out;
}
