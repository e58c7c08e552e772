// Per-environment state of the addon (one per main thread or Worker).
#pragma once

#include <napi.h>

namespace tcka::addon {

struct AddonData {
  Napi::FunctionReference model_constructor;
  Napi::FunctionReference cka_constructor;
  Napi::FunctionReference group_constructor;

  static AddonData& Get(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace tcka::addon
