// The ONE place that reads llama.cpp internals (src/llama-ext.h, llama_model, llama_context).
// Everything a layer report needs that llama.h does not offer: which device holds each layer,
// the input and output tensors, bytes per buffer type, and where the graph's ops are scheduled.
// Pinned to vendor/llama.cpp.pin.json; the static_asserts in llama_adapter.cc fail the build if
// an upgrade moves the signatures, and test/native/model.test.ts checks the report's contents.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace cuda_llama {

// JS: architectureSupported(name) -> boolean (llm_arch_from_string)
Napi::Value ArchitectureSupported(const Napi::CallbackInfo& info);

// JS: layerPlacement(model) -> { layers: string[], output: string, input: string | null,
//                                outputTensor: string | null, hasOutputTensor }   (device names;
//                                null: a host buffer without a device; hasOutputTensor false: an
//                                encoder without an output projection)
Napi::Value LayerPlacement(const Napi::CallbackInfo& info);

// JS: memoryBreakdown(context) -> [{ bufferType, device, deviceType, model, context, compute }]
Napi::Value MemoryBreakdown(const Napi::CallbackInfo& info);

// JS: graphPlacement(context, nTokens) -> { splits, nodes, nodesByBackend: { [backend]: n },
//       cpuOpsOnGpuMemory: { count, examples: [{ op, node, backend, tensor, device }] } }
//   cpuOpsOnGpuMemory: ops scheduled on a host backend that read weights or KV cache held in a
//   GPU's own memory (the GPU backend does not support them); examples: the first 8.
// Builds and schedules (split only: allocates and computes nothing) the graph for a batch of
// nTokens. Call it only while the context is idle; the next decode builds its own graph.
Napi::Value GraphPlacement(const Napi::CallbackInfo& info);

// JS: embeddingTraits(model) -> { poolingType, causalAttention, languageModelHead, rankingHead }
//   poolingType: the file's own (hparams.pooling_type: llama.h's enum, NONE when the file says
//   nothing); causalAttention: hparams.causal_attn (false for BERT-style encoders);
//   languageModelHead: an output projection to the vocabulary exists (tied or not), so the model
//   can generate; rankingHead: a classifier (cls or cls_out) that RANK pooling applies, so
//   rerank() scores mean something.
Napi::Value EmbeddingTraits(const Napi::CallbackInfo& info);

// What llama.cpp's GBNF parser (llama_grammar_parser, src/llama-grammar.h) finds wrong with
// `text`, in its own words: a syntax error, an undefined rule, no rule named `root`, or left
// recursion; empty when llama.cpp will accept it. The checks of llama_grammar_init_impl without its
// prints to stderr. lib/structured/grammar-guards.ts has refused what would hang or crash the
// parser before this is called (repetitions {m,n} with m > n, deep nesting). JS thread.
std::string GrammarProblem(const llama_vocab* vocab, const std::string& text, const std::string& root);

// ggml's RPC backend (ggml/src/ggml-rpc, a backend module under GGML_BACKEND_DL, reached through
// its registry's proc addresses as common/arg.cpp does).

// Registers the devices of the rpc-server at `endpoint` ("host:port") with ggml's device registry
// (ggml_backend_rpc_add_server, then ggml_backend_device_register for each device not registered
// yet) and returns their names (RPC0, RPC1, ...). Idempotent per endpoint. ggml ABORTS the process
// when it cannot connect or the handshake fails: call it only for an endpoint lib/gpu/rpc.ts has
// just probed. On failure (no RPC module, a server with no device) returns false with `error` set.
bool RpcAddServer(const std::string& endpoint, std::vector<std::string>& names, std::string& error);

// Whether a device is a remote one of the RPC backend (its memory query is a network round trip,
// and an ABORT when the server has gone away).
bool IsRpcDevice(ggml_backend_dev_t dev);

// The device an rpc-server serves: `name` from the registry (empty: the CPU). With
// `memory_cap_bytes` > 0, a wrapper device that reports at most that much free and total memory
// (see the .cc for why a wrapper). Null with `error` set for an unknown name.
ggml_backend_dev_t RpcServeDevice(const std::string& name, uint64_t memory_cap_bytes, std::string& error);

// ggml_backend_rpc_start_server on `device`: blocks for as long as the server runs, which is until
// the process ends unless binding or accepting fails; returns why it stopped. Prints llama.cpp's own
// banner and per-connection lines to stdout (the server is a command's whole process).
std::string RpcRunServer(const std::string& endpoint, ggml_backend_dev_t device, const std::string& cache_dir,
                         size_t threads);

}  // namespace cuda_llama
