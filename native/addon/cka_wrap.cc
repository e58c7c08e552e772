#include "cka_wrap.h"

#include "addon_data.h"
#include "convert.h"
#include "js_errors.h"
#include "model_wrap.h"
#include "workers.h"

namespace tcka::addon {
namespace {

std::string optional_string(const Napi::Object& options, const char* key) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined() || value.IsNull()) return "";
  if (!value.IsString()) throw type_error(options.Env(), std::string("Expected ") + key + " to be a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Array numbers_to_js(Napi::Env env, const std::vector<double>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), values[i]);
  return out;
}

}  // namespace

Napi::Function NativeCka::Init(Napi::Env env) {
  return DefineClass(env, "NativeCka",
                     {InstanceMethod<&NativeCka::Step>("step"), InstanceMethod<&NativeCka::Result>("result"),
                      InstanceMethod<&NativeCka::Stats>("stats"), InstanceAccessor<&NativeCka::Busy>("busy")});
}

NativeCka::NativeCka(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCka>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    std::shared_ptr<Model> model1 = NativeModel::From(info[0], "model1");
    std::shared_ptr<Model> model2 = NativeModel::From(info[1], "model2");
    if (!info[2].IsObject()) throw type_error(env, "Expected the options to be an object");
    Napi::Object options = info[2].As<Napi::Object>();
    CkaConfig config;
    config.layers1 = strings_from_js(options.Get("layers1"), "model1Layers");
    config.layers2 = strings_from_js(options.Get("layers2"), "model2Layers");
    config.label1 = optional_string(options, "label1");
    config.label2 = optional_string(options, "label2");
    const std::string precision = optional_string(options, "precision");
    if (precision == "float32") {
      config.pair_dtype = at::kFloat;
    } else if (!precision.empty() && precision != "float64") {
      throw make_error(
          env, {codes::kInvalidArg, "Expected precision to be 'float64' or 'float32' but received '" + precision + "'",
                ErrorKind::RangeError});
    }
    Napi::Value threads = options.Get("threads");
    if (!threads.IsUndefined()) {
      if (!threads.IsNumber() || threads.As<Napi::Number>().Int32Value() < 1) {
        throw make_error(env, {codes::kInvalidArg, "Expected threads to be a positive integer", ErrorKind::RangeError});
      }
      config.threads = threads.As<Napi::Number>().Int32Value();
    }
    Napi::Value concurrent = options.Get("concurrent");
    if (!concurrent.IsUndefined()) {
      if (!concurrent.IsBoolean()) throw type_error(env, "Expected concurrent to be a boolean");
      config.concurrent = concurrent.As<Napi::Boolean>().Value();
    }
    engine_ = std::make_shared<CkaEngine>(std::move(model1), std::move(model2), std::move(config));
  });
}

void NativeCka::RequireIdle(Napi::Env env, const char* what) const {
  if (busy_) {
    throw make_error(env, {codes::kBusy,
                           std::string("Cannot ") + what +
                               " while a batch of this comparison is still running; await compare() first",
                           ErrorKind::Error});
  }
}

Napi::Value NativeCka::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "start a batch");
    const std::string label = "batch " + std::to_string(engine_->steps());
    std::vector<at::Tensor> inputs1 = inputs_from_js(info[0], label + " of data 1");
    const bool same = info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined();
    std::vector<at::Tensor> inputs2 = same ? std::vector<at::Tensor>() : inputs_from_js(info[1], label + " of data 2");
    std::shared_ptr<CkaEngine> engine = engine_;
    busy_ = true;
    Ref();
    return PromiseWorker<StepOutcome>::Start(
        env,
        [engine, inputs1 = std::move(inputs1), inputs2 = std::move(inputs2), same] {
          return engine->step(inputs1, same ? nullptr : &inputs2);
        },
        [](Napi::Env env, StepOutcome& outcome) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("n", static_cast<double>(outcome.n));
          out.Set("skipped", outcome.skipped);
          out.Set("warnings", strings_to_js(env, outcome.warnings));
          return out;
        },
        [this] {
          busy_ = false;
          Unref();
        });
  });
}

Napi::Value NativeCka::Result(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "read the result");
    const CkaResult result = engine_->result();
    Napi::Object out = Napi::Object::New(env);
    out.Set("rows1", strings_to_js(env, result.rows1));
    out.Set("rows2", strings_to_js(env, result.rows2));
    const size_t p = result.rows2.size();
    Napi::Array matrix = Napi::Array::New(env, result.rows1.size());
    for (size_t a = 0; a < result.rows1.size(); ++a) {
      Napi::Array row = Napi::Array::New(env, p);
      for (size_t b = 0; b < p; ++b) {
        const auto& value = result.cka[a * p + b];
        row.Set(static_cast<uint32_t>(b), value ? Napi::Value(Napi::Number::New(env, *value)) : env.Null());
      }
      matrix.Set(static_cast<uint32_t>(a), row);
    }
    out.Set("cka", matrix);
    out.Set("self1", numbers_to_js(env, result.self1));
    out.Set("self2", numbers_to_js(env, result.self2));
    out.Set("samples", static_cast<double>(result.samples));
    out.Set("batches", static_cast<double>(result.batches));
    out.Set("skipped", static_cast<double>(result.skipped));
    out.Set("warnings", strings_to_js(env, result.warnings));
    return out;
  });
}

Napi::Value NativeCka::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const EngineStats stats = engine_->stats();
    Napi::Object out = Napi::Object::New(env);
    out.Set("accumulatorBytes", static_cast<double>(stats.accumulator_bytes));
    out.Set("gramBytes", static_cast<double>(stats.gram_bytes));
    out.Set("blockBytes", static_cast<double>(stats.block_bytes));
    out.Set("forwards", static_cast<double>(stats.forwards));
    out.Set("reusedGrams", static_cast<double>(stats.reused_grams));
    out.Set("threads", stats.threads);
    out.Set("concurrent", stats.concurrent);
    return out;
  });
}

Napi::Value NativeCka::Busy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), busy_); }

}  // namespace tcka::addon
