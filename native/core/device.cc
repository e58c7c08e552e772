#include "device.h"

#include <sched.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <thread>

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

namespace tcka {
namespace {

// The quota of a cgroup v2 cpu.max ("max 100000" or "200000 100000") or of
// v1's two files, in cores (rounded up); 0 when there is none.
int cgroup_quota_cores() {
  auto cores = [](double quota, double period) {
    return quota > 0 && period > 0 ? static_cast<int>(std::ceil(quota / period)) : 0;
  };
  std::ifstream v2("/sys/fs/cgroup/cpu.max");
  if (v2) {
    std::string quota;
    double period = 0;
    if (v2 >> quota >> period && quota != "max") {
      try {
        return cores(std::stod(quota), period);
      } catch (...) {
        return 0;
      }
    }
    return 0;
  }
  std::ifstream quota_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), period_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (quota_file >> quota && period_file >> period) return cores(quota, period);
  return 0;
}

}  // namespace

int usable_cores() {
  int count = 0;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) count = CPU_COUNT(&set);
#endif
  if (count <= 0) count = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int quota = cgroup_quota_cores();
  if (quota > 0) count = std::min(count, quota);
  return std::max(1, count);
}

}  // namespace tcka
