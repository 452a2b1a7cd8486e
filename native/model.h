// Model: owns one llama_model. Loading is a PromiseWorker (disk, maybe GPU); vocabulary and
// metadata queries are cheap and synchronous. A Model frees its Contexts before itself.
#pragma once

#include <napi.h>

#include <memory>
#include <set>
#include <vector>

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

  // Tokens holding a byte that never occurs in UTF-8 (C0, C1, F5-FF), found once (JS thread).
  // llama.cpp's grammar engine decodes such bytes to "characters" above U+10FFFF that its negated
  // classes (a JSON string's character, [^...]) accept, while the text they make is invalid; the
  // sampler bans them whenever a grammar holds the output (native/sampler.cc).
  const std::vector<llama_token>& NonUtf8Tokens(Napi::Env env);

 private:
  // JS: Model.load(path, params, onProgress | undefined, cancelFlag | undefined) -> Promise<Model>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Detokenize(const Napi::CallbackInfo& info);
  // JS: tokenPieces(Int32Array, special) -> Buffer[]: each token's own text (llama_token_to_piece),
  // as the engine streams it (log probabilities name their alternatives with these).
  Napi::Value TokenPieces(const Napi::CallbackInfo& info);
  // Chat templates and the chat parser: native/chat_templates.cc.
  Napi::Value ApplyChatTemplate(const Napi::CallbackInfo& info);
  Napi::Value ParseChatOutput(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  llama_model* model_ = nullptr;
  std::set<Context*> contexts_;
  std::vector<llama_token> non_utf8_tokens_;
  bool non_utf8_found_ = false;
  std::shared_ptr<std::set<Model*>> registry_;  // the Addon's live models (outlives the Addon)
};

}  // namespace cuda_llama
