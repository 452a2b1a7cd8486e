#include "model.h"

#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "cancel_flag.h"
#include "chat_templates.h"
#include "common.h"
#include "context.h"
#include "ggml-backend.h"
#include "log.h"
#include "promise_worker.h"

namespace cuda_llama {
namespace {

std::string MetaString(const llama_model* model, const char* key) {
  char buf[512];
  int32_t n = llama_model_meta_val_str(model, key, buf, sizeof(buf));
  return n >= 0 ? std::string(buf) : std::string();
}

// Runs llama_model_load_from_file on the libuv pool; progress is coalesced (only the latest
// fraction matters), cancellation goes through the progress callback's return value.
class LoadWorker : public Napi::AsyncProgressWorker<float> {
 public:
  LoadWorker(Napi::Env env, std::string path, llama_model_params params, std::vector<std::string> device_names,
             bool devices_given, std::vector<float> tensor_split, Napi::Function on_progress,
             std::shared_ptr<std::atomic<bool>> cancel)
      : Napi::AsyncProgressWorker<float>(env, "cuda-llama-load"),
        deferred_(Napi::Promise::Deferred::New(env)),
        path_(std::move(path)),
        params_(params),
        device_names_(std::move(device_names)),
        devices_given_(devices_given),
        tensor_split_(std::move(tensor_split)),
        cancel_(std::move(cancel)),
        log_sink_(env.GetInstanceData<Addon>()->log_sink) {
    if (!on_progress.IsEmpty()) on_progress_ = Napi::Persistent(on_progress);
  }

  // Pool thread: the load's lines go to the env that asked for it (see native/log.h).
  void OnExecute(Napi::Env env) override {
    LogRoute route(log_sink_.get());
    Napi::AsyncProgressWorker<float>::OnExecute(env);
  }

  ~LoadWorker() override {
    if (model_ != nullptr) llama_model_free(model_);  // loaded, but never handed to JS
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    std::vector<ggml_backend_dev_t> devices;
    if (devices_given_) {
      // An empty list (only the NULL terminator) means "CPU only".
      if (auto missing = DevicesByName(device_names_, devices)) {
        error_code_ = code::kCudaUnavailable;
        error_ = *missing;
        SetError(error_);
        return;
      }
      params_.devices = devices.data();
    }
    if (!tensor_split_.empty()) {
      tensor_split_.resize(llama_max_devices(), 0.0f);
      params_.tensor_split = tensor_split_.data();
    }
    progress_ = &progress;
    params_.progress_callback = [](float fraction, void* self_ptr) {
      auto* self = static_cast<LoadWorker*>(self_ptr);
      if (self->cancel_ && self->cancel_->load()) return false;
      self->progress_->Send(&fraction, 1);
      return true;
    };
    params_.progress_callback_user_data = this;
    ClearThreadErrors();
    model_ = llama_model_load_from_file(path_.c_str(), params_);
    if (model_ == nullptr) {
      cancelled_ = cancel_ && cancel_->load();
      std::string reason = TakeThreadErrors();
      error_ = cancelled_ ? "model load cancelled"
                          : "llama.cpp could not load " + path_ + (reason.empty() ? "" : ": " + reason);
      SetError(error_);
    }
  }

  void OnProgress(const float* data, size_t count) override {
    if (on_progress_.IsEmpty() || count == 0) return;
    try {
      on_progress_.Call({Napi::Number::New(Env(), data[count - 1])});
    } catch (const Napi::Error&) {
      // lib/ wraps user callbacks; nothing thrown here may disturb the load.
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Addon* addon = env.GetInstanceData<Addon>();
    Napi::Object model = addon->model_constructor.New({Napi::External<llama_model>::New(env, model_)});
    model_ = nullptr;
    deferred_.Resolve(model);
  }

  void OnError(const Napi::Error&) override {
    // A cancelled load rejects as ERR_MODEL_LOAD too; lib/ never shows it, it rejects with the
    // AbortSignal's reason or the progress callback's exception instead.
    Napi::Error error = MakeError(Env(), error_code_, error_);
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  llama_model_params params_;
  std::vector<std::string> device_names_;
  bool devices_given_;
  std::vector<float> tensor_split_;
  Napi::FunctionReference on_progress_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::shared_ptr<LogSink> log_sink_;
  const ExecutionProgress* progress_ = nullptr;
  llama_model* model_ = nullptr;
  bool cancelled_ = false;
  const char* error_code_ = code::kModelLoad;
  std::string error_;
};

}  // namespace

Napi::Function Model::Define(Napi::Env env) {
  return DefineClass(env, "Model",
                     {StaticMethod<&Model::Load>("load"), InstanceMethod<&Model::Info>("info"),
                      InstanceMethod<&Model::Tokenize>("tokenize"), InstanceMethod<&Model::Detokenize>("detokenize"),
                      InstanceMethod<&Model::TokenPieces>("tokenPieces"),
                      InstanceMethod<&Model::ApplyChatTemplate>("applyChatTemplate"),
                      InstanceMethod<&Model::ParseChatOutput>("parseChatOutput"),
                      InstanceMethod<&Model::Dispose>("dispose"), InstanceAccessor<&Model::IsDisposed>("disposed")});
}

Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "Model cannot be constructed directly; use Llama.load()");
  }
  model_ = info[0].As<Napi::External<llama_model>>().Data();
  TagObject(info.This().As<Napi::Object>(), kModelTag);
  registry_ = env.GetInstanceData<Addon>()->live_models;
  registry_->insert(this);
}

Model::~Model() {
  Free();
  registry_->erase(this);
}

const std::vector<llama_token>& Model::NonUtf8Tokens(Napi::Env env) {
  if (!non_utf8_found_) {
    const llama_vocab* vocab = llama_model_get_vocab(Get(env));
    for (llama_token t = 0; t < llama_vocab_n_tokens(vocab); t++) {
      for (unsigned char byte : TokenPiece(vocab, t, true)) {
        if (byte == 0xC0 || byte == 0xC1 || byte >= 0xF5) {
          non_utf8_tokens_.push_back(t);
          break;
        }
      }
    }
    non_utf8_found_ = true;
  }
  return non_utf8_tokens_;
}

void Model::Free() {
  // Copy: Context::Free() unregisters itself from contexts_.
  std::set<Context*> contexts = contexts_;
  for (Context* context : contexts) context->Free();
  contexts_.clear();
  if (model_ != nullptr) {
    llama_model_free(model_);
    model_ = nullptr;
  }
}

llama_model* Model::Get(Napi::Env env) const {
  if (model_ == nullptr) throw MakeError(env, code::kDisposed, "model has been disposed");
  return model_;
}

Napi::Value Model::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "load(path: string, params: object, onProgress?, cancelFlag?)");
  }
  std::string path = info[0].As<Napi::String>();
  Napi::Object options = info[1].As<Napi::Object>();

  // Start from llama.cpp's defaults and override only what lib/ set.
  llama_model_params params = llama_model_default_params();
  if (auto v = OptionalNumber(options, "nGpuLayers")) params.n_gpu_layers = static_cast<int32_t>(*v);
  if (auto v = OptionalNumber(options, "splitMode")) params.split_mode = static_cast<llama_split_mode>(*v);
  if (auto v = OptionalNumber(options, "mainGpu")) params.main_gpu = static_cast<int32_t>(*v);
  if (auto v = OptionalNumber(options, "loadMode")) params.load_mode = static_cast<llama_load_mode>(*v);
  if (auto v = OptionalBool(options, "vocabOnly")) params.vocab_only = *v;
  if (auto v = OptionalBool(options, "checkTensors")) params.check_tensors = *v;
  if (auto v = OptionalBool(options, "noAlloc")) params.no_alloc = *v;

  std::vector<std::string> device_names;
  bool devices_given = false;
  Napi::Value devices = options.Get("devices");
  if (devices.IsArray()) {
    devices_given = true;
    Napi::Array list = devices.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) device_names.push_back(list.Get(i).As<Napi::String>());
  }
  std::vector<float> tensor_split;
  Napi::Value split = options.Get("tensorSplit");
  if (split.IsArray()) {
    Napi::Array list = split.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) tensor_split.push_back(list.Get(i).As<Napi::Number>().FloatValue());
  }

  Napi::Function on_progress;
  if (info.Length() > 2 && info[2].IsFunction()) on_progress = info[2].As<Napi::Function>();
  std::shared_ptr<std::atomic<bool>> cancel;
  if (info.Length() > 3 && HasTag(info[3], kCancelFlagTag)) {
    cancel = CancelFlag::Unwrap(info[3].As<Napi::Object>())->flag();
  }

  auto* worker = new LoadWorker(env, std::move(path), params, std::move(device_names), devices_given,
                                std::move(tensor_split), on_progress, std::move(cancel));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Model::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_model* model = Get(env);
  const llama_vocab* vocab = llama_model_get_vocab(model);
  Napi::Object result = Napi::Object::New(env);
  char desc[256];
  llama_model_desc(model, desc, sizeof(desc));
  result.Set("description", desc);
  result.Set("architecture", MetaString(model, "general.architecture"));
  result.Set("name", MetaString(model, "general.name"));
  result.Set("parameters", Napi::Number::New(env, static_cast<double>(llama_model_n_params(model))));
  result.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(llama_model_size(model))));
  result.Set("layerCount", llama_model_n_layer(model));
  result.Set("trainingContextSize", llama_model_n_ctx_train(model));
  result.Set("embeddingSize", llama_model_n_embd(model));
  result.Set("headCount", llama_model_n_head(model));
  result.Set("headCountKv", llama_model_n_head_kv(model));
  result.Set("vocabSize", llama_vocab_n_tokens(vocab));
  result.Set("fileType", static_cast<int>(llama_model_ftype(model)));
  result.Set("fileTypeName", llama_ftype_name(llama_model_ftype(model)));
  const char* tmpl = llama_model_chat_template(model, nullptr);
  result.Set("chatTemplate", tmpl != nullptr ? Napi::Value(Napi::String::New(env, tmpl)) : env.Null());
  result.Set("bosToken", llama_vocab_bos(vocab));
  result.Set("eosToken", llama_vocab_eos(vocab));
  result.Set("addBos", llama_vocab_get_add_bos(vocab));
  result.Set("hasEncoder", llama_model_has_encoder(model));
  result.Set("hasDecoder", llama_model_has_decoder(model));
  // What embeddings and rerank prompts need: the pooled vector's size, the ranking head's outputs
  // and labels, the file's rerank prompt, and the separator tokens llama.cpp's tools join a query
  // and a document with when the file has no rerank prompt.
  result.Set("embeddingOutputSize", llama_model_n_embd_out(model));
  const uint32_t n_cls_out = llama_model_n_cls_out(model);
  result.Set("classifierOutputs", n_cls_out);
  Napi::Array labels = Napi::Array::New(env, n_cls_out);
  for (uint32_t i = 0; i < n_cls_out; i++) {
    const char* label = llama_model_cls_label(model, i);
    labels.Set(i, label != nullptr ? Napi::Value(Napi::String::New(env, label)) : env.Null());
  }
  result.Set("classifierLabels", labels);
  const char* rerank = llama_model_chat_template(model, "rerank");
  result.Set("rerankTemplate", rerank != nullptr ? Napi::Value(Napi::String::New(env, rerank)) : env.Null());
  result.Set("sepToken", llama_vocab_sep(vocab));
  result.Set("addSep", llama_vocab_get_add_sep(vocab));
  result.Set("addEos", llama_vocab_get_add_eos(vocab));
  return result;
}

Napi::Value Model::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_model* model = Get(env);
  if (info.Length() < 3 || !info[0].IsString())
    throw Napi::TypeError::New(env, "tokenize(text, addSpecial, parseSpecial)");
  std::string text = info[0].As<Napi::String>();
  bool add_special = info[1].ToBoolean();
  bool parse_special = info[2].ToBoolean();
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::vector<llama_token> tokens(text.size() + 8);
  int32_t n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                             static_cast<int32_t>(tokens.size()), add_special, parse_special);
  if (n < 0) {
    if (n == INT32_MIN) throw Napi::RangeError::New(env, "text is too long to tokenize");
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                       static_cast<int32_t>(tokens.size()), add_special, parse_special);
  }
  Napi::Int32Array result = Napi::Int32Array::New(env, static_cast<size_t>(n));
  std::copy(tokens.begin(), tokens.begin() + n, result.Data());
  return result;
}

namespace {
// Cheap defensive check; lib/ validates token ids before they get here.
void CheckTokens(Napi::Env env, const llama_vocab* vocab, const int32_t* tokens, size_t n) {
  const int32_t n_vocab = llama_vocab_n_tokens(vocab);
  for (size_t i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= n_vocab) throw Napi::RangeError::New(env, "token id out of range");
  }
}
}  // namespace

Napi::Value Model::Detokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_model* model = Get(env);
  if (info.Length() < 3 || !info[0].IsTypedArray())
    throw Napi::TypeError::New(env, "detokenize(Int32Array, removeSpecial, unparseSpecial)");
  Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
  const llama_vocab* vocab = llama_model_get_vocab(model);
  CheckTokens(env, vocab, tokens.Data(), tokens.ElementLength());
  bool remove_special = info[1].ToBoolean();
  bool unparse_special = info[2].ToBoolean();
  std::string text(tokens.ElementLength() * 8 + 16, '\0');
  int32_t n = llama_detokenize(vocab, tokens.Data(), static_cast<int32_t>(tokens.ElementLength()), text.data(),
                               static_cast<int32_t>(text.size()), remove_special, unparse_special);
  if (n < 0) {
    text.resize(static_cast<size_t>(-n));
    n = llama_detokenize(vocab, tokens.Data(), static_cast<int32_t>(tokens.ElementLength()), text.data(),
                         static_cast<int32_t>(text.size()), remove_special, unparse_special);
  }
  return Napi::Buffer<char>::Copy(env, text.data(), static_cast<size_t>(std::max(n, 0)));
}

Napi::Value Model::TokenPieces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_model* model = Get(env);
  if (info.Length() < 2 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "tokenPieces(Int32Array, special)");
  }
  Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
  const llama_vocab* vocab = llama_model_get_vocab(model);
  CheckTokens(env, vocab, tokens.Data(), tokens.ElementLength());
  const bool special = info[1].ToBoolean();
  Napi::Array pieces = Napi::Array::New(env, tokens.ElementLength());
  for (size_t i = 0; i < tokens.ElementLength(); i++) {
    const std::string piece = TokenPiece(vocab, tokens[i], special);
    pieces.Set(static_cast<uint32_t>(i), Napi::Buffer<char>::Copy(env, piece.data(), piece.size()));
  }
  return pieces;
}

Napi::Value Model::ApplyChatTemplate(const Napi::CallbackInfo& info) {
  return cuda_llama::ApplyChatTemplate(info, Get(info.Env()));
}

Napi::Value Model::ParseChatOutput(const Napi::CallbackInfo& info) {
  Get(info.Env());  // the parse needs no model, but a disposed one is still ERR_DISPOSED
  return cuda_llama::ParseChatOutput(info);
}

Napi::Value Model::Dispose(const Napi::CallbackInfo& info) {
  Free();
  return info.Env().Undefined();
}

Napi::Value Model::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), model_ == nullptr);
}

}  // namespace cuda_llama
