#include "device.h"

#include <torch/cuda.h>

#include <cctype>

#include "errors.h"

namespace tcka {

c10::Device parse_device(const std::string& spec) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  const std::string cuda = "cuda";
  if (spec.rfind(cuda, 0) != 0) {
    throw CKAError(codes::kInvalidDevice, "Expected device to be 'cpu', 'cuda' or 'cuda:N' but received '" + spec + "'",
                   ErrorKind::RangeError);
  }
  int index = 0;
  if (spec.size() > cuda.size()) {
    std::string digits = spec.substr(cuda.size() + 1);
    bool ok = spec[cuda.size()] == ':' && !digits.empty() && digits.size() <= 3;
    for (char c : digits) ok = ok && std::isdigit(static_cast<unsigned char>(c));
    if (!ok) {
      throw CKAError(codes::kInvalidDevice,
                     "Expected device to be 'cpu', 'cuda' or 'cuda:N' but received '" + spec + "'",
                     ErrorKind::RangeError);
    }
    index = std::stoi(digits);
  }
  if (!torch::cuda::is_available()) {
    throw CKAError(codes::kDeviceUnavailable,
                   "Device '" + spec +
                       "' was requested but CUDA is not available: the linked libtorch is built "
                       "without CUDA or no GPU is visible. Use device 'cpu', or rebuild torch-cka "
                       "against a CUDA libtorch (LIBTORCH=/path/to/libtorch npm rebuild torch-cka).");
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    throw CKAError(codes::kDeviceUnavailable, "Device '" + spec + "' does not exist: this machine has " +
                                                  std::to_string(count) + " CUDA device(s)");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::string device_string(const c10::Device& device) { return device.str(); }

}  // namespace tcka
