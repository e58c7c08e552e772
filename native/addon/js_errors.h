// Turning core errors into JS errors that carry a stable `code`, and the
// catch-everything wrapper every entry point goes through.
#pragma once

#include <napi.h>

#include <string>

#include "errors.h"

namespace tcka::addon {

// What a failed worker keeps until it is back on the main thread.
struct ErrorInfo {
  std::string code;
  std::string message;
  ErrorKind kind = ErrorKind::Error;
};

// Catches CKAError, c10::Error (backtrace stripped), std::exception and
// anything else from the current exception.
ErrorInfo capture_current_exception();

Napi::Error make_error(Napi::Env env, const ErrorInfo& info);

Napi::Error type_error(Napi::Env env, const std::string& message);

// Runs `body` and turns any C++ exception into a thrown JS error.
template <typename Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, capture_current_exception());
  }
}

}  // namespace tcka::addon
