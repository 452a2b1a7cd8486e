// Whether a GPU-tier suite (test/gpu/) runs, and where: on CUDA when the build and a device are
// there; on the CPU when CUDA_LLAMA_GPU_TIER_ON_CPU=1 rehearses it; else it skips with the reason,
// which CUDA_LLAMA_REQUIRE_GPU=1 turns into a failure (GPU CI, GPU sessions).
import { Llama } from '../../lib/index.js';

export function gpuTier(suite: string): { cuda: boolean; rehearsal: boolean } {
  const build = Llama.build();
  const rehearsal = process.env.CUDA_LLAMA_GPU_TIER_ON_CPU === '1';
  const requireGpu = process.env.CUDA_LLAMA_REQUIRE_GPU === '1';
  if (rehearsal && requireGpu)
    throw new Error('CUDA_LLAMA_GPU_TIER_ON_CPU=1 runs this suite on the CPU, which CUDA_LLAMA_REQUIRE_GPU=1 forbids: unset one of them');
  const cuda = build.cuda.available && !rehearsal;
  if (!cuda && !rehearsal) {
    const why = `${suite} skipped: ${build.cuda.reason}`;
    if (requireGpu) throw new Error(`${why} (CUDA_LLAMA_REQUIRE_GPU=1)`);
    console.warn(`${why} (CUDA_LLAMA_GPU_TIER_ON_CPU=1 rehearses it on the CPU)`);
  }
  return { cuda, rehearsal };
}
