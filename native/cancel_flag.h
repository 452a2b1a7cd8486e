// A cancellation flag shared between the JS thread (which sets it, from an AbortSignal or a stop
// sequence) and a worker thread (which polls it). lib/ creates one per operation.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

namespace cuda_llama {

class CancelFlag : public Napi::ObjectWrap<CancelFlag> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit CancelFlag(const Napi::CallbackInfo& info);

  // Shared so that a worker still holding it after the JS object is collected stays valid.
  std::shared_ptr<std::atomic<bool>> flag() const { return flag_; }

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value IsCancelled(const Napi::CallbackInfo& info);

  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace cuda_llama
