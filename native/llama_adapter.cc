// Internals live here only. See llama_adapter.h for why.
#include "llama_adapter.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend.h"
#include "common.h"
#include "context.h"
#include "ggml-backend-impl.h"
#include "ggml-backend.h"
#include "ggml-rpc.h"
#include "llama-arch.h"
#include "llama-context.h"
#include "llama-ext.h"
#include "llama-grammar.h"
#include "llama-model.h"
#include "model.h"

// Fail the build, not a user, when the pinned internals move.
static_assert(std::is_same_v<decltype(&llama_model::dev_layer), ggml_backend_dev_t (llama_model::*)(int) const>,
              "llama_model::dev_layer changed: update native/llama_adapter.cc for the new llama.cpp pin");
static_assert(std::is_same_v<decltype(&llama_get_memory_breakdown), llama_memory_breakdown (*)(const llama_context*)>,
              "llama_get_memory_breakdown changed: update native/llama_adapter.cc for the new llama.cpp pin");
// GraphPlacement passes split_only by position: a parameter inserted before it must not compile.
static_assert(std::is_same_v<decltype(&llama_context::graph_reserve),
                             ggml_cgraph* (llama_context::*)(uint32_t, uint32_t, uint32_t,
                                                             const llama_memory_context_i*, bool, size_t*)>,
              "llama_context::graph_reserve changed: update native/llama_adapter.cc for the new llama.cpp pin");

static_assert(
    std::is_same_v<decltype(&llama_grammar_parser::parse_rule), const char* (llama_grammar_parser::*)(const char*)>,
    "llama_grammar_parser::parse_rule changed: update GrammarProblem in native/llama_adapter.cc");

namespace cuda_llama {
namespace {

Napi::Value DeviceName(Napi::Env env, ggml_backend_dev_t dev) {
  if (dev == nullptr) return env.Null();
  return Napi::String::New(env, ggml_backend_dev_name(dev));
}

Napi::Value TensorDevice(Napi::Env env, const llama_model* model, const char* name) {
  const ggml_tensor* tensor = model->get_tensor(name);
  if (tensor == nullptr || tensor->buffer == nullptr) return env.Null();
  ggml_backend_buffer_type_t buft = ggml_backend_buffer_get_type(tensor->buffer);
  ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
  return DeviceName(env, dev);
}

// Host-side backends (the CPU and accelerators such as BLAS that compute in host memory).
bool IsHostBackend(ggml_backend_t backend) {
  const enum ggml_backend_dev_type type = ggml_backend_dev_type(ggml_backend_get_device(backend));
  return type == GGML_BACKEND_DEVICE_TYPE_CPU || type == GGML_BACKEND_DEVICE_TYPE_ACCEL;
}

// The GPU holding a weight or KV-cache tensor in its own memory; null for anything else. Not
// compute buffers (intermediate results, which the scheduler copies between backends by design)
// and not host buffers: with a GPU present llama.cpp keeps CPU-layer weights in pinned host
// memory (CUDA_Host, a buffer type whose device is the GPU), which the CPU reads directly.
ggml_backend_dev_t GpuResidentDevice(const ggml_tensor* tensor) {
  if (tensor->view_src != nullptr) tensor = tensor->view_src;
  ggml_backend_buffer_t buffer = tensor->buffer;
  if (buffer == nullptr || ggml_backend_buffer_get_usage(buffer) == GGML_BACKEND_BUFFER_USAGE_COMPUTE ||
      ggml_backend_buffer_is_host(buffer)) {
    return nullptr;
  }
  ggml_backend_dev_t dev = ggml_backend_buft_get_device(ggml_backend_buffer_get_type(buffer));
  if (dev == nullptr) return nullptr;
  const enum ggml_backend_dev_type type = ggml_backend_dev_type(dev);
  return type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU ? dev : nullptr;
}

// The tensor an op reads, as it was before scheduling. When an op runs on another backend than
// one of its inputs, ggml's scheduler replaces that input with a copy named
// "<backend>#<original name>#<copy index>" (ggml-backend.cpp, ggml_backend_sched_split_graph), so
// the original, and with it where the data lives, is found again by name in the graph. A name
// that does not resolve (truncated at GGML_MAX_NAME, or a future naming) leaves the copy, which
// is never GPU-resident: the op goes uncounted, never falsely refused.
const ggml_tensor* BeforeScheduling(ggml_cgraph* graph, const ggml_tensor* src, const std::string& backend_name) {
  const std::string name = ggml_get_name(src);
  const std::string prefix = backend_name + "#";
  const size_t last = name.rfind('#');
  if (name.compare(0, prefix.size(), prefix) != 0 || last == std::string::npos || last < prefix.size() ||
      last + 1 == name.size() || name.find_first_not_of("0123456789", last + 1) != std::string::npos) {
    return src;
  }
  const ggml_tensor* original = ggml_graph_get_tensor(graph, name.substr(prefix.size(), last - prefix.size()).c_str());
  return original != nullptr ? original : src;
}

// One op on a host backend that reads a tensor held in a GPU's own memory.
struct CpuOpOnGpuMemory {
  std::string op, node, backend, tensor, device;
};

// Where the ops of a scheduled graph run: nodes per backend, and the host-backend ops that read
// weights or KV cache held in GPU memory (all counted, the first kMaxExamples kept).
struct GraphCensus {
  static constexpr size_t kMaxExamples = 8;
  std::map<std::string, int> by_backend;
  int cpu_ops_on_gpu_memory = 0;
  std::vector<CpuOpOnGpuMemory> examples;
};

// Views compute nothing; counting them would blur where the work runs.
bool ComputesNothing(const ggml_tensor* node) {
  return ggml_is_empty(node) || node->op == GGML_OP_NONE || node->op == GGML_OP_RESHAPE || node->op == GGML_OP_VIEW ||
         node->op == GGML_OP_PERMUTE || node->op == GGML_OP_TRANSPOSE;
}

// The first input of `node` (which runs on the host backend `backend_name`) whose data a GPU holds
// in its own memory, as it was before scheduling; null when there is none. `device` gets the GPU.
const ggml_tensor* GpuResidentInput(ggml_cgraph* graph, const ggml_tensor* node, const std::string& backend_name,
                                    ggml_backend_dev_t* device) {
  for (int j = 0; j < GGML_MAX_SRC; j++) {
    if (node->src[j] == nullptr) continue;
    const ggml_tensor* src = BeforeScheduling(graph, node->src[j], backend_name);
    if ((*device = GpuResidentDevice(src)) != nullptr) return src;
  }
  return nullptr;
}

GraphCensus TakeCensus(ggml_cgraph* graph, ggml_backend_sched_t sched) {
  GraphCensus census;
  const int n_nodes = ggml_graph_n_nodes(graph);
  for (int i = 0; i < n_nodes; i++) {
    ggml_tensor* node = ggml_graph_node(graph, i);
    if (ComputesNothing(node)) continue;
    ggml_backend_t backend = ggml_backend_sched_get_tensor_backend(sched, node);
    // With a single backend the scheduler assigns nothing: everything runs on that one.
    if (backend == nullptr && ggml_backend_sched_get_n_backends(sched) == 1)
      backend = ggml_backend_sched_get_backend(sched, 0);
    census.by_backend[backend != nullptr ? ggml_backend_name(backend) : "unassigned"]++;
    if (backend == nullptr || !IsHostBackend(backend)) continue;
    // The scheduler put this op on the host although it reads weights or KV cache held in GPU
    // memory: the GPU backend could not run it ("missing support"), so every step copies that data
    // to the host and computes there. llama.cpp only warns about this (and only for fused ops).
    const std::string backend_name = ggml_backend_name(backend);
    ggml_backend_dev_t resident = nullptr;
    const ggml_tensor* src = GpuResidentInput(graph, node, backend_name, &resident);
    if (src == nullptr) continue;
    census.cpu_ops_on_gpu_memory++;  // one count per op
    if (census.examples.size() < GraphCensus::kMaxExamples) {
      census.examples.push_back({ggml_op_desc(node), ggml_get_name(node), backend_name,
                                 ggml_get_name(src->view_src != nullptr ? src->view_src : src),
                                 ggml_backend_dev_name(resident)});
    }
  }
  return census;
}

Napi::Object CensusToJs(Napi::Env env, const GraphCensus& census, int splits, int n_nodes) {
  Napi::Array examples = Napi::Array::New(env);
  for (const CpuOpOnGpuMemory& op : census.examples) {
    Napi::Object example = Napi::Object::New(env);
    example.Set("op", op.op);
    example.Set("node", op.node);
    example.Set("backend", op.backend);
    example.Set("tensor", op.tensor);
    example.Set("device", op.device);
    examples.Set(examples.Length(), example);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("splits", splits);
  result.Set("nodes", n_nodes);
  Napi::Object nodes_by_backend = Napi::Object::New(env);
  for (const auto& [name, count] : census.by_backend) nodes_by_backend.Set(name, count);
  result.Set("nodesByBackend", nodes_by_backend);
  Napi::Object cpu_ops = Napi::Object::New(env);
  cpu_ops.Set("count", census.cpu_ops_on_gpu_memory);
  cpu_ops.Set("examples", examples);
  result.Set("cpuOpsOnGpuMemory", cpu_ops);
  return result;
}

}  // namespace

Napi::Value ArchitectureSupported(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "name must be a string");
  return Napi::Boolean::New(env, llm_arch_from_string(info[0].As<Napi::String>()) != LLM_ARCH_UNKNOWN);
}

Napi::Value LayerPlacement(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Model* wrapper = UnwrapTagged<Model>(info[0], kModelTag, "Model");
  const llama_model* model = wrapper->Get(env);
  Napi::Object result = Napi::Object::New(env);
  Napi::Array layers = Napi::Array::New(env);
  const int32_t n_layer = llama_model_n_layer(model);
  for (int32_t il = 0; il < n_layer; il++) layers.Set(static_cast<uint32_t>(il), DeviceName(env, model->dev_layer(il)));
  result.Set("layers", layers);
  result.Set("output", DeviceName(env, model->dev_output()));
  // Where the weights actually are (a buffer's device), as opposed to where compute is assigned.
  result.Set("input", TensorDevice(env, model, "token_embd.weight"));
  Napi::Value output_tensor = TensorDevice(env, model, "output.weight");
  // Tied embeddings: the output projection reuses token_embd. An encoder (BERT) has none at all.
  result.Set("outputTensor", output_tensor.IsNull() ? TensorDevice(env, model, "token_embd.weight") : output_tensor);
  result.Set("hasOutputTensor", model->output != nullptr);
  return result;
}

Napi::Value EmbeddingTraits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Model* wrapper = UnwrapTagged<Model>(info[0], kModelTag, "Model");
  const llama_model* model = wrapper->Get(env);
  Napi::Object result = Napi::Object::New(env);
  result.Set("poolingType", static_cast<int>(model->hparams.pooling_type));
  result.Set("causalAttention", model->hparams.causal_attn);
  result.Set("languageModelHead", model->output != nullptr);
  result.Set("rankingHead", model->cls != nullptr || model->cls_out != nullptr);
  return result;
}

Napi::Value MemoryBreakdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Context* wrapper = UnwrapTagged<Context>(info[0], kContextTag, "Context");
  const llama_context* ctx = wrapper->Get(env);
  Napi::Array result = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& [buft, bytes] : llama_get_memory_breakdown(ctx)) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("bufferType", ggml_backend_buft_name(buft));
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    entry.Set("device", DeviceName(env, dev));
    entry.Set("deviceType", dev != nullptr
                                ? Napi::Value(Napi::String::New(env, DeviceTypeName(ggml_backend_dev_type(dev))))
                                : env.Null());
    entry.Set("isHost", ggml_backend_buft_is_host(buft));
    entry.Set("model", Napi::Number::New(env, static_cast<double>(bytes.model)));
    entry.Set("context", Napi::Number::New(env, static_cast<double>(bytes.context)));
    entry.Set("compute", Napi::Number::New(env, static_cast<double>(bytes.compute)));
    result.Set(i++, entry);
  }
  return result;
}

Napi::Value GraphPlacement(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Context* wrapper = UnwrapTagged<Context>(info[0], kContextTag, "Context");
  llama_context* ctx = wrapper->Get(env);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "nTokens must be a number");
  uint32_t n_tokens = info[1].As<Napi::Number>().Uint32Value();
  // As llama.cpp's own reserve: the graph spans every sequence's KV stream, so the ubatch must too
  // (it rounds n_tokens up to a multiple of n_seqs; one token per sequence is a generation step).
  // Split only: a full reserve (llama_graph_reserve) resets the scheduler at its end, which
  // forgets every op's backend on a multi-backend context (on a GPU host all read "unassigned").
  llama_memory_context_ptr mctx;
  if (llama_memory_t memory = ctx->get_memory()) mctx = memory->init_full();
  ggml_cgraph* graph = ctx->graph_reserve(n_tokens, llama_n_seq_max(ctx), 1, mctx.get(), /*split_only=*/true);
  if (graph == nullptr) throw MakeError(env, code::kContextCreate, "could not build the compute graph");
  ggml_backend_sched_t sched = ctx->get_sched();
  return CensusToJs(env, TakeCensus(graph, sched), ggml_backend_sched_get_n_splits(sched), ggml_graph_n_nodes(graph));
}

namespace {

// parse_space(src, newline_ok = true) of src/llama-grammar.cpp, which is file-local there:
// whitespace, newlines and # comments.
const char* SkipGrammarSpace(const char* pos) {
  while (*pos == ' ' || *pos == '\t' || *pos == '#' || *pos == '\r' || *pos == '\n') {
    if (*pos == '#') {
      while (*pos && *pos != '\r' && *pos != '\n') pos++;
    } else {
      pos++;
    }
  }
  return pos;
}

std::string RuleName(const llama_grammar_parser& parser, uint32_t id) {
  for (const auto& [name, symbol] : parser.symbol_ids) {
    if (symbol == id) return name;
  }
  return "#" + std::to_string(id);
}

// A rule that can start with itself (llama.cpp refuses such a grammar:
// llama_grammar_detect_left_recursion, file-local in src/llama-grammar.cpp), found as llama.cpp
// finds it, so that the verdict is its own: a rule "may be empty" only when one of its
// alternatives is written empty, and a rule reference is leftmost while every reference before it
// in its alternative may be empty. Iterative over the rules, so a long chain costs no stack.
std::optional<uint32_t> LeftRecursiveRule(const llama_grammar_rules& rules) {
  const size_t n = rules.size();
  std::vector<bool> may_be_empty(n, false);
  for (size_t i = 0; i < n; i++) {
    bool at_start = true;
    for (const llama_grammar_element& e : rules[i]) {
      if (e.type == LLAMA_GRETYPE_ALT || e.type == LLAMA_GRETYPE_END) {
        if (at_start) {
          may_be_empty[i] = true;
          break;
        }
        at_start = true;
      } else {
        at_start = false;
      }
    }
  }
  // leftmost[i]: the rules that can come first in rule i (each alternative's leading rule refs,
  // past those that may be empty). A cycle in this graph is left recursion.
  std::vector<std::vector<uint32_t>> leftmost(n);
  for (size_t i = 0; i < n; i++) {
    bool at_start = true;
    for (const llama_grammar_element& e : rules[i]) {
      if (e.type == LLAMA_GRETYPE_ALT || e.type == LLAMA_GRETYPE_END) {
        at_start = true;
        continue;
      }
      if (!at_start) continue;
      if (e.type == LLAMA_GRETYPE_RULE_REF && e.value < n) {
        leftmost[i].push_back(e.value);
        if (!may_be_empty[e.value]) at_start = false;
      } else {
        at_start = false;
      }
    }
  }
  std::vector<uint8_t> state(n, 0);  // 0 unvisited, 1 on the path, 2 done
  for (size_t start = 0; start < n; start++) {
    if (state[start] != 0) continue;
    std::vector<std::pair<uint32_t, size_t>> path{{static_cast<uint32_t>(start), 0}};
    state[start] = 1;
    while (!path.empty()) {
      auto& [rule, next] = path.back();
      if (next < leftmost[rule].size()) {
        const uint32_t child = leftmost[rule][next++];
        if (state[child] == 1) return child;
        if (state[child] == 0) {
          state[child] = 1;
          path.emplace_back(child, 0);
        }
      } else {
        state[rule] = 2;
        path.pop_back();
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::string GrammarProblem(const llama_vocab* vocab, const std::string& text, const std::string& root) {
  llama_grammar_parser parser(vocab);
  try {
    // llama_grammar_parser::parse, without its fprintf to stderr.
    const char* pos = SkipGrammarSpace(text.c_str());
    while (*pos) pos = parser.parse_rule(pos);
    for (size_t i = 0; i < parser.rules.size(); i++) {
      if (parser.rules[i].empty()) return "undefined rule '" + RuleName(parser, static_cast<uint32_t>(i)) + "'";
      for (const llama_grammar_element& e : parser.rules[i]) {
        if (e.type == LLAMA_GRETYPE_RULE_REF && (e.value >= parser.rules.size() || parser.rules[e.value].empty())) {
          return "undefined rule '" + RuleName(parser, e.value) + "'";
        }
      }
    }
  } catch (const std::exception& e) {
    std::string message = e.what();
    // The parser quotes the whole rest of the grammar after "at "; the first line is enough.
    const size_t newline = message.find_first_of("\r\n");
    if (newline != std::string::npos) message = message.substr(0, newline) + " ...";
    if (message.size() > 200) message = message.substr(0, 200) + " ...";
    return message;
  }
  if (parser.rules.empty()) return "the grammar has no rules";
  if (parser.symbol_ids.find(root) == parser.symbol_ids.end()) return "the grammar has no rule named '" + root + "'";
  if (auto rule = LeftRecursiveRule(parser.rules)) {
    return "rule '" + RuleName(parser, *rule) +
           "' is left-recursive (it can start with itself), which llama.cpp refuses";
  }
  return std::string();
}

// --- RPC -------------------------------------------------------------------------------------

namespace {

// The RPC module's functions, by the names ggml_backend_rpc_get_proc_address answers to. The
// typedefs come from ggml-rpc.h, so a changed signature fails to compile here.
using RpcAddServerFn = decltype(&ggml_backend_rpc_add_server);
using RpcStartServerFn = decltype(&ggml_backend_rpc_start_server);

ggml_backend_reg_t RpcReg() { return ggml_backend_reg_by_name("RPC"); }

// ggml's device registry has no lock; registrations from two environments (worker threads) take turns.
std::mutex rpc_register_mutex;

bool Registered(ggml_backend_dev_t dev) {
  for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
    if (ggml_backend_dev_get(i) == dev) return true;
  }
  return false;
}

// --mem of `cuda-llama rpc-server`. ggml's RPC server answers RPC_CMD_GET_DEVICE_MEMORY with
// ggml_backend_dev_memory(ggml_backend_get_device(backend)), and no public API lets a caller
// change what a device reports. So the served device is a copy of the real one (same context, same
// functions) whose memory functions cap the numbers, and whose init_backend points the backend it
// makes back at the copy (the server asks the backend for its device). Only what clients are told
// changes: the fit checks of a client that plans by free memory (llama.cpp's fitter, our plan) stay
// within the cap; the server itself does not refuse an allocation beyond it.
struct CappedDevice {
  ggml_backend_device device;
  ggml_backend_dev_t real;
  uint64_t cap;
};
std::map<ggml_backend_dev_t, CappedDevice*>
    capped_devices;  // wrapper -> its facts; never freed (the server runs until exit)
std::mutex capped_mutex;

CappedDevice* Capped(ggml_backend_dev_t dev) {
  std::lock_guard<std::mutex> lock(capped_mutex);
  auto it = capped_devices.find(dev);
  return it == capped_devices.end() ? nullptr : it->second;
}

void CappedMemory(ggml_backend_dev_t dev, size_t* free, size_t* total) {
  CappedDevice* capped = Capped(dev);
  capped->real->iface.get_memory(capped->real, free, total);
  *free = std::min<uint64_t>(*free, capped->cap);
  *total = std::min<uint64_t>(*total, capped->cap);
}

void CappedProps(ggml_backend_dev_t dev, ggml_backend_dev_props* props) {
  CappedDevice* capped = Capped(dev);
  capped->real->iface.get_props(capped->real, props);
  props->memory_free = std::min<uint64_t>(props->memory_free, capped->cap);
  props->memory_total = std::min<uint64_t>(props->memory_total, capped->cap);
}

ggml_backend_t CappedInit(ggml_backend_dev_t dev, const char* params) {
  CappedDevice* capped = Capped(dev);
  ggml_backend_t backend = capped->real->iface.init_backend(capped->real, params);
  if (backend != nullptr) backend->device = dev;
  return backend;
}

}  // namespace

bool RpcAddServer(const std::string& endpoint, std::vector<std::string>& names, std::string& error) {
  ggml_backend_reg_t rpc = RpcReg();
  if (rpc == nullptr) {
    error = "the RPC backend module (libggml-rpc.so) is not loaded";
    return false;
  }
  auto add_server =
      reinterpret_cast<RpcAddServerFn>(ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_add_server"));
  if (add_server == nullptr) {
    error = "the RPC backend module has no ggml_backend_rpc_add_server";
    return false;
  }
  std::lock_guard<std::mutex> lock(rpc_register_mutex);
  ggml_backend_reg_t reg = add_server(endpoint.c_str());  // cached per endpoint by ggml
  if (reg == nullptr) {
    error = "the rpc-server at " + endpoint + " has no device";
    return false;
  }
  for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); i++) {
    ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, i);
    if (!Registered(dev)) ggml_backend_device_register(dev);
    names.emplace_back(ggml_backend_dev_name(dev));
  }
  return true;
}

bool IsRpcDevice(ggml_backend_dev_t dev) {
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  return reg != nullptr && std::string(ggml_backend_reg_name(reg)) == "RPC";
}

ggml_backend_dev_t RpcServeDevice(const std::string& name, uint64_t memory_cap_bytes, std::string& error) {
  ggml_backend_dev_t dev =
      name.empty() ? ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU) : ggml_backend_dev_by_name(name.c_str());
  if (dev == nullptr || IsRpcDevice(dev)) {
    error = "no device named '" + name + "'";
    return nullptr;
  }
  if (memory_cap_bytes == 0) return dev;
  auto* capped = new CappedDevice{*dev, dev, memory_cap_bytes};
  capped->device.iface.get_memory = CappedMemory;
  capped->device.iface.get_props = CappedProps;
  capped->device.iface.init_backend = CappedInit;
  std::lock_guard<std::mutex> lock(capped_mutex);
  capped_devices[&capped->device] = capped;
  return &capped->device;
}

std::string RpcRunServer(const std::string& endpoint, ggml_backend_dev_t device, const std::string& cache_dir,
                         size_t threads) {
  ggml_backend_reg_t rpc = RpcReg();
  if (rpc == nullptr) return "the RPC backend module (libggml-rpc.so) is not loaded";
  auto start =
      reinterpret_cast<RpcStartServerFn>(ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_start_server"));
  if (start == nullptr) return "the RPC backend module has no ggml_backend_rpc_start_server";
  ggml_backend_dev_t devices[] = {device};
  // Returns only when the socket could not be created or bound, or accept() failed.
  start(endpoint.c_str(), cache_dir.empty() ? nullptr : cache_dir.c_str(), threads, 1, devices);
  return "ggml's RPC server stopped: it could not bind " + endpoint +
         " (in use, or not an address of this machine), or accept() failed";
}

}  // namespace cuda_llama
