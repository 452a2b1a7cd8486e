#include "context.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "cancel_flag.h"
#include "common.h"
#include "embedding.h"
#include "engine.h"
#include "generation.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "log.h"
#include "model.h"
#include "promise_worker.h"
#include "sampler.h"

namespace cuda_llama {
namespace {

// The CPU backend is a runtime-loaded module (GGML_BACKEND_DL), so its threadpool functions are
// reached through the registry rather than linked.
struct ThreadpoolFns {
  decltype(ggml_threadpool_new)* create = nullptr;
  decltype(ggml_threadpool_free)* destroy = nullptr;
  decltype(ggml_backend_cpu_set_threadpool)* set_threadpool = nullptr;
  decltype(ggml_backend_cpu_set_n_threads)* set_n_threads = nullptr;
};

ThreadpoolFns FindThreadpoolFns() {
  ThreadpoolFns fns;
  ggml_backend_reg_t cpu = ggml_backend_reg_by_name("CPU");
  if (cpu == nullptr) return fns;
  fns.create =
      reinterpret_cast<decltype(ggml_threadpool_new)*>(ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_new"));
  fns.destroy =
      reinterpret_cast<decltype(ggml_threadpool_free)*>(ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_free"));
  fns.set_threadpool = reinterpret_cast<decltype(ggml_backend_cpu_set_threadpool)*>(
      ggml_backend_reg_get_proc_address(cpu, "ggml_backend_cpu_set_threadpool"));
  fns.set_n_threads = reinterpret_cast<decltype(ggml_backend_cpu_set_n_threads)*>(
      ggml_backend_reg_get_proc_address(cpu, "ggml_backend_set_n_threads"));
  return fns;
}

// ContextParts::host_backend: a CPU backend that computes on `threadpool` with all its threads, or
// null where it would not help (one thread) or the CPU module lacks a function for it; then the
// rows are done on the context thread.
ggml_backend_t CreateHostBackend(const ThreadpoolFns& fns, ggml_threadpool* threadpool, int32_t n_threads) {
  if (n_threads < 2) return nullptr;
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (cpu == nullptr || fns.set_threadpool == nullptr || fns.set_n_threads == nullptr) return nullptr;
  ggml_backend_t backend = ggml_backend_dev_init(cpu, nullptr);
  if (backend == nullptr) return nullptr;
  fns.set_threadpool(backend, threadpool);
  fns.set_n_threads(backend, n_threads);
  return backend;
}

class CreateWorker : public PromiseWorker {
 public:
  CreateWorker(Napi::Env env, Napi::Object model_object, llama_model* model, llama_context_params params,
               size_t park_budget)
      : PromiseWorker(env, "cuda-llama-context", code::kContextCreate), model_(model), params_(params) {
    model_ref_ = Napi::Persistent(model_object);
    parts_.park_budget = park_budget;
    parts_.embeddings = params.embeddings;
  }
  ~CreateWorker() override { parts_.Free(); }

 protected:
  void Execute() override {
    ClearThreadErrors();
    parts_.ctx = llama_init_from_model(model_, params_);
    if (parts_.ctx == nullptr) {
      std::string reason = TakeThreadErrors();
      Fail(code::kContextCreate, "llama.cpp could not create a context (n_ctx " + std::to_string(params_.n_ctx) +
                                     ", n_batch " + std::to_string(params_.n_batch) + ")" +
                                     (reason.empty() ? "" : ": " + reason));
      return;
    }
    ThreadpoolFns fns = FindThreadpoolFns();
    if (fns.create != nullptr && fns.destroy != nullptr) {
      parts_.threadpool_free = fns.destroy;
      ggml_threadpool_params tpp = ggml_threadpool_params_default(llama_n_threads(parts_.ctx));
      parts_.threadpool = fns.create(&tpp);
      if (llama_n_threads_batch(parts_.ctx) != llama_n_threads(parts_.ctx)) {
        ggml_threadpool_params tpp_batch = ggml_threadpool_params_default(llama_n_threads_batch(parts_.ctx));
        parts_.threadpool_batch = fns.create(&tpp_batch);
      }
      if (parts_.threadpool != nullptr) {
        llama_attach_threadpool(parts_.ctx, parts_.threadpool, parts_.threadpool_batch);
        // A step of several sequences is a batch, which llama.cpp computes on the batch pool (the
        // generation pool when there is one only): that pool's threads are the ones just awake.
        ggml_threadpool* step_pool = parts_.threadpool_batch != nullptr ? parts_.threadpool_batch : parts_.threadpool;
        // The host backend serves the engine's argmax; an embeddings context has no engine.
        if (!params_.embeddings) {
          parts_.host_backend = CreateHostBackend(fns, step_pool, llama_n_threads_batch(parts_.ctx));
        }
      }
    }
  }

  Napi::Value Resolve(Napi::Env env) override {
    Addon* addon = env.GetInstanceData<Addon>();
    auto* parts = new ContextParts(parts_);
    parts_ = ContextParts{};
    return addon->context_constructor.New({Napi::External<ContextParts>::New(env, parts), model_ref_.Value()});
  }

 private:
  Napi::ObjectReference model_ref_;
  llama_model* model_;
  llama_context_params params_;
  ContextParts parts_;
};

}  // namespace

llama_context_params ContextParamsFromJs(Napi::Object options) {
  // llama.cpp's defaults, overridden only where lib/ passed a value.
  llama_context_params params = llama_context_default_params();
  if (auto v = OptionalNumber(options, "nCtx")) params.n_ctx = static_cast<uint32_t>(*v);
  if (auto v = OptionalNumber(options, "nBatch")) params.n_batch = static_cast<uint32_t>(*v);
  if (auto v = OptionalNumber(options, "nUbatch")) params.n_ubatch = static_cast<uint32_t>(*v);
  if (auto v = OptionalNumber(options, "nSeqMax")) params.n_seq_max = static_cast<uint32_t>(*v);
  if (auto v = OptionalNumber(options, "nThreads")) params.n_threads = static_cast<int32_t>(*v);
  if (auto v = OptionalNumber(options, "nThreadsBatch")) params.n_threads_batch = static_cast<int32_t>(*v);
  if (auto v = OptionalNumber(options, "flashAttnType"))
    params.flash_attn_type = static_cast<llama_flash_attn_type>(*v);
  if (auto v = OptionalNumber(options, "typeK")) params.type_k = static_cast<ggml_type>(*v);
  if (auto v = OptionalNumber(options, "typeV")) params.type_v = static_cast<ggml_type>(*v);
  if (auto v = OptionalBool(options, "offloadKqv")) params.offload_kqv = *v;
  if (auto v = OptionalBool(options, "opOffload")) params.op_offload = *v;
  if (auto v = OptionalBool(options, "kvUnified")) params.kv_unified = *v;
  if (auto v = OptionalBool(options, "embeddings")) params.embeddings = *v;
  if (auto v = OptionalNumber(options, "poolingType")) params.pooling_type = static_cast<enum llama_pooling_type>(*v);
  return params;
}

void ContextParts::Free() {
  if (host_backend != nullptr) {
    ggml_backend_free(host_backend);  // does not touch the threadpool, which is freed below
    host_backend = nullptr;
  }
  if (ctx != nullptr) {
    llama_free(ctx);
    ctx = nullptr;
  }
  if (threadpool_free != nullptr) {
    if (threadpool != nullptr) threadpool_free(threadpool);
    if (threadpool_batch != nullptr) threadpool_free(threadpool_batch);
  }
  threadpool = threadpool_batch = nullptr;
}

Napi::Function Context::Define(Napi::Env env) {
  return DefineClass(
      env, "Context",
      {StaticMethod<&Context::Create>("create"), InstanceMethod<&Context::Info>("info"),
       InstanceMethod<&Context::Submit>("submit"), InstanceMethod<&Context::EndSession>("endSession"),
       InstanceMethod<&Context::ForkSession>("forkSession"), InstanceMethod<&Context::EngineStats>("engineStats"),
       InstanceMethod<&Context::InjectDecodeFault>("injectDecodeFault"), InstanceMethod<&Context::Embed>("embed"),
       InstanceMethod<&Context::Dispose>("dispose"), InstanceAccessor<&Context::IsDisposed>("disposed")});
}

Context::Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsExternal() || !HasTag(info[1], kModelTag)) {
    throw Napi::TypeError::New(env, "Context cannot be constructed directly; use Llama.load()");
  }
  std::unique_ptr<ContextParts> parts(info[0].As<Napi::External<ContextParts>>().Data());
  parts_ = *parts;
  owner_ = Model::Unwrap(info[1].As<Napi::Object>());
  owner_ref_ = Napi::Persistent(info[1].As<Napi::Object>());
  owner_->AddContext(this);
  thread_ = std::make_unique<ContextThread>(env.GetInstanceData<Addon>()->log_sink);
  if (parts_.embeddings) {
    // An embeddings context runs embed jobs on its thread, one at a time; no engine, no generation.
    llama_set_abort_callback(parts_.ctx, &Context::EmbedAbortCallback, &stop_embedding_);
  } else {
    engine_ = Engine::Create(env, parts_.ctx, parts_.host_backend, parts_.park_budget);
    llama_set_abort_callback(parts_.ctx, &Engine::AbortCallback, engine_);
    Engine* engine = engine_;
    thread_->Post([engine] { engine->Run(); }, nullptr);
  }
  TagObject(info.This().As<Napi::Object>(), kContextTag);
}

Context::~Context() { Free(); }

void Context::Free() {
  if (engine_ != nullptr) {
    engine_->Stop();
    thread_.reset();  // waits for Run() to finish every request
    engine_->Release();
    engine_ = nullptr;
  }
  stop_embedding_.store(true);
  thread_.reset();  // an embed job in flight stops at its next decode (or inside it, on the CPU)
  parts_.Free();
  if (owner_ != nullptr) {
    owner_->RemoveContext(this);
    owner_ = nullptr;
  }
}

llama_context* Context::Get(Napi::Env env) const {
  if (parts_.ctx == nullptr) throw MakeError(env, code::kDisposed, "context has been disposed");
  return parts_.ctx;
}

Napi::Value Context::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Model* model = UnwrapTagged<Model>(info[0], kModelTag, "Model");
  llama_model* raw_model = model->Get(env);
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "params must be an object");
  Napi::Object options = info[1].As<Napi::Object>();

  llama_context_params params = ContextParamsFromJs(options);
  params.no_perf = true;  // we time generations ourselves

  // Not a llama_context_params field: the engine's own.
  size_t park_budget = 0;
  if (auto v = OptionalNumber(options, "parkedSessionBytes")) park_budget = static_cast<size_t>(*v);
  auto* worker = new CreateWorker(env, info[0].As<Napi::Object>(), raw_model, params, park_budget);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Context::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = Get(env);
  Napi::Object result = Napi::Object::New(env);
  result.Set("contextSize", llama_n_ctx_seq(ctx));
  result.Set("totalContextSize", llama_n_ctx(ctx));
  result.Set("batchSize", llama_n_batch(ctx));
  result.Set("ubatchSize", llama_n_ubatch(ctx));
  result.Set("sequences", llama_n_seq_max(ctx));
  result.Set("threads", llama_n_threads(ctx));
  result.Set("threadsBatch", llama_n_threads_batch(ctx));
  result.Set("threadpool", parts_.threadpool != nullptr);
  result.Set("threadpoolArgmax", parts_.host_backend != nullptr);
  return result;
}

Napi::Value Context::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = Get(env);
  RequireEngine(env);
  std::unique_ptr<GenerationRequest> request = RequestFromJs(info, ctx);
  request->context_ref = Napi::Persistent(info.This().As<Napi::Object>());
  Napi::Promise promise = request->deferred.Promise();
  engine_->Submit(env, std::move(request));
  return promise;
}

Napi::Value Context::EndSession(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  RequireEngine(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "endSession(id: number)");
  engine_->EndSession(info[0].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

Napi::Value Context::ForkSession(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  RequireEngine(env);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "forkSession(parent: number, child: number)");
  }
  engine_->ForkSession(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

Napi::Value Context::EngineStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  const cuda_llama::EngineStats stats = engine_ != nullptr ? engine_->Stats() : cuda_llama::EngineStats{};
  Napi::Object result = Napi::Object::New(env);
  result.Set("usedCells", static_cast<double>(stats.used_cells));
  result.Set("totalCells", static_cast<double>(stats.total_cells));
  result.Set("parkedSessions", static_cast<double>(stats.parked_sessions));
  result.Set("parkedBytes", static_cast<double>(stats.parked_bytes));
  result.Set("steps", static_cast<double>(stats.steps));
  result.Set("decodeMs", stats.decode_ms);
  result.Set("hostMs", stats.host_ms);
  return result;
}

Napi::Value Context::InjectDecodeFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  RequireEngine(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "injectDecodeFault(rc: number)");
  const int32_t rc = info[0].As<Napi::Number>().Int32Value();
  if (rc == 0) throw Napi::RangeError::New(env, "injectDecodeFault: rc must not be 0 (success)");
  engine_->InjectDecodeFault(rc);
  return env.Undefined();
}

void Context::RequireEngine(Napi::Env env) const {
  if (engine_ == nullptr) {
    throw MakeError(env, code::kEmbeddingsOnly, "this is an embeddings context: it embeds, it does not generate");
  }
}

bool Context::EmbedAbortCallback(void* stop) { return static_cast<std::atomic<bool>*>(stop)->load(); }

namespace {

// One embed() call between the JS thread and the context thread: the job, and the promise its
// outcome settles (on the JS thread, through the thread-safe function).
struct EmbedCall {
  EmbedJob job;
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference context_ref;  // keeps the Context alive while its thread runs the job
  explicit EmbedCall(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void SettleEmbedCall(Napi::Env env, Napi::Function, EmbedCall* call) {
  std::unique_ptr<EmbedCall> owned(call);
  if (env == nullptr) return;  // the environment is going away
  EmbedJob& job = call->job;
  if (!job.error.empty()) {
    call->deferred.Reject(
        MakeError(env, job.error_code, job.error, job.status != 0 ? std::optional<int>(job.status) : std::nullopt)
            .Value());
    return;
  }
  Napi::Float32Array vectors = Napi::Float32Array::New(env, job.vectors.size());
  if (!job.vectors.empty()) std::memcpy(vectors.Data(), job.vectors.data(), job.vectors.size() * sizeof(float));
  Napi::Object result = Napi::Object::New(env);
  result.Set("vectors", vectors);
  result.Set("width", job.width);
  result.Set("decodes", job.decodes);
  call->deferred.Resolve(result);
}

}  // namespace

Napi::Value Context::Embed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = Get(env);
  if (!parts_.embeddings) {
    throw MakeError(env, code::kEmbeddingsOnly, "this context generates; embed() needs an embeddings context");
  }
  if (info.Length() < 2 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    throw Napi::TypeError::New(env, "embed(tokens: Int32Array, lengths: Uint32Array)");
  }
  Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
  Napi::Uint32Array lengths = info[1].As<Napi::Uint32Array>();
  auto call = std::make_unique<EmbedCall>(env);
  call->job.tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
  call->job.lengths.assign(lengths.Data(), lengths.Data() + lengths.ElementLength());
  uint64_t total = 0;
  for (uint32_t n : call->job.lengths) {
    if (n == 0) throw Napi::RangeError::New(env, "every text needs at least one token");
    total += n;
  }
  if (total != call->job.tokens.size()) throw Napi::RangeError::New(env, "lengths must add up to tokens.length");
  call->job.stop = &stop_embedding_;
  call->context_ref = Napi::Persistent(info.This().As<Napi::Object>());
  Napi::Promise promise = call->deferred.Promise();
  auto tsfn = std::make_shared<Napi::ThreadSafeFunction>(Napi::ThreadSafeFunction::New(
      env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "cuda-llama-embed", 0, 1));
  EmbedCall* raw = call.get();
  const bool posted = thread_->Post([ctx, raw] { RunEmbedJob(ctx, raw->job); },
                                    [tsfn, raw] {
                                      tsfn->BlockingCall(raw, SettleEmbedCall);
                                      tsfn->Release();
                                    });
  if (!posted) {
    tsfn->Release();
    throw MakeError(env, code::kBusy, "an embed() call is already running on this context");
  }
  call.release();  // SettleEmbedCall owns it now
  return promise;
}

Napi::Value Context::Dispose(const Napi::CallbackInfo& info) {
  Free();
  return info.Env().Undefined();
}

Napi::Value Context::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), parts_.ctx == nullptr);
}

}  // namespace cuda_llama
