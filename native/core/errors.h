// Errors raised by the libtorch core. Each carries a stable code that the
// Node side turns into `error.code`; the kind picks Error, TypeError or
// RangeError there. No N-API types here: the core also builds as plain C++.
#pragma once

#include <stdexcept>
#include <string>

namespace tcka {

enum class ErrorKind { Error, TypeError, RangeError };

class CkaError : public std::runtime_error {
 public:
  CkaError(std::string code, const std::string& message, ErrorKind kind = ErrorKind::Error)
      : std::runtime_error(message), code_(std::move(code)), kind_(kind) {}

  const std::string& code() const noexcept { return code_; }
  ErrorKind kind() const noexcept { return kind_; }

 private:
  std::string code_;
  ErrorKind kind_;
};

// Error codes shared with ts/errors.ts. Keep the two lists in step.
namespace codes {
inline constexpr const char* kModelNotFound = "ERR_MODEL_NOT_FOUND";
inline constexpr const char* kModelLoad = "ERR_MODEL_LOAD";
inline constexpr const char* kModelUnreadable = "ERR_MODEL_UNREADABLE";
inline constexpr const char* kModelEmpty = "ERR_MODEL_EMPTY";
inline constexpr const char* kModelFormat = "ERR_MODEL_FORMAT";
inline constexpr const char* kModelNotTorchScript = "ERR_MODEL_NOT_TORCHSCRIPT";
inline constexpr const char* kModelVersion = "ERR_MODEL_VERSION";
inline constexpr const char* kInvalidDevice = "ERR_INVALID_DEVICE";
inline constexpr const char* kDeviceUnavailable = "ERR_DEVICE_UNAVAILABLE";
inline constexpr const char* kDeviceMismatch = "ERR_DEVICE_MISMATCH";
inline constexpr const char* kUnknownLayer = "ERR_UNKNOWN_LAYER";
inline constexpr const char* kDuplicateLayer = "ERR_DUPLICATE_LAYER";
inline constexpr const char* kNoTensorOutput = "ERR_NO_TENSOR_OUTPUT";
inline constexpr const char* kLayerNotCallable = "ERR_LAYER_NOT_CALLABLE";
inline constexpr const char* kLayerNotRun = "ERR_LAYER_NOT_RUN";
inline constexpr const char* kLayerCallCount = "ERR_LAYER_CALL_COUNT";
inline constexpr const char* kLayerShape = "ERR_LAYER_SHAPE";
inline constexpr const char* kNoLayers = "ERR_NO_LAYERS";
inline constexpr const char* kForwardFailed = "ERR_FORWARD_FAILED";
inline constexpr const char* kBatchMismatch = "ERR_BATCH_SIZE_MISMATCH";
inline constexpr const char* kInvalidBatch = "ERR_INVALID_BATCH";
inline constexpr const char* kNonFinite = "ERR_NON_FINITE";
inline constexpr const char* kNoData = "ERR_NO_DATA";
inline constexpr const char* kDisposed = "ERR_DISPOSED";
inline constexpr const char* kBusy = "ERR_BUSY";
inline constexpr const char* kInvalidArg = "ERR_INVALID_ARG";
inline constexpr const char* kAborted = "ABORT_ERR";
inline constexpr const char* kDistConfig = "ERR_DIST_CONFIG";
inline constexpr const char* kDistConnect = "ERR_DIST_CONNECT";
inline constexpr const char* kDistTimeout = "ERR_DIST_TIMEOUT";
inline constexpr const char* kDistMismatch = "ERR_DIST_MISMATCH";
inline constexpr const char* kDistRankFailed = "ERR_DIST_RANK_FAILED";
inline constexpr const char* kDistUnavailable = "ERR_DIST_UNAVAILABLE";
inline constexpr const char* kInternal = "ERR_INTERNAL";
}  // namespace codes

// libtorch messages can run to pages (TorchScript tracebacks, C++ frames).
// Keep the first `max_lines` lines, which say what went wrong.
std::string shorten_message(const std::string& message, size_t max_lines = 12);

// The error a TorchScript interpreter failure ends with ("RuntimeError: mat1
// and mat2 shapes cannot be multiplied ..."), without the tracebacks before it.
// Other messages are returned shortened.
std::string interpreter_error(const std::string& message);

}  // namespace tcka
