#include "context.h"

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "addon.h"
#include "cancel_flag.h"
#include "common.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "log.h"
#include "model.h"
#include "promise_worker.h"
#include "sampler.h"

namespace cuda_llama {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The CPU backend is a runtime-loaded module (GGML_BACKEND_DL), so its threadpool functions are
// reached through the registry rather than linked.
struct ThreadpoolFns {
  decltype(ggml_threadpool_new)* create = nullptr;
  decltype(ggml_threadpool_free)* destroy = nullptr;
};

ThreadpoolFns FindThreadpoolFns() {
  ThreadpoolFns fns;
  ggml_backend_reg_t cpu = ggml_backend_reg_by_name("CPU");
  if (cpu == nullptr) return fns;
  fns.create = reinterpret_cast<decltype(ggml_threadpool_new)*>(ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_new"));
  fns.destroy = reinterpret_cast<decltype(ggml_threadpool_free)*>(ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_free"));
  return fns;
}

class CreateWorker : public PromiseWorker {
 public:
  CreateWorker(Napi::Env env, Napi::Object model_object, llama_model* model, llama_context_params params)
      : PromiseWorker(env, "cuda-llama-context"), model_(model), params_(params) {
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
      if (parts_.threadpool != nullptr) llama_attach_threadpool(parts_.ctx, parts_.threadpool, parts_.threadpool_batch);
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

struct TokenEvent {
  llama_token token;
  std::string piece;
  double at_ms;  // since the generation started, on the context thread's clock
};

// One generation: inputs copied from JS, outputs written on the context thread and read on the
// JS thread only in the thread-safe function's finalizer (after the last token was delivered).
struct GenerateJob {
  explicit GenerateJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}

  std::vector<llama_token> prompt;
  int32_t max_tokens = 0;
  llama_sampler* sampler = nullptr;
  std::shared_ptr<std::atomic<bool>> cancel;
  Napi::ThreadSafeFunction on_token;

  // Tokens waiting for the JS thread. The context thread wakes JS only when no drain is already
  // pending: every wake-up of the JS thread competes with the compute threads for the cores, so
  // a JS thread that falls behind takes several tokens per wake-up instead of one each.
  std::mutex pending_mutex;
  std::vector<TokenEvent> pending;  // guarded by pending_mutex
  bool drain_scheduled = false;     // guarded by pending_mutex

  int32_t generated = 0;
  double prompt_ms = 0, first_token_ms = 0, generation_ms = 0;
  const char* stop_reason = "";
  const char* error_code = nullptr;
  std::string error_message;
  std::optional<int> status;

  Napi::Promise::Deferred deferred;
  Napi::ObjectReference context_ref, sampler_ref;  // alive until the promise settles
};

// JS thread: hands every pending token to the JS callback, in order.
void DrainTokens(Napi::Env env, Napi::Function fn, GenerateJob* job) {
  std::vector<TokenEvent> events;
  {
    std::lock_guard<std::mutex> lock(job->pending_mutex);
    events.swap(job->pending);
    job->drain_scheduled = false;
  }
  if (env == nullptr || fn == nullptr) return;
  for (const TokenEvent& event : events) {
    // lib/ wraps the user's callback; a throw here would be our bug, not a user's.
    fn.Call({Napi::Number::New(env, event.token), Napi::Buffer<char>::Copy(env, event.piece.data(), event.piece.size()),
             Napi::Number::New(env, event.at_ms)});
  }
}

// Context thread: queues a token and wakes the JS thread unless a drain is already on its way.
void EmitToken(GenerateJob* job, llama_token token, std::string piece, double at_ms) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(job->pending_mutex);
    job->pending.push_back(TokenEvent{token, std::move(piece), at_ms});
    if (!job->drain_scheduled) {
      job->drain_scheduled = true;
      wake = true;
    }
  }
  if (wake) job->on_token.BlockingCall(job, DrainTokens);
}

// Runs on the context thread. No N-API here except the thread-safe function.
void RunGeneration(llama_context* ctx, GenerateJob* job) {
  const auto start = Clock::now();
  const llama_vocab* vocab = llama_model_get_vocab(llama_get_model(ctx));
  const int32_t n_ctx = static_cast<int32_t>(llama_n_ctx(ctx));
  const int32_t n_batch = static_cast<int32_t>(llama_n_batch(ctx));
  const int32_t n_prompt = static_cast<int32_t>(job->prompt.size());
  auto cancelled = [&] { return job->cancel->load(); };

  // Each generation starts from an empty KV cache: same prompt, same result. The cells are reset;
  // zeroing the buffer too (data = true) would cost milliseconds per call for nothing.
  llama_memory_clear(llama_get_memory(ctx), false);
  llama_sampler_reset(job->sampler);

  for (int32_t i = 0; i < n_prompt; i += n_batch) {
    if (cancelled()) {
      job->stop_reason = "aborted";
      return;
    }
    const int32_t n = std::min(n_batch, n_prompt - i);
    int32_t rc = llama_decode(ctx, llama_batch_get_one(job->prompt.data() + i, n));
    if (rc != 0) {
      if (rc == 2 && cancelled()) {
        job->stop_reason = "aborted";
      } else {
        job->error_code = code::kDecode;
        job->error_message = "llama_decode failed on the prompt (tokens " + std::to_string(i) + ".." +
                             std::to_string(i + n) + " of " + std::to_string(n_prompt) + ")";
        job->status = rc;
      }
      return;
    }
  }
  job->prompt_ms = MsSince(start);

  const auto generation_start = Clock::now();
  int32_t n_past = n_prompt;
  while (true) {
    if (cancelled()) {
      job->stop_reason = "aborted";
      break;
    }
    llama_token token = llama_sampler_sample(job->sampler, ctx, -1);
    if (llama_vocab_is_eog(vocab, token)) {
      job->stop_reason = "eog";
      break;
    }
    const double at_ms = MsSince(start);
    if (job->generated == 0) job->first_token_ms = at_ms;
    EmitToken(job, token, TokenPiece(vocab, token, false), at_ms);
    job->generated++;
    if (job->generated >= job->max_tokens) {
      job->stop_reason = "maxTokens";
      break;
    }
    if (n_past >= n_ctx) {
      job->stop_reason = "contextFull";
      break;
    }
    int32_t rc = llama_decode(ctx, llama_batch_get_one(&token, 1));
    if (rc != 0) {
      if (rc == 2 && cancelled()) {
        job->stop_reason = "aborted";
      } else if (rc == 1) {
        job->stop_reason = "contextFull";  // no KV slot left for the next token
      } else {
        job->error_code = code::kDecode;
        job->error_message = "llama_decode failed after " + std::to_string(job->generated) + " generated tokens";
        job->status = rc;
      }
      break;
    }
    n_past++;
  }
  job->generation_ms = MsSince(generation_start);
}

void SettleGeneration(Napi::Env env, GenerateJob* job) {
  std::unique_ptr<GenerateJob> owned(job);
  if (env == nullptr) return;  // env teardown: nobody is waiting any more
  try {
    if (job->error_code != nullptr) {
      job->deferred.Reject(MakeError(env, job->error_code, job->error_message, job->status).Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("promptTokens", Napi::Number::New(env, static_cast<double>(job->prompt.size())));
    result.Set("generatedTokens", job->generated);
    result.Set("promptMs", job->prompt_ms);
    result.Set("firstTokenMs", job->first_token_ms);
    result.Set("generationMs", job->generation_ms);
    result.Set("stopReason", job->stop_reason);
    job->deferred.Resolve(result);
  } catch (const Napi::Error& error) {
    job->deferred.Reject(error.Value());
  }
}

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
  thread_ = std::make_unique<ContextThread>();
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
  result.Set("contextSize", llama_n_ctx(ctx));
  result.Set("batchSize", llama_n_batch(ctx));
  result.Set("ubatchSize", llama_n_ubatch(ctx));
  result.Set("sequences", llama_n_seq_max(ctx));
  result.Set("threads", llama_n_threads(ctx));
  result.Set("threadsBatch", llama_n_threads_batch(ctx));
  result.Set("threadpool", parts_.threadpool != nullptr);
  return result;
}

Napi::Value Context::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = Get(env);
  if (info.Length() < 5 || !info[0].IsTypedArray() || !info[2].IsNumber() || !info[4].IsFunction()) {
    throw Napi::TypeError::New(env, "generate(promptTokens: Int32Array, sampler, maxTokens, cancelFlag, onToken)");
  }
  Sampler* sampler = UnwrapTagged<Sampler>(info[1], kSamplerTag, "Sampler");
  CancelFlag* cancel = UnwrapTagged<CancelFlag>(info[3], kCancelFlagTag, "CancelFlag");
  if (sampler->get() == nullptr) throw MakeError(env, code::kDisposed, "sampler has been disposed");
  Napi::Int32Array prompt = info[0].As<Napi::Int32Array>();
  if (prompt.ElementLength() == 0) throw Napi::RangeError::New(env, "prompt has no tokens");
  if (prompt.ElementLength() >= llama_n_ctx(ctx)) {
    throw MakeError(env, code::kContextFull, "prompt of " + std::to_string(prompt.ElementLength()) +
                                                 " tokens does not fit a context of " + std::to_string(llama_n_ctx(ctx)));
  }

  auto job = std::make_unique<GenerateJob>(env);
  job->prompt.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
  job->max_tokens = info[2].As<Napi::Number>().Int32Value();
  job->sampler = sampler->get();
  job->cancel = cancel->flag();
  job->context_ref = Napi::Persistent(info.This().As<Napi::Object>());
  job->sampler_ref = Napi::Persistent(info[1].As<Napi::Object>());
  Napi::Promise promise = job->deferred.Promise();
  GenerateJob* raw_job = job.get();
  job->on_token = Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "cuda-llama-generate", 0, 1,
                                                raw_job, [](Napi::Env finalize_env, GenerateJob* done) {
                                                  SettleGeneration(finalize_env, done);
                                                });
  job.release();  // owned by the thread-safe function's finalizer from here on

  running_cancel_ = raw_job->cancel;
  bool posted = thread_->Post(
      [this, ctx, raw_job] {
        abort_flag_.store(raw_job->cancel.get());
        RunGeneration(ctx, raw_job);
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
