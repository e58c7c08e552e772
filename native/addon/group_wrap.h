// NativeGroup: the JS handle of a tcka::ProcessGroup (ts/distributed.ts).
#pragma once

#include <napi.h>

#include <memory>

#include "distributed.h"

namespace tcka::addon {

class NativeGroup : public Napi::ObjectWrap<NativeGroup> {
 public:
  static Napi::Function Init(Napi::Env env);
  // connectGroup({rank, worldSize, masterAddr, masterPort, timeoutMs, backend,
  // cudaDevice, ifname}): Promise<NativeGroup>, connected to the store.
  static Napi::Value Connect(const Napi::CallbackInfo& info);

  explicit NativeGroup(const Napi::CallbackInfo& info);

 private:
  // Each returns a Promise; the work runs off the main thread.
  Napi::Value Set(const Napi::CallbackInfo& info);             // (key, value): void
  Napi::Value Get(const Napi::CallbackInfo& info);             // (keys): Array<string | null>
  Napi::Value Add(const Napi::CallbackInfo& info);             // (key, delta): number
  Napi::Value ConnectBackend(const Napi::CallbackInfo& info);  // (): void
  Napi::Value Allreduce(const Napi::CallbackInfo& info);       // (Float64Array): Float64Array, the sums
  Napi::Value Close(const Napi::CallbackInfo& info);           // (finishedKey, lingerMs, expected): void

  std::shared_ptr<ProcessGroup> group_;
};

}  // namespace tcka::addon
