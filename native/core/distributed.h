// A c10d process group for sharded comparisons: the rendezvous store
// (c10d::TCPStore, served by rank 0) and a collective backend (Gloo on the
// CPU, NCCL for CUDA tensors where the libtorch has it) for the final
// all-reduce of the float64 sums. The protocol on top (who takes which batch,
// heartbeats, the start-up check) lives in ts/distributed.ts.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace tcka {

struct GroupConfig {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{300000};
  std::string backend = "gloo";  // "gloo" or "nccl"
  int cuda_device = -1;          // NCCL: the rank's GPU (cuda:LOCAL_RANK)
  std::string ifname;            // Gloo: the network interface (GLOO_SOCKET_IFNAME); empty: by address
  std::string local_addr;        // Gloo without ifname: this host's address towards master_addr; empty: by host name
};

// The backends this build has, e.g. {"gloo"} or {"gloo", "nccl"}.
std::vector<std::string> available_backends();

class ProcessGroup {
 public:
  // Connects to the store: rank 0 serves it on master_port, the others
  // connect to master_addr:master_port, retrying until the timeout. Does not
  // wait for the other ranks (the caller's rendezvous does).
  explicit ProcessGroup(GroupConfig config);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  const GroupConfig& config() const { return config_; }

  // Store operations, one round trip each. get() does not block: nullopt for
  // a key that is not set.
  void set(const std::string& key, const std::string& value);
  std::vector<std::optional<std::string>> get(const std::vector<std::string>& keys);
  int64_t add(const std::string& key, int64_t delta);

  // Connects the collective backend. Every rank must call it: the ranks meet
  // through the store, within the timeout.
  void connect_backend();
  // Sums `values` over all ranks, in place: every rank gets the total.
  void allreduce_sum(std::vector<double>& values);

  // Closes the backend and the store. Rank 0 serves the store, so it first
  // waits (up to `linger`) until the counter `finished_key` reaches
  // `expected` (the ranks still alive): no rank loses the store while it
  // still needs it.
  void close(const std::string& finished_key, std::chrono::milliseconds linger, int64_t expected);

 private:
  struct Impl;
  [[noreturn]] void fail(const std::string& doing) const;

  GroupConfig config_;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
};

}  // namespace tcka
