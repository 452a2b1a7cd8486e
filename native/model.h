// Model: owns one llama_model. Loading is a PromiseWorker (disk, maybe GPU); vocabulary and
// metadata queries are cheap and synchronous. A Model frees its Contexts before itself.
#pragma once

#include <napi.h>

#include <memory>
#include <set>

#include "llama.h"

namespace cuda_llama {

class Context;

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Not for users: lib/ calls Model.load(). info[0] is an External<llama_model> adopted here.
  explicit Model(const Napi::CallbackInfo& info);
  ~Model() override;

  // The model, or a thrown ERR_DISPOSED (JS thread).
  llama_model* Get(Napi::Env env) const;
  llama_model* raw() const { return model_; }

  // Contexts register so that freeing the model frees them first (JS thread).
  void AddContext(Context* context) { contexts_.insert(context); }
  void RemoveContext(Context* context) { contexts_.erase(context); }

  // Frees the contexts, then the model. Idempotent. Also called at env teardown.
  void Free();

 private:
  // JS: Model.load(path, params, onProgress | undefined, cancelFlag | undefined) -> Promise<Model>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Detokenize(const Napi::CallbackInfo& info);
  // Chat templates and the chat parser: native/chat_templates.cc.
  Napi::Value ApplyChatTemplate(const Napi::CallbackInfo& info);
  Napi::Value ParseChatOutput(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  llama_model* model_ = nullptr;
  std::set<Context*> contexts_;
  std::shared_ptr<std::set<Model*>> registry_;  // the Addon's live models (outlives the Addon)
};

}  // namespace cuda_llama
