// Parsing and checking device strings: "cpu", "cuda", "cuda:N".
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace tcka {

// Throws CKAError (ERR_INVALID_DEVICE, ERR_DEVICE_UNAVAILABLE) with a message
// that says what was asked for and what this build and machine offer.
c10::Device parse_device(const std::string& spec);

std::string device_string(const c10::Device& device);

}  // namespace tcka

namespace tcka {

// The cores this process may keep busy: the CPUs of its affinity mask
// (taskset, cpusets), capped by its cgroup's CPU quota (cgroup v2 cpu.max or
// v1 cpu.cfs_quota_us), at least 1. Not hardware_concurrency(): under
// `taskset -c 0` that still counts every core of the machine.
int usable_cores();

}  // namespace tcka
