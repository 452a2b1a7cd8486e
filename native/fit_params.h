// gpuLayers: 'auto': llama.cpp's own fitter (common/fit.h, common_fit_params), which loads the
// model with no_alloc and shrinks what it offloads until the projection fits free device memory.
#pragma once

#include <napi.h>

namespace cuda_llama {

// JS: fitParams(path, { devices, nCtx, nBatch, nUbatch, typeK, typeV, flashAttnType, offloadKqv },
//               marginBytes) -> Promise<{ status: 'success'|'failure'|'error', nGpuLayers, tensorSplit,
//                                         tensorOverrides }>
// tensorOverrides > 0 means the fit wants tensor-level overrides (MoE experts kept on the host),
// which lib/ does not pass on yet and so treats as "no fit".
Napi::Value FitParams(const Napi::CallbackInfo& info);

}  // namespace cuda_llama
