// NativeModel: the JS handle of a tcka::Model.
#pragma once

#include <napi.h>

#include <memory>

#include "model.h"

namespace tcka::addon {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env);
  // loadModel(path, device, instrument = true): Promise<NativeModel>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  // The core model behind a JS value, or a TypeError naming `what`.
  static std::shared_ptr<Model> From(const Napi::Value& value, const std::string& what);

  explicit NativeModel(const Napi::CallbackInfo& info);
  ~NativeModel() override;

 private:
  Napi::Value Layers(const Napi::CallbackInfo& info);
  Napi::Value Extract(const Napi::CallbackInfo& info);
  // forwardOnly(batch, threads?): Promise<void>, the benchmark's floor.
  Napi::Value ForwardOnly(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Path(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  std::shared_ptr<Model> Live(Napi::Env env) const;
  void ReleaseMemoryReport();

  std::shared_ptr<Model> model_;
  int64_t reported_bytes_ = 0;
};

}  // namespace tcka::addon
