#include "bench_wrap.h"

#include <cmath>
#include <string>
#include <vector>

#include "bench_kit.h"
#include "convert.h"
#include "js_errors.h"
#include "model_wrap.h"
#include "workers.h"

namespace tcka::addon {
namespace {

// Argument `index` as an integer >= `min`: TypeError when not a number,
// RangeError when out of range or fractional.
int64_t integer_arg(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw type_error(env, std::string("Expected ") + name + " to be a number");
  }
  const double value = info[index].As<Napi::Number>().DoubleValue();
  if (!(value >= static_cast<double>(min) && value <= 1e9) || value != std::floor(value)) {
    throw make_error(env, {codes::kInvalidArg,
                           std::string("Expected ") + name + " to be an integer of at least " + std::to_string(min) +
                               " but received " + info[index].ToString().Utf8Value(),
                           ErrorKind::RangeError});
  }
  return static_cast<int64_t>(value);
}

Napi::Array integers_to_js(Napi::Env env, const std::vector<int64_t>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(values[i]));
  return out;
}

}  // namespace

Napi::Value BenchBlasRates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const int64_t n = integer_arg(info, 0, "n", 1), m = integer_arg(info, 1, "m", 1), p = integer_arg(info, 2, "p", 1);
    const int threads = static_cast<int>(integer_arg(info, 3, "threads", 0));
    return PromiseWorker<BlasRates>::Start(
        env, [n, m, p, threads] { return measure_blas_rates(n, m, p, threads); },
        [](Napi::Env env, BlasRates& rates) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("ssyrkGflops", rates.ssyrk_gflops);
          out.Set("sgemmGflops", rates.sgemm_gflops);
          out.Set("dgemmGflops", rates.dgemm_gflops);
          out.Set("threads", rates.threads);
          out.Set("n", static_cast<double>(rates.n));
          out.Set("m", static_cast<double>(rates.m));
          out.Set("p", static_cast<double>(rates.p));
          out.Set("k", static_cast<double>(rates.k));
          return out;
        });
  });
}

Napi::Value PeerBaseline(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 6) {
      throw type_error(env, "Expected peerBaseline(model1, model2, layers1, layers2, batches, threads)");
    }
    std::shared_ptr<Model> model1 = NativeModel::From(info[0], "model1");
    std::shared_ptr<Model> model2 = NativeModel::From(info[1], "model2");
    std::vector<std::string> layers1 = strings_from_js(info[2], "layers1");
    std::vector<std::string> layers2 = strings_from_js(info[3], "layers2");
    if (!info[4].IsArray()) throw type_error(env, "Expected batches to be an array of { data, shape }");
    Napi::Array array = info[4].As<Napi::Array>();
    std::vector<at::Tensor> batches;
    for (uint32_t i = 0; i < array.Length(); ++i) {
      batches.push_back(tensor_from_js(array.Get(i), "batch " + std::to_string(i)));
    }
    const int threads = static_cast<int>(integer_arg(info, 5, "threads", 0));
    return PromiseWorker<PeerRun>::Start(
        env,
        [model1, model2, layers1 = std::move(layers1), layers2 = std::move(layers2), batches = std::move(batches),
         threads] { return peer_baseline(*model1, *model2, layers1, layers2, batches, threads); },
        [](Napi::Env env, PeerRun& run) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("rows1", strings_to_js(env, run.rows1));
          out.Set("rows2", strings_to_js(env, run.rows2));
          const size_t cols = run.rows2.size();
          Napi::Array cka = Napi::Array::New(env, run.rows1.size());
          for (size_t i = 0; i < run.rows1.size(); ++i) {
            Napi::Array row = Napi::Array::New(env, cols);
            for (size_t j = 0; j < cols; ++j) {
              const double v = run.cka[i * cols + j];
              row.Set(static_cast<uint32_t>(j), std::isnan(v) ? env.Null() : Napi::Number::New(env, v));
            }
            cka.Set(static_cast<uint32_t>(i), row);
          }
          out.Set("cka", cka);
          out.Set("features1", integers_to_js(env, run.features1));
          out.Set("features2", integers_to_js(env, run.features2));
          out.Set("seconds", run.seconds);
          return out;
        });
  });
}

}  // namespace tcka::addon
