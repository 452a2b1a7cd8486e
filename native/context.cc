#include "context.h"

#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "cancel_flag.h"
#include "common.h"
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
        parts_.host_backend = CreateHostBackend(fns, step_pool, llama_n_threads_batch(parts_.ctx));
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
  engine_ = Engine::Create(env, parts_.ctx, parts_.host_backend, parts_.park_budget);
  llama_set_abort_callback(parts_.ctx, &Engine::AbortCallback, engine_);
  thread_ = std::make_unique<ContextThread>(env.GetInstanceData<Addon>()->log_sink);
  Engine* engine = engine_;
  thread_->Post([engine] { engine->Run(); }, nullptr);
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
  std::unique_ptr<GenerationRequest> request = RequestFromJs(info, ctx);
  request->context_ref = Napi::Persistent(info.This().As<Napi::Object>());
  Napi::Promise promise = request->deferred.Promise();
  engine_->Submit(env, std::move(request));
  return promise;
}

Napi::Value Context::EndSession(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "endSession(id: number)");
  engine_->EndSession(info[0].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

Napi::Value Context::ForkSession(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "forkSession(parent: number, child: number)");
  }
  engine_->ForkSession(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

Napi::Value Context::EngineStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Get(env);
  const cuda_llama::EngineStats stats = engine_->Stats();
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

Napi::Value Context::Dispose(const Napi::CallbackInfo& info) {
  Free();
  return info.Env().Undefined();
}

Napi::Value Context::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), parts_.ctx == nullptr);
}

}  // namespace cuda_llama
