// Test models, made by our own generator into the git-ignored test/.models cache (never downloaded).
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Llama } from '../../lib/index.js';
import { ensureSyntheticModel, syntheticVocabFile, type SyntheticShapeName } from '../../lib/gguf/synthetic-model.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const cacheDir = fileURLToPath(new URL('../.models', import.meta.url));
/** llama.cpp's vocabulary files (ggml-vocab-*.gguf). */
export const vocabDir = fileURLToPath(new URL('../../vendor/llama.cpp/models/', import.meta.url));
/** The SentencePiece vocabulary of the llama, gemma2 and mamba shapes. */
export const vocabPath = join(vocabDir, 'ggml-vocab-llama-spm.gguf');

/** A synthetic model of a named shape, made with the vocabulary its shape names (syntheticVocabFile). */
export async function syntheticModel(shape: SyntheticShapeName = 'tiny', seed = 1): Promise<string> {
  await mkdir(cacheDir, { recursive: true });
  return ensureSyntheticModel({ cacheDir, shape, vocabPath: join(vocabDir, syntheticVocabFile(shape)), seed });
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
