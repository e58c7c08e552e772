#include "cka_wrap.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <optional>
#include <sstream>

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

Napi::Float64Array doubles_to_js(Napi::Env env, const std::vector<double>& values) {
  Napi::Float64Array out = Napi::Float64Array::New(env, values.size());
  std::copy(values.begin(), values.end(), out.Data());
  return out;
}

Napi::Error state_error(Napi::Env env, const std::string& message) {
  return make_error(env, {codes::kInvalidArg, "Invalid saved state: " + message, ErrorKind::TypeError});
}

std::vector<double> doubles_from_js(Napi::Env env, const Napi::Object& state, const char* key) {
  Napi::Value value = state.Get(key);
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw state_error(env, std::string(key) + " must be a Float64Array");
  }
  Napi::Float64Array array = value.As<Napi::Float64Array>();
  return std::vector<double>(array.Data(), array.Data() + array.ElementLength());
}

int64_t count_from_js(Napi::Env env, const Napi::Object& state, const char* key) {
  Napi::Value value = state.Get(key);
  if (!value.IsNumber()) throw state_error(env, std::string(key) + " must be a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= 9007199254740991.0) || number != static_cast<double>(static_cast<int64_t>(number))) {
    throw state_error(env, std::string(key) + " must be a non-negative integer");
  }
  return static_cast<int64_t>(number);
}

Napi::Array rows_to_js(Napi::Env env, const std::vector<Row>& rows) {
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    Napi::Array row = Napi::Array::New(env, 3);
    row.Set(0u, static_cast<double>(rows[i].layer));
    row.Set(1u, static_cast<double>(rows[i].call));
    row.Set(2u, rows[i].name);
    out.Set(static_cast<uint32_t>(i), row);
  }
  return out;
}

std::vector<Row> rows_from_js(Napi::Env env, const Napi::Object& state, const char* key) {
  Napi::Value value = state.Get(key);
  if (!value.IsArray()) throw state_error(env, std::string(key) + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<Row> rows;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsArray() || item.As<Napi::Array>().Length() != 3) {
      throw state_error(env, std::string(key) + " must hold [layer, call, name] triples");
    }
    Napi::Array triple = item.As<Napi::Array>();
    if (!triple.Get(0u).IsNumber() || !triple.Get(1u).IsNumber() || !triple.Get(2u).IsString()) {
      throw state_error(env, std::string(key) + " must hold [layer, call, name] triples");
    }
    rows.push_back({triple.Get(0u).As<Napi::Number>().Int64Value(), triple.Get(1u).As<Napi::Number>().Int64Value(),
                    triple.Get(2u).As<Napi::String>().Utf8Value()});
  }
  return rows;
}

// An array of numbers (null: NaN, i.e. no user value), or undefined: empty.
std::vector<double> sigmas_from_js(Napi::Env env, const Napi::Value& value, const char* key) {
  std::vector<double> out;
  if (value.IsUndefined() || value.IsNull()) return out;
  if (!value.IsArray()) throw type_error(env, std::string("Expected ") + key + " to be an array");
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (item.IsNull() || item.IsUndefined()) {
      out.push_back(std::nan(""));
    } else if (item.IsNumber()) {
      out.push_back(item.As<Napi::Number>().DoubleValue());
    } else {
      throw type_error(env, std::string("Expected ") + key + " to hold numbers or null");
    }
  }
  return out;
}

Napi::Array optional_numbers_to_js(Napi::Env env, const std::vector<double>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out.Set(static_cast<uint32_t>(i), std::isnan(values[i]) ? env.Null() : Napi::Number::New(env, values[i]));
  }
  return out;
}

Napi::Error invalid_option(Napi::Env env, const std::string& message) {
  return make_error(env, {codes::kInvalidArg, message, ErrorKind::RangeError});
}

// A number option of fullRun: `fallback` when absent; TypeError when not a number.
double number_option(Napi::Env env, const Napi::Object& options, const char* key, double fallback) {
  const Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return fallback;
  if (!value.IsNumber()) throw type_error(env, std::string("Expected ") + key + " to be a number");
  return value.As<Napi::Number>().DoubleValue();
}

std::string number_text(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

FullBatchSettings full_settings_from_js(Napi::Env env, const Napi::Value& value, int64_t* budget) {
  if (!value.IsObject()) throw type_error(env, "Expected the full-batch options to be an object");
  const Napi::Object options = value.As<Napi::Object>();
  FullBatchSettings settings;
  for (const std::string& id : strings_from_js(options.Get("measures"), "measures")) {
    const FullMeasure measure = parse_full_measure(id, "measures");
    if (std::find(settings.measures.begin(), settings.measures.end(), measure) != settings.measures.end()) {
      throw invalid_option(env, "Expected each measure at most once but '" + id + "' is listed twice");
    }
    settings.measures.push_back(measure);
  }
  if (settings.measures.empty()) throw invalid_option(env, "Expected measures to name at least one measure");
  settings.rbf_threshold = number_option(env, options, "rbfThreshold", 0.5);
  if (!(settings.rbf_threshold > 0) || !std::isfinite(settings.rbf_threshold)) {
    throw invalid_option(env, "Expected rbfThreshold to be a positive finite number but received " +
                                  number_text(settings.rbf_threshold));
  }
  settings.svcca_variance = number_option(env, options, "svccaVariance", 0.99);
  if (!(settings.svcca_variance > 0 && settings.svcca_variance <= 1)) {
    throw invalid_option(
        env, "Expected svccaVariance to be a number in (0, 1] but received " + number_text(settings.svcca_variance));
  }
  const double k = number_option(env, options, "mknnK", 10);
  if (!(k >= 1 && k <= 9007199254740991.0) || k != std::floor(k)) {
    throw invalid_option(env, "Expected mknnK to be an integer >= 1 but received " + number_text(k));
  }
  settings.mknn_k = static_cast<int64_t>(k);
  settings.cca_ridge = number_option(env, options, "ccaRidge", 0);
  if (!(settings.cca_ridge >= 0) || !std::isfinite(settings.cca_ridge)) {
    throw invalid_option(
        env, "Expected ccaRidge to be a finite number >= 0 but received " + number_text(settings.cca_ridge));
  }
  const double bytes = number_option(env, options, "memoryBudget", 0);
  if (!(bytes >= 0) || !std::isfinite(bytes)) {
    throw invalid_option(env,
                         "Expected memoryBudget to be a finite number of bytes >= 0 (0: the default) but received " +
                             number_text(bytes));
  }
  *budget = bytes >= 9.2e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(bytes);
  return settings;
}

template <typename T, typename Convert>
Napi::Array array_to_js(Napi::Env env, const std::vector<T>& values, Convert convert) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), convert(values[i]));
  return out;
}

// Row-major m x p cells as an array of m arrays.
template <typename T, typename Convert>
Napi::Array matrix_to_js(Napi::Env env, const std::vector<T>& cells, size_t m, size_t p, Convert convert) {
  Napi::Array out = Napi::Array::New(env, m);
  for (size_t a = 0; a < m; ++a) {
    Napi::Array row = Napi::Array::New(env, p);
    for (size_t b = 0; b < p; ++b) row.Set(static_cast<uint32_t>(b), convert(cells[a * p + b]));
    out.Set(static_cast<uint32_t>(a), row);
  }
  return out;
}

Napi::Array left_out_to_js(Napi::Env env, const std::vector<LeftOutLayer>& layers) {
  Napi::Array out = Napi::Array::New(env, layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const LeftOutLayer& layer = layers[i];
    Napi::Object item = Napi::Object::New(env);
    item.Set("model", layer.model);
    item.Set("name", layer.name);
    item.Set("code", layer.code);
    item.Set("reason", layer.reason);
    out.Set(static_cast<uint32_t>(i), item);
  }
  return out;
}

Napi::Object full_result_to_js(Napi::Env env, const FullRunResult& result, const std::vector<std::string>& ids) {
  const FullBatchMatrices& x = result.matrices;
  const size_t m = result.rows1.size(), p = result.rows2.size();
  Napi::Object out = Napi::Object::New(env);
  out.Set("rows1", strings_to_js(env, result.rows1));
  out.Set("rows2", strings_to_js(env, result.rows2));
  out.Set("measures", strings_to_js(env, ids));
  Napi::Array matrices = Napi::Array::New(env, x.values.size());
  Napi::Array reasons = Napi::Array::New(env, x.reasons.size());
  for (size_t i = 0; i < x.values.size(); ++i) {
    matrices.Set(static_cast<uint32_t>(i),
                 matrix_to_js(env, x.values[i], m, p, [&](const std::optional<double>& value) -> Napi::Value {
                   return value ? Napi::Value(Napi::Number::New(env, *value)) : env.Null();
                 }));
  }
  for (size_t i = 0; i < x.reasons.size(); ++i) {
    reasons.Set(static_cast<uint32_t>(i),
                matrix_to_js(env, x.reasons[i], m, p, [&](const std::string& reason) -> Napi::Value {
                  return reason.empty() ? env.Null() : Napi::Value(Napi::String::New(env, reason));
                }));
  }
  out.Set("matrices", matrices);
  out.Set("reasons", reasons);
  out.Set("sigma1", optional_numbers_to_js(env, x.sigma1));
  out.Set("sigma2", optional_numbers_to_js(env, x.sigma2));
  const auto count = [](int64_t value) { return static_cast<double>(value); };
  const auto flag = [](bool value) { return value; };
  out.Set("rank1", array_to_js(env, x.rank1, count));
  out.Set("rank2", array_to_js(env, x.rank2, count));
  out.Set("fills1", array_to_js(env, x.fills1, flag));
  out.Set("fills2", array_to_js(env, x.fills2, flag));
  out.Set("features1", array_to_js(env, result.features1, count));
  out.Set("features2", array_to_js(env, result.features2, count));
  out.Set("svccaDims1", array_to_js(env, x.svcca_dims1, count));
  out.Set("svccaDims2", array_to_js(env, x.svcca_dims2, count));
  out.Set("eigenTolerance", x.eigen_tolerance);
  out.Set("samples", count(result.samples));
  out.Set("leftOut", left_out_to_js(env, result.left_out));
  out.Set("warnings", strings_to_js(env, result.warnings));
  const FullRunStats& s = result.stats;
  Napi::Object stats = Napi::Object::New(env);
  stats.Set("forwards", count(s.forwards));
  stats.Set("chunks", count(s.chunks));
  stats.Set("groups", count(s.groups));
  stats.Set("estimateBytes", count(s.estimate_bytes));
  stats.Set("budgetBytes", count(s.budget_bytes));
  stats.Set("gramBytes", count(s.gram_bytes));
  stats.Set("featureBytes", count(s.feature_bytes));
  stats.Set("measureBytes", count(s.measure_bytes));
  stats.Set("inputBytes", count(s.input_bytes));
  stats.Set("forwardMs", s.forward_ms);
  stats.Set("gramMs", s.gram_ms);
  stats.Set("measureMs", s.measure_ms);
  out.Set("stats", stats);
  return out;
}

}  // namespace

Napi::Function NativeCKA::Init(Napi::Env env) {
  return DefineClass(
      env, "NativeCKA",
      {InstanceMethod<&NativeCKA::Step>("step"), InstanceMethod<&NativeCKA::Steps>("steps"),
       InstanceAccessor<&NativeCKA::Workers>("workers"), InstanceMethod<&NativeCKA::Trim>("trim"),
       InstanceMethod<&NativeCKA::Result>("result"), InstanceMethod<&NativeCKA::Stats>("stats"),
       InstanceMethod<&NativeCKA::Cancel>("cancel"), InstanceMethod<&NativeCKA::State>("state"),
       InstanceMethod<&NativeCKA::Restore>("restore"), InstanceMethod<&NativeCKA::Reset>("reset"),
       InstanceMethod<&NativeCKA::Calibrate>("calibrate"), InstanceMethod<&NativeCKA::Sigmas>("sigmas"),
       InstanceAccessor<&NativeCKA::Busy>("busy"), InstanceMethod<&NativeCKA::FullAppend>("fullAppend"),
       InstanceMethod<&NativeCKA::FullRun>("fullRun"), InstanceMethod<&NativeCKA::FullProgress>("fullProgress"),
       InstanceMethod<&NativeCKA::FullClear>("fullClear")});
}

NativeCKA::NativeCKA(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCKA>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    std::shared_ptr<Model> model1 = NativeModel::From(info[0], "model1");
    std::shared_ptr<Model> model2 = NativeModel::From(info[1], "model2");
    if (!info[2].IsObject()) throw type_error(env, "Expected the options to be an object");
    Napi::Object options = info[2].As<Napi::Object>();
    CKAConfig config;
    config.layers1 = strings_from_js(options.Get("layers1"), "model1Layers");
    config.layers2 = strings_from_js(options.Get("layers2"), "model2Layers");
    config.label1 = optional_string(options, "label1");
    config.label2 = optional_string(options, "label2");
    // One view name per layer of the model (TS resolves the patterns); absent: all flatten.
    for (const auto& [key, views] : {std::pair{"views1", &config.views1}, std::pair{"views2", &config.views2}}) {
      const Napi::Value value = options.Get(key);
      if (value.IsUndefined()) continue;
      for (const std::string& name : strings_from_js(value, key)) views->push_back(parse_view(name, key));
    }
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
    Napi::Value workers = options.Get("workers");
    if (!workers.IsUndefined()) {
      if (!workers.IsNumber() || workers.As<Napi::Number>().Int32Value() < 1) {
        throw make_error(env, {codes::kInvalidArg, "Expected workers to be a positive integer", ErrorKind::RangeError});
      }
      config.workers = workers.As<Napi::Number>().Int32Value();
    }
    Napi::Value skip = options.Get("skipNonFinite");
    if (!skip.IsUndefined()) {
      if (!skip.IsBoolean()) throw type_error(env, "Expected skipNonFinite to be a boolean");
      config.skip_non_finite = skip.As<Napi::Boolean>().Value();
    }
    Napi::Value measures = options.Get("measures");
    if (!measures.IsUndefined()) {
      config.measures.clear();
      for (const std::string& id : strings_from_js(measures, "measures")) {
        if (id == "cka") {
          config.measures.push_back(Measure::kLinear);
        } else if (id == "rbf_cka") {
          config.measures.push_back(Measure::kRbf);
        } else if (id == "dcor") {
          config.measures.push_back(Measure::kDcor);
        } else {
          throw make_error(env, {codes::kInvalidArg,
                                 "Expected measures to hold 'cka', 'rbf_cka' or 'dcor' but received '" + id + "'",
                                 ErrorKind::RangeError});
        }
      }
      if (config.measures.empty()) {
        throw make_error(env,
                         {codes::kInvalidArg, "Expected measures to name at least one measure", ErrorKind::RangeError});
      }
    }
    Napi::Value threshold = options.Get("rbfThreshold");
    if (!threshold.IsUndefined()) {
      const double value = threshold.IsNumber() ? threshold.As<Napi::Number>().DoubleValue() : -1.0;
      if (!(value > 0) || !std::isfinite(value)) {
        throw make_error(
            env, {codes::kInvalidArg, "Expected rbfThreshold to be a positive finite number", ErrorKind::RangeError});
      }
      config.rbf_threshold = value;
    }
    config.sigmas1 = sigmas_from_js(env, options.Get("sigmas1"), "sigmas1");
    config.sigmas2 = sigmas_from_js(env, options.Get("sigmas2"), "sigmas2");
    engine_ = std::make_shared<CKAEngine>(std::move(model1), std::move(model2), std::move(config));
  });
}

NativeCKA::~NativeCKA() {
  if (reported_bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

void NativeCKA::ReportFullBytes(Napi::Env env, int64_t bytes) {
  if (bytes != reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, bytes - reported_bytes_);
  reported_bytes_ = bytes;
}

void NativeCKA::RequireIdle(Napi::Env env, const char* what) const {
  if (busy_) {
    throw make_error(env, {codes::kBusy,
                           std::string("Cannot ") + what +
                               " while a batch of this comparison is still running; await compare() first",
                           ErrorKind::Error});
  }
}

Napi::Value NativeCKA::Step(const Napi::CallbackInfo& info) { return RunBatch(info, false); }

Napi::Value NativeCKA::Calibrate(const Napi::CallbackInfo& info) { return RunBatch(info, true); }

namespace {

Napi::Object outcome_to_js(Napi::Env env, const StepOutcome& outcome) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("n", static_cast<double>(outcome.n));
  out.Set("skipped", outcome.skipped);
  if (outcome.skipped) out.Set("skipReason", outcome.skip_reason);
  out.Set("warnings", strings_to_js(env, outcome.warnings));
  out.Set("leftOut", left_out_to_js(env, outcome.left_out));
  return out;
}

}  // namespace

Napi::Value NativeCKA::RunBatch(const Napi::CallbackInfo& info, bool calibrate) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, calibrate ? "calibrate" : "start a batch");
    // Calibration runs the stream's batch 0 (its σ), adding nothing.
    const std::string label = "batch " + std::to_string(calibrate ? 0 : engine_->steps());
    std::vector<at::Tensor> inputs1 = inputs_from_js(info[0], label + " of data 1");
    const bool same = info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined();
    std::vector<at::Tensor> inputs2 = same ? std::vector<at::Tensor>() : inputs_from_js(info[1], label + " of data 2");
    std::shared_ptr<CKAEngine> engine = engine_;
    engine->arm();
    busy_ = true;
    Ref();
    return PromiseWorker<StepOutcome>::Start(
        env,
        [engine, inputs1 = std::move(inputs1), inputs2 = std::move(inputs2), same, calibrate] {
          return calibrate ? engine->calibrate(inputs1, same ? nullptr : &inputs2)
                           : engine->step(inputs1, same ? nullptr : &inputs2);
        },
        [](Napi::Env env, StepOutcome& outcome) -> Napi::Value { return outcome_to_js(env, outcome); },
        [this] {
          busy_ = false;
          Unref();
        });
  });
}

namespace {

struct StepsResult {
  std::vector<StepOutcome> outcomes;
  std::optional<ErrorInfo> error;
};

}  // namespace

// steps([[inputs1, inputs2 | null], ...]): the batches, several in flight at
// once, added in order; resolves to { outcomes, error } where `outcomes`
// are the batches added or skipped before `error` (null when none failed).
Napi::Value NativeCKA::Steps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "start a batch");
    if (!info[0].IsArray()) throw type_error(env, "Expected an array of batches");
    const Napi::Array list = info[0].As<Napi::Array>();
    std::vector<BatchInput> batches;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const std::string label = "batch " + std::to_string(engine_->steps() + static_cast<int64_t>(i));
      const Napi::Value entry = list.Get(i);
      if (!entry.IsArray()) throw type_error(env, "Expected " + label + " to be [inputs1, inputs2 | null]");
      const Napi::Array pair = entry.As<Napi::Array>();
      BatchInput batch;
      batch.inputs1 = inputs_from_js(pair.Get(0u), label + " of data 1");
      const Napi::Value second = pair.Get(1u);
      batch.has_inputs2 = !(second.IsNull() || second.IsUndefined());
      if (batch.has_inputs2) batch.inputs2 = inputs_from_js(second, label + " of data 2");
      batches.push_back(std::move(batch));
    }
    std::shared_ptr<CKAEngine> engine = engine_;
    engine->arm();
    busy_ = true;
    Ref();
    return PromiseWorker<StepsResult>::Start(
        env,
        [engine, batches = std::move(batches)] {
          StepsResult result;
          std::exception_ptr error;
          result.outcomes = engine->steps(batches, &error);
          if (error) {
            try {
              std::rethrow_exception(error);
            } catch (...) {
              result.error = capture_current_exception();
            }
          }
          return result;
        },
        [](Napi::Env env, StepsResult& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          Napi::Array outcomes = Napi::Array::New(env, result.outcomes.size());
          for (size_t i = 0; i < result.outcomes.size(); ++i) {
            outcomes.Set(static_cast<uint32_t>(i), outcome_to_js(env, result.outcomes[i]));
          }
          out.Set("outcomes", outcomes);
          out.Set("error", result.error ? make_error(env, *result.error).Value() : env.Null());
          return out;
        },
        [this] {
          busy_ = false;
          Unref();
        });
  });
}

Napi::Value NativeCKA::Trim(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "free the Gram buffers");
    engine_->trim();
    return env.Undefined();
  });
}

Napi::Value NativeCKA::Workers(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), engine_->workers());
}

Napi::Value NativeCKA::Result(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "read the result");
    const CKAResult result = engine_->result();
    Napi::Object out = Napi::Object::New(env);
    out.Set("rows1", strings_to_js(env, result.rows1));
    out.Set("rows2", strings_to_js(env, result.rows2));
    const size_t p = result.rows2.size();
    Napi::Array matrices = Napi::Array::New(env, result.matrices.size());
    for (size_t i = 0; i < result.matrices.size(); ++i) {
      Napi::Array matrix = Napi::Array::New(env, result.rows1.size());
      for (size_t a = 0; a < result.rows1.size(); ++a) {
        Napi::Array row = Napi::Array::New(env, p);
        for (size_t b = 0; b < p; ++b) {
          const auto& value = result.matrices[i][a * p + b];
          row.Set(static_cast<uint32_t>(b), value ? Napi::Value(Napi::Number::New(env, *value)) : env.Null());
        }
        matrix.Set(static_cast<uint32_t>(a), row);
      }
      matrices.Set(static_cast<uint32_t>(i), matrix);
    }
    out.Set("matrices", matrices);
    out.Set("sigma1", optional_numbers_to_js(env, result.sigma1));
    out.Set("sigma2", optional_numbers_to_js(env, result.sigma2));
    out.Set("self1", numbers_to_js(env, result.self1));
    out.Set("self2", numbers_to_js(env, result.self2));
    out.Set("samples", static_cast<double>(result.samples));
    out.Set("batches", static_cast<double>(result.batches));
    out.Set("skipped", static_cast<double>(result.skipped));
    out.Set("warnings", strings_to_js(env, result.warnings));
    return out;
  });
}

Napi::Value NativeCKA::Stats(const Napi::CallbackInfo& info) {
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
    out.Set("workers", stats.workers);
    Napi::Object times = Napi::Object::New(env);
    times.Set("forwardMs", stats.times.forward_ms);
    times.Set("tapMs", stats.times.tap_ms);
    times.Set("gramMs", stats.times.gram_ms);
    times.Set("pairMs", stats.times.pair_ms);
    times.Set("waitMs", stats.times.wait_ms);
    times.Set("wallMs", stats.times.wall_ms);
    times.Set("batches", static_cast<double>(stats.times.batches));
    out.Set("times", times);
    return out;
  });
}

Napi::Value NativeCKA::Cancel(const Napi::CallbackInfo& info) {
  engine_->cancel();
  return info.Env().Undefined();
}

Napi::Value NativeCKA::State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "save the state");
    const EngineState state = engine_->state();
    Napi::Object out = Napi::Object::New(env);
    out.Set("rows1", rows_to_js(env, state.rows1));
    out.Set("rows2", rows_to_js(env, state.rows2));
    out.Set("xy", doubles_to_js(env, state.xy));
    out.Set("xx", doubles_to_js(env, state.xx));
    out.Set("yy", doubles_to_js(env, state.yy));
    out.Set("sigma1", doubles_to_js(env, state.sigma1));
    out.Set("sigma2", doubles_to_js(env, state.sigma2));
    out.Set("steps", static_cast<double>(state.steps));
    out.Set("batches", static_cast<double>(state.batches));
    out.Set("samples", static_cast<double>(state.samples));
    out.Set("skipped", static_cast<double>(state.skipped));
    return out;
  });
}

Napi::Value NativeCKA::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "restore a state");
    if (!info[0].IsObject()) throw state_error(env, "expected an object");
    Napi::Object object = info[0].As<Napi::Object>();
    EngineState state;
    state.rows1 = rows_from_js(env, object, "rows1");
    state.rows2 = rows_from_js(env, object, "rows2");
    state.xy = doubles_from_js(env, object, "xy");
    state.xx = doubles_from_js(env, object, "xx");
    state.yy = doubles_from_js(env, object, "yy");
    if (!object.Get("sigma1").IsUndefined()) state.sigma1 = doubles_from_js(env, object, "sigma1");
    if (!object.Get("sigma2").IsUndefined()) state.sigma2 = doubles_from_js(env, object, "sigma2");
    state.steps = count_from_js(env, object, "steps");
    state.batches = count_from_js(env, object, "batches");
    state.samples = count_from_js(env, object, "samples");
    state.skipped = count_from_js(env, object, "skipped");
    engine_->restore(state);
    return env.Undefined();
  });
}

Napi::Value NativeCKA::Reset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "reset the sums");
    engine_->reset();
    return env.Undefined();
  });
}

Napi::Value NativeCKA::Sigmas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("sigma1", doubles_to_js(env, engine_->sigma1()));
    out.Set("sigma2", doubles_to_js(env, engine_->sigma2()));
    return out;
  });
}

Napi::Value NativeCKA::Busy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), busy_); }

Napi::Value NativeCKA::FullAppend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "append a full-batch chunk");
    const std::string label = "chunk " + std::to_string(engine_->full_chunks());
    std::vector<at::Tensor> inputs1 = inputs_from_js(info[0], label + " of data 1");
    const bool same = info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined();
    std::vector<at::Tensor> inputs2 = same ? std::vector<at::Tensor>() : inputs_from_js(info[1], label + " of data 2");
    if (info.Length() < 3 || !info[2].IsNumber())
      throw type_error(env, "Expected the sample count of " + label + " to be a number");
    const double count = info[2].As<Napi::Number>().DoubleValue();
    if (!(count >= 1 && count <= 9007199254740991.0) || count != std::floor(count)) {
      throw invalid_option(env, "Expected the sample count of " + label + " to be a positive integer but received " +
                                    number_text(count));
    }
    engine_->full_append(inputs1, same ? nullptr : &inputs2, static_cast<int64_t>(count));
    ReportFullBytes(env, engine_->full_input_bytes());
    return env.Undefined();
  });
}

Napi::Value NativeCKA::FullRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "start a full-batch run");
    int64_t budget = 0;
    FullBatchSettings settings = full_settings_from_js(env, info[0], &budget);
    std::vector<std::string> ids;
    for (const FullMeasure measure : settings.measures) ids.emplace_back(full_measure_id(measure));
    std::shared_ptr<CKAEngine> engine = engine_;
    engine->arm();
    busy_ = true;
    Ref();
    return PromiseWorker<FullRunResult>::Start(
        env, [engine, settings = std::move(settings), budget] { return engine->full_run(settings, budget); },
        [ids](Napi::Env env, FullRunResult& result) -> Napi::Value { return full_result_to_js(env, result, ids); },
        [this] {
          busy_ = false;
          Unref();
        });
  });
}

Napi::Value NativeCKA::FullProgress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const tcka::FullProgress progress = engine_->full_progress();
    Napi::Object out = Napi::Object::New(env);
    out.Set("phase", progress.phase == FullPhase::kForward    ? "forward"
                     : progress.phase == FullPhase::kMeasures ? "measures"
                                                              : "idle");
    out.Set("done", static_cast<double>(progress.done));
    out.Set("total", static_cast<double>(progress.total));
    return out;
  });
}

Napi::Value NativeCKA::FullClear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    RequireIdle(env, "clear the full-batch chunks");
    engine_->full_clear();
    ReportFullBytes(env, 0);
    return env.Undefined();
  });
}

}  // namespace tcka::addon
