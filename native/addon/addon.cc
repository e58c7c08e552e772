// Registers the addon's exports; the work lives in the files beside it.
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <napi.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <thread>

#include "addon_data.h"
#include "bench_wrap.h"
#include "blas.h"
#include "cka_wrap.h"
#include "device.h"
#include "distributed.h"
#include "group_wrap.h"
#include "js_errors.h"
#include "model_wrap.h"

namespace tcka::addon {
namespace {

// The file of the libtorch loaded in this process (its libtorch_cpu), found
// from the address of one of its functions; "" if the loader cannot tell.
std::string loaded_libtorch_file() {
  Dl_info found{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &found) != 0 && found.dli_fname != nullptr) {
    return found.dli_fname;
  }
  return "";
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    // The version in the headers this addon was compiled against; the one in
    // the process is found from libtorchFile (ts/libtorch.ts).
    out.Set("libtorchVersion", TORCH_VERSION);
    out.Set("libtorchFile", loaded_libtorch_file());
    out.Set("cudaAvailable", torch::cuda::is_available());
    out.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
    out.Set("threads", at::get_num_threads());
    out.Set("interopThreads", at::get_num_interop_threads());
    // What this process may use (affinity, cgroup quota), and what the machine has.
    out.Set("cores", static_cast<double>(usable_cores()));
    out.Set("hardwareThreads", static_cast<double>(std::thread::hardware_concurrency()));
    out.Set("blas", blas_description());
    const auto backends = available_backends();
    Napi::Array dist = Napi::Array::New(env, backends.size());
    for (size_t i = 0; i < backends.size(); ++i) dist.Set(static_cast<uint32_t>(i), backends[i]);
    out.Set("distributedBackends", dist);
    return out;
  });
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function model = NativeModel::Init(env);
  Napi::Function cka = NativeCKA::Init(env);
  data->model_constructor = Napi::Persistent(model);
  data->cka_constructor = Napi::Persistent(cka);
  Napi::Function group = NativeGroup::Init(env);
  data->group_constructor = Napi::Persistent(group);
  exports.Set("NativeGroup", group);
  exports.Set("connectGroup", Napi::Function::New<NativeGroup::Connect>(env, "connectGroup"));
  exports.Set("NativeModel", model);
  exports.Set("NativeCKA", cka);
  exports.Set("loadModel", Napi::Function::New<NativeModel::Load>(env, "loadModel"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  exports.Set("benchBlasRates", Napi::Function::New<BenchBlasRates>(env, "benchBlasRates"));
  exports.Set("peerBaseline", Napi::Function::New<PeerBaseline>(env, "peerBaseline"));
  return exports;
}

}  // namespace tcka::addon

static Napi::Object InitTorchCka(Napi::Env env, Napi::Object exports) { return tcka::addon::Init(env, exports); }

NODE_API_MODULE(torch_cka, InitTorchCka)
