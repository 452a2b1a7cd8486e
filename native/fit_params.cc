#include "fit_params.h"

#include <string>
#include <vector>

#include "common.h"
#include "context.h"
#include "fit.h"  // llama.cpp's common library (linked as llama-common): common_fit_params
#include "ggml-backend.h"
#include "promise_worker.h"

namespace cuda_llama {
namespace {

class FitWorker : public PromiseWorker {
 public:
  FitWorker(Napi::Env env, std::string path, std::vector<std::string> devices, llama_context_params cparams,
            size_t margin)
      : PromiseWorker(env, "cuda-llama-fit", code::kModelLoad),
        path_(std::move(path)),
        device_names_(std::move(devices)),
        cparams_(cparams) {
    margins_.assign(llama_max_devices(), margin);
  }

 protected:
  void Execute() override {
    mparams_ = llama_model_default_params();  // the fitter only changes fields still at their defaults
    if (auto missing = DevicesByName(device_names_, devices_)) {
      Fail(code::kCudaUnavailable, *missing);
      return;
    }
    mparams_.devices = devices_.data();
    tensor_split_.assign(llama_max_devices(), 0.0f);
    overrides_.assign(llama_max_tensor_buft_overrides(), llama_model_tensor_buft_override{nullptr, nullptr});
    status_ = common_fit_params(path_.c_str(), &mparams_, &cparams_, tensor_split_.data(), overrides_.data(),
                                margins_.data(), cparams_.n_ctx, nullptr, GGML_LOG_LEVEL_ERROR);
  }

  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    const char* status = status_ == COMMON_PARAMS_FIT_STATUS_SUCCESS   ? "success"
                         : status_ == COMMON_PARAMS_FIT_STATUS_FAILURE ? "failure"
                                                                       : "error";
    result.Set("status", status);
    result.Set("nGpuLayers", mparams_.n_gpu_layers);
    Napi::Array split = Napi::Array::New(env);
    for (size_t i = 0; i + 1 < devices_.size(); i++) split.Set(static_cast<uint32_t>(i), tensor_split_[i]);
    result.Set("tensorSplit", split);
    uint32_t n_overrides = 0;
    while (n_overrides < overrides_.size() && overrides_[n_overrides].pattern != nullptr) n_overrides++;
    result.Set("tensorOverrides", n_overrides);
    return result;
  }

 private:
  std::string path_;
  std::vector<std::string> device_names_;
  std::vector<ggml_backend_dev_t> devices_;
  llama_model_params mparams_{};
  llama_context_params cparams_;
  std::vector<size_t> margins_;
  std::vector<float> tensor_split_;
  std::vector<llama_model_tensor_buft_override> overrides_;
  common_params_fit_status status_ = COMMON_PARAMS_FIT_STATUS_ERROR;
};

}  // namespace

Napi::Value FitParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "fitParams(path, params, marginBytes)");
  }
  Napi::Object options = info[1].As<Napi::Object>();
  std::vector<std::string> devices;
  Napi::Value list = options.Get("devices");
  if (list.IsArray()) {
    Napi::Array array = list.As<Napi::Array>();
    for (uint32_t i = 0; i < array.Length(); i++) devices.push_back(array.Get(i).As<Napi::String>());
  }
  llama_context_params cparams = ContextParamsFromJs(options);
  auto* worker = new FitWorker(env, info[0].As<Napi::String>(), std::move(devices), cparams,
                               static_cast<size_t>(info[2].As<Napi::Number>().DoubleValue()));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace cuda_llama
