#include "convert.h"

#include <ATen/ops/empty.h>

#include <cstring>

#include "js_errors.h"

namespace tcka::addon {
namespace {

at::ScalarType scalar_type_of(napi_typedarray_type type) {
  switch (type) {
    case napi_float32_array: return at::kFloat;
    case napi_float64_array: return at::kDouble;
    case napi_int32_array: return at::kInt;
    case napi_bigint64_array: return at::kLong;
    case napi_uint8_array: return at::kByte;
    default: return at::ScalarType::Undefined;
  }
}

}  // namespace

at::Tensor tensor_from_js(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throw type_error(env, "Expected " + what + " to be a tensor-like { data, shape }");
  Napi::Object object = value.As<Napi::Object>();
  Napi::Value data = object.Get("data");
  Napi::Value shape = object.Get("shape");
  if (!data.IsTypedArray() || !shape.IsArray()) {
    throw type_error(env, "Expected " + what + " to be a tensor-like { data: TypedArray, shape: number[] }");
  }
  Napi::TypedArray array = data.As<Napi::TypedArray>();
  const at::ScalarType dtype = scalar_type_of(array.TypedArrayType());
  if (dtype == at::ScalarType::Undefined) {
    throw type_error(env, "Expected the data of " + what +
                              " to be a Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array");
  }
  Napi::Array dims = shape.As<Napi::Array>();
  std::vector<int64_t> sizes;
  int64_t count = 1;
  for (uint32_t i = 0; i < dims.Length(); ++i) {
    Napi::Value dim = dims.Get(i);
    const double d = dim.IsNumber() ? dim.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != static_cast<double>(static_cast<int64_t>(d)) || d > 9.0e15) {
      throw make_error(env, {codes::kInvalidBatch, "Expected the shape of " + what + " to hold non-negative integers",
                             ErrorKind::RangeError});
    }
    sizes.push_back(static_cast<int64_t>(d));
    if (sizes.back() > 0 && count > static_cast<int64_t>(9.0e15) / sizes.back()) {
      throw make_error(
          env, {codes::kInvalidBatch, "The shape of " + what + " holds too many elements", ErrorKind::RangeError});
    }
    count *= sizes.back();
  }
  if (count != static_cast<int64_t>(array.ElementLength())) {
    throw make_error(env, {codes::kInvalidBatch,
                           "The shape of " + what + " holds " + std::to_string(count) + " elements but its data has " +
                               std::to_string(array.ElementLength()),
                           ErrorKind::RangeError});
  }
  at::Tensor tensor = at::empty(sizes, at::TensorOptions().dtype(dtype));
  const uint8_t* source = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  if (count > 0) std::memcpy(tensor.data_ptr(), source, array.ByteLength());
  return tensor;
}

std::vector<at::Tensor> inputs_from_js(const Napi::Value& value, const std::string& what) {
  std::vector<at::Tensor> inputs;
  if (value.IsArray()) {
    Napi::Array array = value.As<Napi::Array>();
    if (array.Length() == 0) throw type_error(value.Env(), "Expected " + what + " to hold at least one tensor");
    for (uint32_t i = 0; i < array.Length(); ++i) {
      inputs.push_back(tensor_from_js(array.Get(i), "input " + std::to_string(i) + " of " + what));
    }
  } else {
    inputs.push_back(tensor_from_js(value, what));
  }
  return inputs;
}

Napi::Object tensor_to_js(Napi::Env env, const at::Tensor& input) {
  at::Tensor tensor = input.cpu();
  std::string dtype;
  switch (tensor.scalar_type()) {
    case at::kFloat: dtype = "float32"; break;
    case at::kDouble: dtype = "float64"; break;
    case at::kInt: dtype = "int32"; break;
    case at::kLong: dtype = "int64"; break;
    case at::kByte: dtype = "uint8"; break;
    case at::kBool:
      tensor = tensor.to(at::kByte);
      dtype = "uint8";
      break;
    case at::kChar:
    case at::kShort:
      tensor = tensor.to(at::kInt);
      dtype = "int32";
      break;
    default:
      tensor = tensor.to(at::kFloat);
      dtype = "float32";
      break;
  }
  tensor = tensor.contiguous();
  const size_t bytes = static_cast<size_t>(tensor.numel()) * tensor.element_size();
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(buffer.Data(), tensor.data_ptr(), bytes);
  const size_t length = static_cast<size_t>(tensor.numel());
  Napi::Value data;
  if (dtype == "float32")
    data = Napi::Float32Array::New(env, length, buffer, 0);
  else if (dtype == "float64")
    data = Napi::Float64Array::New(env, length, buffer, 0);
  else if (dtype == "int32")
    data = Napi::Int32Array::New(env, length, buffer, 0);
  else if (dtype == "int64")
    data = Napi::BigInt64Array::New(env, length, buffer, 0);
  else
    data = Napi::Uint8Array::New(env, length, buffer, 0);
  Napi::Array shape = Napi::Array::New(env, static_cast<size_t>(tensor.dim()));
  for (int64_t i = 0; i < tensor.dim(); ++i)
    shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(tensor.size(i))));
  Napi::Object out = Napi::Object::New(env);
  out.Set("data", data);
  out.Set("shape", shape);
  out.Set("dtype", dtype);
  return out;
}

std::vector<std::string> strings_from_js(const Napi::Value& value, const std::string& what) {
  std::vector<std::string> out;
  if (value.IsUndefined() || value.IsNull()) return out;
  if (!value.IsArray()) throw type_error(value.Env(), "Expected " + what + " to be an array of strings");
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsString()) throw type_error(value.Env(), "Expected " + what + " to be an array of strings");
    out.push_back(item.As<Napi::String>().Utf8Value());
  }
  return out;
}

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), values[i]);
  return out;
}

}  // namespace tcka::addon
