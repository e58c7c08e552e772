#include "model_wrap.h"

#include <ATen/Parallel.h>

#include "addon_data.h"
#include "blas.h"
#include "convert.h"
#include "js_errors.h"
#include "workers.h"

namespace tcka::addon {

Napi::Function NativeModel::Init(Napi::Env env) {
  return DefineClass(
      env, "NativeModel",
      {InstanceMethod<&NativeModel::Layers>("layers"), InstanceMethod<&NativeModel::Extract>("extract"),
       InstanceMethod<&NativeModel::ForwardOnly>("forwardOnly"), InstanceMethod<&NativeModel::Dispose>("dispose"),
       InstanceAccessor<&NativeModel::Path>("path"), InstanceAccessor<&NativeModel::Device>("device"),
       InstanceAccessor<&NativeModel::Disposed>("disposed")});
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw type_error(env, "NativeModel cannot be constructed directly; use loadModel()");
  }
  model_ = *info[0].As<Napi::External<std::shared_ptr<Model>>>().Data();
  reported_bytes_ = model_->parameter_bytes();
  Napi::MemoryManagement::AdjustExternalMemory(env, reported_bytes_);
}

NativeModel::~NativeModel() { ReleaseMemoryReport(); }

void NativeModel::ReleaseMemoryReport() {
  if (reported_bytes_ == 0) return;
  Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
  reported_bytes_ = 0;
}

Napi::Value NativeModel::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
      throw type_error(env, "Expected loadModel(path: string, device: string, instrument?: boolean)");
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    std::string device = info[1].As<Napi::String>().Utf8Value();
    const bool instrument = info.Length() < 3 || !info[2].IsBoolean() || info[2].As<Napi::Boolean>().Value();
    return PromiseWorker<std::shared_ptr<Model>>::Start(
        env, [path, device, instrument] { return Model::load(path, device, instrument); },
        [](Napi::Env env, std::shared_ptr<Model>& model) -> Napi::Value {
          auto external = Napi::External<std::shared_ptr<Model>>::New(env, &model);
          return AddonData::Get(env).model_constructor.New({external});
        });
  });
}

std::shared_ptr<Model> NativeModel::From(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(AddonData::Get(env).model_constructor.Value())) {
    throw type_error(env, "Expected " + what + " to be a model returned by loadModel()");
  }
  return Unwrap(value.As<Napi::Object>())->Live(env);
}

std::shared_ptr<Model> NativeModel::Live(Napi::Env env) const {
  if (model_->disposed()) {
    throw make_error(env, {codes::kDisposed, "Model '" + model_->path() + "' has been disposed", ErrorKind::Error});
  }
  return model_;
}

Napi::Value NativeModel::Layers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto& layers = Live(env)->layers();
    Napi::Array out = Napi::Array::New(env, layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      Napi::Object layer = Napi::Object::New(env);
      layer.Set("name", layers[i].name);
      layer.Set("type", layers[i].type);
      layer.Set("callable", layers[i].callable);
      layer.Set("outputType", layers[i].output_type);
      out.Set(static_cast<uint32_t>(i), layer);
    }
    return out;
  });
}

Napi::Value NativeModel::Extract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    std::shared_ptr<Model> model = Live(env);
    std::vector<at::Tensor> inputs = inputs_from_js(info[0], "the batch");
    std::vector<std::string> names = strings_from_js(info[1], "layers");
    using Features = std::vector<std::pair<std::string, at::Tensor>>;
    return PromiseWorker<Features>::Start(
        env, [model, inputs, names] { return model->extract(inputs, names); },
        [](Napi::Env env, Features& features) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, features.size());
          for (size_t i = 0; i < features.size(); ++i) {
            Napi::Array pair = Napi::Array::New(env, 2);
            pair.Set(0u, features[i].first);
            pair.Set(1u, tensor_to_js(env, features[i].second));
            out.Set(static_cast<uint32_t>(i), pair);
          }
          return out;
        });
  });
}

Napi::Value NativeModel::ForwardOnly(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    std::shared_ptr<Model> model = Live(env);
    std::vector<at::Tensor> inputs = inputs_from_js(info[0], "the batch");
    const int threads = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    return StartVoid(env, [model, inputs, threads] {
      if (threads > 0) {
        at::set_num_threads(threads);
        set_blas_threads(threads);
      }
      model->forward_only(inputs, "the batch passed to forwardOnly()");
    });
  });
}

Napi::Value NativeModel::Dispose(const Napi::CallbackInfo& info) {
  model_->dispose();
  ReleaseMemoryReport();
  return info.Env().Undefined();
}

Napi::Value NativeModel::Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), model_->path()); }

Napi::Value NativeModel::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), model_->device().str());
}

Napi::Value NativeModel::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), model_->disposed());
}

}  // namespace tcka::addon
