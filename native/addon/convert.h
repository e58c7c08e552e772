// Tensors across the JS boundary. JS batches arrive as plain objects
// { data: TypedArray, shape: number[] } (ts/tensor.ts builds them) and are
// copied into libtorch tensors on the main thread, so no worker ever reads
// JS memory. Features go back the same way.
#pragma once

#include <ATen/core/Tensor.h>
#include <napi.h>

#include <string>
#include <vector>

namespace tcka::addon {

// `what` names the value in error messages ("batch 3 of data 1").
at::Tensor tensor_from_js(const Napi::Value& value, const std::string& what);

// A batch: one tensor-like, or an array of them for several inputs.
std::vector<at::Tensor> inputs_from_js(const Napi::Value& value, const std::string& what);

// A CPU tensor as { data, shape, dtype }; half, bfloat16 and bool become
// float32 and uint8.
Napi::Object tensor_to_js(Napi::Env env, const at::Tensor& tensor);

std::vector<std::string> strings_from_js(const Napi::Value& value, const std::string& what);

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& values);

}  // namespace tcka::addon
