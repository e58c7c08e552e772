// Errors raised by the libtorch core. Each carries a stable code that the
// Node side turns into `error.code`; the kind picks Error, TypeError or
// RangeError there. No N-API types here: the core also builds as plain C++.
#pragma once

#include <stdexcept>
#include <string>

#include "error_codes.h"  // codes::kModelNotFound, ...: made from ts/util/errors.ts

namespace tcka {

enum class ErrorKind { Error, TypeError, RangeError };

class CKAError : public std::runtime_error {
 public:
  CKAError(std::string code, const std::string& message, ErrorKind kind = ErrorKind::Error)
      : std::runtime_error(message), code_(std::move(code)), kind_(kind) {}

  const std::string& code() const noexcept { return code_; }
  ErrorKind kind() const noexcept { return kind_; }

 private:
  std::string code_;
  ErrorKind kind_;
};

// libtorch messages can run to pages (TorchScript tracebacks, C++ frames).
// Keep the first `max_lines` lines, which say what went wrong.
std::string shorten_message(const std::string& message, size_t max_lines = 12);

// The error a TorchScript interpreter failure ends with ("RuntimeError: mat1
// and mat2 shapes cannot be multiplied ..."), without the tracebacks before it.
// Other messages are returned shortened.
std::string interpreter_error(const std::string& message);

}  // namespace tcka
