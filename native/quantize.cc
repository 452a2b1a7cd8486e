// quantize(input, output, ftype, threads) -> Promise<void>: llama_model_quantize on the libuv pool.
// Used by the synthetic-model generator to make Q8_0/Q4_0 files from our F16 ones.
#include "quantize.h"

#include <string>

#include "common.h"
#include "log.h"
#include "promise_worker.h"

namespace cuda_llama {
namespace {

class QuantizeWorker : public PromiseWorker {
 public:
  QuantizeWorker(Napi::Env env, std::string input, std::string output, int ftype, int threads)
      : PromiseWorker(env, "cuda-llama-quantize", code::kQuantize),
        input_(std::move(input)),
        output_(std::move(output)) {
    params_ = llama_model_quantize_default_params();
    params_.ftype = static_cast<llama_ftype>(ftype);
    params_.nthread = threads;
  }

 protected:
  void Execute() override {
    ClearThreadErrors();
    uint32_t rc = llama_model_quantize(input_.c_str(), output_.c_str(), &params_);
    if (rc != 0) {
      std::string reason = TakeThreadErrors();
      Fail(code::kQuantize,
           "quantizing " + input_ + " to " + output_ + " failed" + (reason.empty() ? "" : ": " + reason),
           static_cast<int>(rc));
    }
  }

  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }

 private:
  std::string input_, output_;
  llama_model_quantize_params params_;
};

}  // namespace

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber()) {
    throw Napi::TypeError::New(env, "quantize(input: string, output: string, ftype: number, threads: number)");
  }
  auto* worker = new QuantizeWorker(env, info[0].As<Napi::String>(), info[1].As<Napi::String>(),
                                    info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace cuda_llama
