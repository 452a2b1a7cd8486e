#include "context.h"

#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "cancel_flag.h"
#include "common.h"
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
  fns.create = reinterpret_cast<decltype(ggml_threadpool_new)*>(ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_new"));
  fns.destroy = reinterpret_cast<decltype(ggml_threadpool_free)*>(ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_free"));
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
  CreateWorker(Napi::Env env, Napi::Object model_object, llama_model* model, llama_context_params params)
      : PromiseWorker(env, "cuda-llama-context", code::kContextCreate), model_(model), params_(params) {
    model_ref_ = Napi::Persistent(model_object);
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
  if (auto v = OptionalNumber(options, "flashAttnType")) params.flash_attn_type = static_cast<llama_flash_attn_type>(*v);
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
  return DefineClass(env, "Context",
                     {StaticMethod<&Context::Create>("create"),
                      InstanceMethod<&Context::Info>("info"),
                      InstanceMethod<&Context::Generate>("generate"),
                      InstanceMethod<&Context::Dispose>("dispose"),
                      InstanceAccessor<&Context::IsDisposed>("disposed")});
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
  llama_set_abort_callback(parts_.ctx, &Context::AbortCallback, this);
  thread_ = std::make_unique<ContextThread>(env.GetInstanceData<Addon>()->log_sink);
  TagObject(info.This().As<Napi::Object>(), kContextTag);
}

Context::~Context() { Free(); }

void Context::Free() {
  if (running_cancel_) running_cancel_->store(true);
  thread_.reset();  // waits for a cancelled job to return
  running_cancel_.reset();
  parts_.Free();
  if (owner_ != nullptr) {
    owner_->RemoveContext(this);
    owner_ = nullptr;
  }
}

bool Context::AbortCallback(void* self) {
  std::atomic<bool>* flag = static_cast<Context*>(self)->abort_flag_.load();
  return flag != nullptr && flag->load();
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

  auto* worker = new CreateWorker(env, info[0].As<Napi::Object>(), raw_model, params);
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

namespace {

// generate()'s per-sequence argument arrays, one entry per sequence (JS thread).
struct SequenceArgs {
  Napi::Array prompts;
  Napi::Array samplers;
  Napi::Int32Array max_tokens;
  Napi::Array cancels;
};

// Copies sequence i's prompt, sampler, limit and stop flag into job->sequences[i], keeping its
// Sampler alive through job->sampler_refs. Throws for a bad argument, before anything is posted.
void ReadSequence(Napi::Env env, llama_context* ctx, const SequenceArgs& args, uint32_t i, GenerationJob* job) {
  GenerationSequence& seq = job->sequences[i];
  Napi::Value prompt_value = args.prompts.Get(i);
  if (!prompt_value.IsTypedArray() || prompt_value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "prompts[" + std::to_string(i) + "] must be an Int32Array");
  }
  Napi::Int32Array prompt = prompt_value.As<Napi::Int32Array>();
  if (prompt.ElementLength() == 0) throw Napi::RangeError::New(env, "prompts[" + std::to_string(i) + "] has no tokens");
  if (prompt.ElementLength() >= llama_n_ctx_seq(ctx)) {
    throw MakeError(env, code::kContextFull, "prompt of " + std::to_string(prompt.ElementLength()) +
                                                 " tokens does not fit a context of " + std::to_string(llama_n_ctx_seq(ctx)));
  }
  seq.prompt.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
  Sampler* sampler = UnwrapTagged<Sampler>(args.samplers.Get(i), kSamplerTag, "Sampler");
  if (sampler->get() == nullptr) throw MakeError(env, code::kDisposed, "sampler has been disposed");
  for (const GenerationSequence& other : job->sequences) {
    if (&other != &seq && other.sampler == sampler->get()) throw Napi::TypeError::New(env, "each sequence needs its own Sampler");
  }
  seq.sampler = sampler->get();
  seq.argmax_only = sampler->argmax_only();
  seq.cancel = UnwrapTagged<CancelFlag>(args.cancels.Get(i), kCancelFlagTag, "CancelFlag")->flag();
  seq.max_tokens = args.max_tokens[i];
  job->sampler_refs.push_back(Napi::Persistent(args.samplers.Get(i).As<Napi::Object>()));
}

// generate()'s arguments copied into a job (JS thread), or a thrown TypeError / RangeError /
// ERR_CONTEXT_FULL / ERR_DISPOSED; the job has no thread-safe function yet.
std::unique_ptr<GenerationJob> JobFromJs(const Napi::CallbackInfo& info, llama_context* ctx) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsTypedArray() || !info[4].IsArray() ||
      !info[5].IsFunction() || !info[6].IsBoolean()) {
    throw Napi::TypeError::New(env, "generate(prompts: Int32Array[], samplers: Sampler[], maxTokens: Int32Array, cancel, "
                                    "sequenceCancels: CancelFlag[], onToken, everyToken: boolean)");
  }
  const SequenceArgs args{info[0].As<Napi::Array>(), info[1].As<Napi::Array>(), info[2].As<Napi::Int32Array>(),
                          info[4].As<Napi::Array>()};
  const uint32_t n = args.prompts.Length();
  if (n == 0 || args.samplers.Length() != n || args.max_tokens.ElementLength() != n || args.cancels.Length() != n) {
    throw Napi::TypeError::New(env, "generate: prompts, samplers, maxTokens and sequenceCancels need one entry per sequence");
  }
  if (n > llama_n_seq_max(ctx) || n > llama_n_batch(ctx)) {
    throw Napi::RangeError::New(env, std::to_string(n) + " sequences do not fit this context (n_seq_max " +
                                         std::to_string(llama_n_seq_max(ctx)) + ", n_batch " + std::to_string(llama_n_batch(ctx)) + ")");
  }
  CancelFlag* cancel = UnwrapTagged<CancelFlag>(info[3], kCancelFlagTag, "CancelFlag");

  auto job = std::make_unique<GenerationJob>(env);
  job->cancel = cancel->flag();
  job->every_token = info[6].As<Napi::Boolean>().Value();
  job->sequences.resize(n);
  for (uint32_t i = 0; i < n; i++) ReadSequence(env, ctx, args, i, job.get());
  return job;
}

}  // namespace

Napi::Value Context::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = Get(env);
  std::unique_ptr<GenerationJob> job = JobFromJs(info, ctx);
  job->context_ref = Napi::Persistent(info.This().As<Napi::Object>());
  Napi::Promise promise = job->deferred.Promise();
  GenerationJob* raw_job = job.get();
  job->on_token = Napi::ThreadSafeFunction::New(env, info[5].As<Napi::Function>(), "cuda-llama-generate", 0, 1,
                                                raw_job, [](Napi::Env finalize_env, GenerationJob* done) {
                                                  SettleGeneration(finalize_env, done);
                                                });
  job.release();  // owned by the thread-safe function's finalizer from here on

  running_cancel_ = raw_job->cancel;
  bool posted = thread_->Post(
      [this, ctx, raw_job] {
        abort_flag_.store(raw_job->cancel.get());
        RunGeneration(ctx, parts_.host_backend, raw_job);
        abort_flag_.store(nullptr);
      },
      // The finalizer settles the promise on the JS thread, once the context is idle again.
      [raw_job] { raw_job->on_token.Release(); });
  if (!posted) {
    raw_job->error_code = code::kBusy;
    raw_job->error_message = "another generation is running on this context";
    raw_job->on_token.Release();
  }
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
