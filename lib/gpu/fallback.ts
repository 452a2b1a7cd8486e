/**
 * The words of the CPU-fallback warning. gpu: 'auto' may end up on the CPU, wholly (no usable
 * CUDA, or the model does not fit) or partly (llama.cpp placed some of it on the CPU); that is
 * allowed, never silent. Llama.load emits the warning once for the model it hands back.
 */
import type { GpuDecision } from './decision.js';
import { placementRemedy, type PlacementProblem } from './placement.js';

/** The process warning code of a gpu: 'auto' load that runs wholly or partly on the CPU. */
export const CPU_FALLBACK_WARNING = 'CUDA_LLAMA_CPU_FALLBACK';

/** The warning for a load with this decision and these placement problems; null when there is nothing to say. */
export function cpuFallbackMessage(decision: GpuDecision, problems: readonly PlacementProblem[]): string | null {
  if (decision.requested !== 'auto') return null;
  if (decision.fallback) {
    const { reason, remedy } = decision.fallback;
    return `gpu: 'auto' is running on the CPU because ${reason}.${remedy ? ` ${remedy}` : ''}`;
  }
  if (problems.length === 0) return null;
  return `gpu: 'auto' is running partly on the CPU: ${problems.map((p) => p.message).join('; ')}. ${placementRemedy(problems)}`;
}
