#include "group_wrap.h"

#include <cmath>

#include "addon_data.h"
#include "js_errors.h"
#include "workers.h"

namespace tcka::addon {

namespace {

std::string string_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throw type_error(info.Env(), std::string("Expected ") + what);
  return info[i].As<Napi::String>().Utf8Value();
}

int64_t integer_field(Napi::Env env, const Napi::Object& object, const char* key, int64_t min, int64_t max) {
  Napi::Value value = object.Get(key);
  if (!value.IsNumber()) throw type_error(env, std::string("Expected a number for ") + key);
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::floor(v) != v || v < static_cast<double>(min) || v > static_cast<double>(max)) {
    throw make_error(env, {codes::kDistConfig,
                           std::string(key) + " must be an integer from " + std::to_string(min) + " to " +
                               std::to_string(max) + ", got " + value.ToString().Utf8Value(),
                           ErrorKind::RangeError});
  }
  return static_cast<int64_t>(v);
}

}  // namespace

Napi::Function NativeGroup::Init(Napi::Env env) {
  return DefineClass(
      env, "NativeGroup",
      {InstanceMethod<&NativeGroup::Set>("set"), InstanceMethod<&NativeGroup::Get>("get"),
       InstanceMethod<&NativeGroup::Add>("add"), InstanceMethod<&NativeGroup::ConnectBackend>("connectBackend"),
       InstanceMethod<&NativeGroup::Allreduce>("allreduce"), InstanceMethod<&NativeGroup::Close>("close")});
}

NativeGroup::NativeGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGroup>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw type_error(info.Env(), "NativeGroup cannot be constructed directly; use compare() with `distributed`");
  }
  group_ = *info[0].As<Napi::External<std::shared_ptr<ProcessGroup>>>().Data();
}

Napi::Value NativeGroup::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw type_error(env, "Expected connectGroup(config: object)");
    Napi::Object object = info[0].As<Napi::Object>();
    GroupConfig config;
    config.world_size = static_cast<int>(integer_field(env, object, "worldSize", 1, 1 << 20));
    config.rank = static_cast<int>(integer_field(env, object, "rank", 0, config.world_size - 1));
    config.master_port = static_cast<int>(integer_field(env, object, "masterPort", 1, 65535));
    config.timeout = std::chrono::milliseconds(integer_field(env, object, "timeoutMs", 1, int64_t{1} << 40));
    config.cuda_device = static_cast<int>(integer_field(env, object, "cudaDevice", -1, 1 << 16));
    auto text = [&](const char* key) {
      Napi::Value value = object.Get(key);
      if (!value.IsString()) throw type_error(env, std::string("Expected a string for ") + key);
      return value.As<Napi::String>().Utf8Value();
    };
    config.master_addr = text("masterAddr");
    config.backend = text("backend");
    config.ifname = text("ifname");
    config.local_addr = text("localAddr");
    return PromiseWorker<std::shared_ptr<ProcessGroup>>::Start(
        env, [config] { return std::make_shared<ProcessGroup>(config); },
        [](Napi::Env env, std::shared_ptr<ProcessGroup>& group) -> Napi::Value {
          auto external = Napi::External<std::shared_ptr<ProcessGroup>>::New(env, &group);
          return AddonData::Get(env).group_constructor.New({external});
        });
  });
}

Napi::Value NativeGroup::Set(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string key = string_arg(info, 0, "set(key: string, value: string)");
    const std::string value = string_arg(info, 1, "set(key: string, value: string)");
    auto group = group_;
    return StartVoid(env, [group, key, value] { group->set(key, value); });
  });
}

Napi::Value NativeGroup::Get(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsArray()) throw type_error(env, "Expected get(keys: string[])");
    Napi::Array array = info[0].As<Napi::Array>();
    std::vector<std::string> keys;
    for (uint32_t i = 0; i < array.Length(); ++i) {
      Napi::Value key = array.Get(i);
      if (!key.IsString()) throw type_error(env, "Expected get(keys: string[])");
      keys.push_back(key.As<Napi::String>().Utf8Value());
    }
    auto group = group_;
    using Values = std::vector<std::optional<std::string>>;
    return PromiseWorker<Values>::Start(
        env, [group, keys] { return group->get(keys); },
        [](Napi::Env env, Values& values) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, values.size());
          for (size_t i = 0; i < values.size(); ++i) {
            out.Set(static_cast<uint32_t>(i), values[i] ? Napi::String::New(env, *values[i]) : env.Null());
          }
          return out;
        });
  });
}

Napi::Value NativeGroup::Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string key = string_arg(info, 0, "add(key: string, delta: number)");
    if (info.Length() < 2 || !info[1].IsNumber()) throw type_error(env, "Expected add(key: string, delta: number)");
    const auto delta = info[1].As<Napi::Number>().Int64Value();
    auto group = group_;
    return PromiseWorker<int64_t>::Start(
        env, [group, key, delta] { return group->add(key, delta); },
        [](Napi::Env env, int64_t& value) -> Napi::Value {
          return Napi::Number::New(env, static_cast<double>(value));
        });
  });
}

Napi::Value NativeGroup::ConnectBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto group = group_;
    return StartVoid(env, [group] { group->connect_backend(); });
  });
}

Napi::Value NativeGroup::Allreduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      throw type_error(env, "Expected allreduce(values: Float64Array)");
    }
    Napi::Float64Array array = info[0].As<Napi::Float64Array>();
    std::vector<double> values(array.Data(), array.Data() + array.ElementLength());
    auto group = group_;
    return PromiseWorker<std::vector<double>>::Start(
        env,
        [group, values]() mutable {
          group->allreduce_sum(values);
          return values;
        },
        [](Napi::Env env, std::vector<double>& values) -> Napi::Value {
          Napi::Float64Array out = Napi::Float64Array::New(env, values.size());
          std::copy(values.begin(), values.end(), out.Data());
          return out;
        });
  });
}

Napi::Value NativeGroup::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const char* usage = "close(finishedKey: string, lingerMs: number, expected: number)";
    const std::string key = string_arg(info, 0, usage);
    if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
      throw type_error(env, std::string("Expected ") + usage);
    const auto linger = std::chrono::milliseconds(std::max<int64_t>(0, info[1].As<Napi::Number>().Int64Value()));
    const int64_t expected = info[2].As<Napi::Number>().Int64Value();
    auto group = group_;
    return StartVoid(env, [group, key, linger, expected] { group->close(key, linger, expected); });
  });
}

}  // namespace tcka::addon
