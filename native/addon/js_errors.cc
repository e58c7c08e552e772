#include "js_errors.h"

#include <c10/util/Exception.h>

namespace tcka::addon {

ErrorInfo capture_current_exception() {
  try {
    throw;
  } catch (const CKAError& e) {
    return {e.code(), e.what(), e.kind()};
  } catch (const c10::Error& e) {
    return {codes::kInternal, shorten_message(e.what_without_backtrace()), ErrorKind::Error};
  } catch (const std::bad_alloc&) {
    return {codes::kInternal, "Out of memory", ErrorKind::Error};
  } catch (const std::exception& e) {
    return {codes::kInternal, shorten_message(e.what()), ErrorKind::Error};
  } catch (...) {
    return {codes::kInternal, "Unknown native error", ErrorKind::Error};
  }
}

Napi::Error make_error(Napi::Env env, const ErrorInfo& info) {
  Napi::Error error = info.kind == ErrorKind::TypeError    ? Napi::TypeError::New(env, info.message)
                      : info.kind == ErrorKind::RangeError ? Napi::RangeError::New(env, info.message)
                                                           : Napi::Error::New(env, info.message);
  error.Set("code", Napi::String::New(env, info.code));
  return error;
}

Napi::Error type_error(Napi::Env env, const std::string& message) {
  return make_error(env, {codes::kInvalidArg, message, ErrorKind::TypeError});
}

}  // namespace tcka::addon
