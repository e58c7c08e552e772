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
