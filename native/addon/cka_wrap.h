// NativeCKA: the JS handle of a tcka::CKAEngine. One step runs at a time.
#pragma once

#include <napi.h>

#include <memory>

#include "engine.h"

namespace tcka::addon {

class NativeCKA : public Napi::ObjectWrap<NativeCKA> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new NativeCKA(model1, model2, { layers1, layers2, label1, label2, precision })
  explicit NativeCKA(const Napi::CallbackInfo& info);
  ~NativeCKA() override;

 private:
  // step(inputs1, inputs2 | null): Promise<{ n, skipped, warnings }>
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Steps(const Napi::CallbackInfo& info);
  Napi::Value Workers(const Napi::CallbackInfo& info);
  Napi::Value Trim(const Napi::CallbackInfo& info);
  // result(): { rows1, rows2, cka, self1, self2, samples, batches, skipped, warnings }
  Napi::Value Result(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  // cancel(): the running step adds nothing and rejects with ABORT_ERR.
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  // state(): { rows1, rows2: [layer, call, name][], xy, xx, yy: Float64Array,
  // steps, batches, samples, skipped }; restore(state) puts one back.
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Restore(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  // calibrate(inputs1, inputs2 | null): runs the stream's batch 0 to fix σ
  // (rbf_cka in a distributed run), adding nothing; resolves like step().
  Napi::Value Calibrate(const Napi::CallbackInfo& info);
  Napi::Value RunBatch(const Napi::CallbackInfo& info, bool calibrate);
  Napi::Value Sigmas(const Napi::CallbackInfo& info);
  Napi::Value Busy(const Napi::CallbackInfo& info);
  // Full-batch mode (engine.h): fullAppend(inputs1, inputs2 | null, count)
  // copies a chunk; fullRun(options): Promise<NativeFullResult>;
  // fullProgress(): { phase, done, total }; fullClear() drops the chunks.
  Napi::Value FullAppend(const Napi::CallbackInfo& info);
  Napi::Value FullRun(const Napi::CallbackInfo& info);
  Napi::Value FullProgress(const Napi::CallbackInfo& info);
  Napi::Value FullClear(const Napi::CallbackInfo& info);
  void RequireIdle(Napi::Env env, const char* what) const;

  // Tells V8 about the appended full-batch chunks (their inputs' bytes).
  void ReportFullBytes(Napi::Env env, int64_t bytes);

  std::shared_ptr<CKAEngine> engine_;
  bool busy_ = false;
  int64_t reported_bytes_ = 0;
};

}  // namespace tcka::addon
