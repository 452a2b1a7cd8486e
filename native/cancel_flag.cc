#include "cancel_flag.h"

#include "common.h"

namespace cuda_llama {

Napi::Function CancelFlag::Define(Napi::Env env) {
  return DefineClass(
      env, "CancelFlag",
      {InstanceMethod<&CancelFlag::Cancel>("cancel"), InstanceAccessor<&CancelFlag::IsCancelled>("cancelled")});
}

CancelFlag::CancelFlag(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelFlag>(info) {
  TagObject(info.This().As<Napi::Object>(), kCancelFlagTag);
}

Napi::Value CancelFlag::Cancel(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value CancelFlag::IsCancelled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), flag_->load());
}

}  // namespace cuda_llama
