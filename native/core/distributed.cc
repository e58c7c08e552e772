#include "distributed.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <thread>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "errors.h"

// Gloo ships with every libtorch that has c10d (Debian's needs libgloo-dev for
// its headers; a pytorch.org libtorch and a Python torch carry them).
#if __has_include(<gloo/algorithm.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define TCKA_HAVE_GLOO 1
#endif

// NCCL: CMake sets TCKA_WITH_NCCL for a CUDA libtorch with nccl.h found.
#ifdef TCKA_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace tcka {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool contains(const std::string& haystack, const char* needle) { return haystack.find(needle) != std::string::npos; }

std::string seconds(std::chrono::milliseconds ms) {
  const double s = static_cast<double>(ms.count()) / 1000.0;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, s == static_cast<int64_t>(s) ? "%.0f s" : "%.1f s", s);
  return buffer;
}

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return shorten_message(c10->what_without_backtrace(), 3);
  return shorten_message(e.what(), 3);
}

}  // namespace

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
#ifdef TCKA_HAVE_GLOO
  out.emplace_back("gloo");
#endif
#ifdef TCKA_WITH_NCCL
  out.emplace_back("nccl");
#endif
  return out;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
#ifdef TCKA_HAVE_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef TCKA_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  bool closed = false;
};

ProcessGroup::ProcessGroup(GroupConfig config) : config_(std::move(config)), impl_(std::make_unique<Impl>()) {
  const auto backends = available_backends();
  if (std::find(backends.begin(), backends.end(), config_.backend) == backends.end()) {
    std::string have;
    for (const auto& b : backends) have += (have.empty() ? "" : ", ") + b;
    throw CKAError(codes::kDistUnavailable,
                   "This build of torch-cka has no '" + config_.backend +
                       "' backend (it has: " + (have.empty() ? "none" : have) +
                       "). Rebuild against a libtorch with it: Gloo needs its headers (Debian: apt-get install "
                       "libgloo-dev); NCCL needs a CUDA libtorch and nccl.h, built with npm run build:cmake");
  }
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(config_.master_port);
  options.isServer = config_.rank == 0;
  options.numWorkers = c10::nullopt;
  options.waitWorkers = false;
  options.timeout = config_.timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(config_.master_addr, options);
  } catch (const std::exception& e) {
    const std::string text = message_of(e);
    const std::string where = config_.master_addr + ":" + std::to_string(config_.master_port);
    const std::string low = lower(text);
    if (config_.rank == 0 &&
        (contains(low, "address already in use") || contains(low, "failed to listen") || contains(low, "eaddrinuse"))) {
      throw CKAError(codes::kDistConnect, "Rank 0 could not serve the rendezvous store on port " +
                                              std::to_string(config_.master_port) +
                                              ": it is in use (another job?); choose another MASTER_PORT / "
                                              "--master-port. (" +
                                              text + ")");
    }
    if (contains(low, "timed out") || contains(low, "timeout")) {
      throw CKAError(codes::kDistTimeout, "Rank " + std::to_string(config_.rank) +
                                              " could not reach the rendezvous store of rank 0 at " + where +
                                              " within " + seconds(config_.timeout) +
                                              ": rank 0 never started, or MASTER_ADDR / MASTER_PORT are wrong");
    }
    throw CKAError(codes::kDistConnect, "Rank " + std::to_string(config_.rank) +
                                            " could not connect to the rendezvous store at " + where + ": " + text);
  }
}

ProcessGroup::~ProcessGroup() {
  try {
    impl_.reset();
  } catch (...) {
    // Destructors of sockets and threads; nothing to report to.
  }
}

void ProcessGroup::fail(const std::string& doing) const {
  std::string text;
  try {
    throw;
  } catch (const CKAError&) {
    throw;
  } catch (const std::exception& e) {
    text = message_of(e);
  } catch (...) {
    text = "unknown error";
  }
  const std::string low = lower(text);
  if (contains(low, "timed out") || contains(low, "timeout")) {
    throw CKAError(codes::kDistTimeout, "Rank " + std::to_string(config_.rank) + " timed out after " +
                                            seconds(config_.timeout) + " while " + doing +
                                            ": another rank died or hangs (" + text + ")");
  }
  if (contains(low, "connection") || contains(low, "broken pipe") || contains(low, "reset by peer") ||
      contains(low, "closed") || contains(low, "refused")) {
    throw CKAError(codes::kDistTimeout, "Rank " + std::to_string(config_.rank) + " lost its connection while " + doing +
                                            ": another rank died" +
                                            (config_.rank == 0 ? "" : " (rank 0 serves the store)") + " (" + text +
                                            ")");
  }
  throw CKAError(codes::kInternal, "c10d failed while " + doing + ": " + text);
}

void ProcessGroup::set(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw CKAError(codes::kDisposed, "The process group has been closed");
  try {
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  } catch (...) {
    fail("writing to the rendezvous store");
  }
}

std::vector<std::optional<std::string>> ProcessGroup::get(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw CKAError(codes::kDisposed, "The process group has been closed");
  std::vector<std::optional<std::string>> out;
  out.reserve(keys.size());
  try {
    for (const auto& key : keys) {
      if (!impl_->store->check({key})) {
        out.emplace_back(std::nullopt);
        continue;
      }
      const std::vector<uint8_t> value = impl_->store->get(key);
      out.emplace_back(std::string(value.begin(), value.end()));
    }
  } catch (...) {
    fail("reading the rendezvous store");
  }
  return out;
}

int64_t ProcessGroup::add(const std::string& key, int64_t delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw CKAError(codes::kDisposed, "The process group has been closed");
  try {
    return impl_->store->add(key, delta);
  } catch (...) {
    fail("updating the rendezvous store");
  }
}

void ProcessGroup::connect_backend() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw CKAError(codes::kDisposed, "The process group has been closed");
  try {
#ifdef TCKA_WITH_NCCL
    if (config_.backend == "nccl") {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = config_.timeout;
      impl_->nccl =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, config_.rank, config_.world_size, options);
      return;
    }
#endif
#ifdef TCKA_HAVE_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create(config_.timeout);
    if (!config_.ifname.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(config_.ifname));
    } else if (!config_.local_addr.empty()) {
      // The address this host reaches rank 0 from (the caller finds it): loopback on one host.
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(config_.local_addr));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 1;
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, config_.rank, config_.world_size, options);
#endif
  } catch (...) {
    fail("connecting the " + config_.backend + " backend to the other ranks");
  }
}

void ProcessGroup::allreduce_sum(std::vector<double>& values) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw CKAError(codes::kDisposed, "The process group has been closed");
  try {
    at::Tensor host = at::from_blob(values.data(), {static_cast<int64_t>(values.size())}, at::kDouble);
#ifdef TCKA_WITH_NCCL
    if (impl_->nccl) {
      std::vector<at::Tensor> tensors{host.to(at::Device(at::kCUDA, std::max(config_.cuda_device, 0)))};
      impl_->nccl->allreduce(tensors)->wait(config_.timeout);
      host.copy_(tensors[0].cpu());
      return;
    }
#endif
#ifdef TCKA_HAVE_GLOO
    if (impl_->gloo) {
      std::vector<at::Tensor> tensors{host};
      impl_->gloo->allreduce(tensors)->wait(config_.timeout);
      return;
    }
#endif
    throw CKAError(codes::kInternal, "allreduce_sum() before connect_backend()");
  } catch (...) {
    fail("summing the results of all ranks (all-reduce)");
  }
}

void ProcessGroup::close(const std::string& finished_key, std::chrono::milliseconds linger, int64_t expected) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) return;
  impl_->closed = true;
  try {
    if (config_.rank == 0 && !finished_key.empty()) {
      const auto deadline = std::chrono::steady_clock::now() + linger;
      while (impl_->store->add(finished_key, 0) < expected && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  } catch (...) {
    // The others are gone already.
  }
  try {
#ifdef TCKA_WITH_NCCL
    impl_->nccl.reset();
#endif
#ifdef TCKA_HAVE_GLOO
    impl_->gloo.reset();
#endif
    impl_->store.reset();
  } catch (...) {
  }
}

}  // namespace tcka
