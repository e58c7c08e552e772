// The full-batch members of CKAEngine (engine.h, docs/full-batch.md).
//
// The evaluation set arrives in chunks (the data's batches as they come). A
// run first plans the rows on chunk 0 exactly as the streaming engine's
// first batch does (left-out layers, views, shared tensors, one pass for the
// same model on the same data), which also tells each row's feature size d.
// It then makes every layer's N x N Gram block by block: each chunk's viewed
// feature is shifted by the mean r of chunk 0's (so that float32 keeps the
// spread of a layer far from the origin; centring removes r exactly), kept
// in float32 while its group is held, and multiplied with the held chunks.
// When the features of all chunks fit the memory budget there is one group
// and one forward pass per chunk; otherwise a group of chunks is held at a
// time and the chunks after it run again for the off-diagonal blocks. The
// Grams then go to compute_full_batch() (fullbatch.cc).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <limits>
#include <map>

#include "blas.h"
#include "device.h"
#include "engine.h"
#include "errors.h"

namespace tcka {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

int64_t tensors_bytes(const std::vector<at::Tensor>& tensors) {
  int64_t bytes = 0;
  for (const auto& t : tensors) bytes += t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
  return bytes;
}

std::string gib(int64_t bytes) {
  char text[48];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

std::string thousands(int64_t value) {
  std::string digits = std::to_string(value);
  for (int64_t i = static_cast<int64_t>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

// 3/4 of MemAvailable (/proc/meminfo), else of the physical memory.
int64_t default_budget() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  while (meminfo >> key) {
    if (key == "MemAvailable:") {
      int64_t kib = 0;
      if (meminfo >> kib && kib > 0) return kib / 4 * 3 * 1024;
      break;
    }
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) return static_cast<int64_t>(pages) * page / 4 * 3;
  return 4LL << 30;
}

// The discovery pass makes no Gram: a sink that is never called.
class NoFeatures : public FeatureSink {
 public:
  void on_feature(int64_t, const at::Tensor&, int64_t) noexcept override {}
};

// One side's state during a run: per unit (rows with one tensor and view
// share a unit), its Gram, dots and reference point, and the held features.
struct SideState {
  std::string label;
  const std::vector<Row>* rows = nullptr;
  std::vector<int64_t> unit_of;       // row -> unit
  std::vector<int64_t> leader;        // unit -> its first row
  std::vector<int64_t> features;      // d per unit
  std::vector<at::Tensor> reference;  // (d) float32 on the device: the mean of chunk 0's feature
  std::vector<double> ref_norm2;
  std::vector<at::Tensor> grams;              // (N, N) float32: (X - r)(X - r)ᵀ
  std::vector<at::Tensor> dots;               // (N) float64: (xᵢ - r)·r
  std::vector<std::vector<at::Tensor>> held;  // per unit, per chunk: (n_c, d) float32 shifted, while its group is held
  int64_t units() const { return static_cast<int64_t>(features.size()); }
};

// Where the chunks lie in the set, and which group is held.
struct Layout {
  std::vector<int64_t> offsets, sizes;
  int64_t first = 0, last = 0;  // the held group's chunks
  bool first_group = true;      // the dots are written once, in the first group's passes
};

// One side of one chunk's pass: each unit's feature is checked, shifted,
// stored when its chunk is in the held group, and multiplied with the held
// chunks before it (Gram blocks and their transposes).
class BlockSink : public FeatureSink {
 public:
  BlockSink(SideState& state, const Layout& layout, int64_t chunk)
      : state_(state),
        layout_(layout),
        chunk_(chunk),
        offset_(layout.offsets[static_cast<size_t>(chunk)]),
        n_(layout.sizes[static_cast<size_t>(chunk)]),
        delivered_(static_cast<size_t>(state.units()), false) {}

  void on_feature(int64_t row, const at::Tensor& feature, int64_t same) noexcept override {
    if (error_) return;
    try {
      take(row, feature, same);
    } catch (...) {
      error_ = std::current_exception();
    }
  }

  // The first error a feature met (after the collector's own check).
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }
  double ms() const { return ms_; }

 private:
  std::string where() const {
    return "chunk " + std::to_string(chunk_) + " of the full-batch set (samples " + std::to_string(offset_) + " to " +
           std::to_string(offset_ + n_ - 1) + ")";
  }
  std::string row_name(int64_t row) const { return (*state_.rows)[static_cast<size_t>(row)].name; }

  void take(int64_t row, const at::Tensor& feature, int64_t same) {
    const int64_t u = state_.unit_of[static_cast<size_t>(row)];
    const auto unit = static_cast<size_t>(u);
    if (same >= 0 || delivered_[unit]) {
      // Rows share a unit when chunk 0 gave them one tensor; every chunk must.
      if (same >= 0 && state_.unit_of[static_cast<size_t>(same)] == u && delivered_[unit]) return;
      const int64_t other = same >= 0 ? same : state_.leader[unit];
      throw CKAError(codes::kLayerShape, "Layers '" + row_name(row) + "' and '" + row_name(other) + "' of model " +
                                             state_.label +
                                             (same >= 0 ? " gave one tensor on " + where() + " but two on chunk 0"
                                                        : " gave one tensor on chunk 0 but two on " + where()) +
                                             "; the full-batch mode needs the same outputs on every chunk");
    }
    delivered_[unit] = true;
    const auto start = Clock::now();
    at::Tensor x = feature.reshape({n_, -1});
    if (x.scalar_type() != at::kFloat) x = x.to(at::kFloat);
    if (x.size(1) != state_.features[unit]) {
      throw CKAError(codes::kLayerShape, "Layer '" + row_name(row) + "' of model " + state_.label + " gave " +
                                             std::to_string(x.size(1)) + " features on " + where() + " but " +
                                             std::to_string(state_.features[unit]) + " on chunk 0");
    }
    if (!at::isfinite(x).all().item<bool>()) {
      throw CKAError(codes::kNonFinite, "Non-finite values (NaN or Inf) in the output of layer '" + row_name(row) +
                                            "' of model " + state_.label + " on " + where() +
                                            "; the full-batch mode has no skipNonFinite (every sample of the set "
                                            "counts): leave the layer out or fix the data");
    }
    at::Tensor& reference = state_.reference[unit];
    if (!reference.defined()) {  // chunk 0, the first pass
      reference = x.mean(0);
      const at::Tensor r = reference.to(at::kDouble);
      state_.ref_norm2[unit] = at::dot(r, r).item<double>();
    }
    const at::Tensor shifted = (x - reference).contiguous();
    x = at::Tensor();
    if (layout_.first_group) {
      state_.dots[unit].narrow(0, offset_, n_).copy_(at::mv(shifted.to(at::kDouble), reference.to(at::kDouble)));
    }
    at::Tensor& gram = state_.grams[unit];
    for (int64_t c = layout_.first; c <= std::min(chunk_, layout_.last); ++c) {
      if (c == chunk_) {
        at::Tensor block = at::empty({n_, n_}, shifted.options());
        gram_product(shifted, block);  // exactly symmetric
        gram.narrow(0, offset_, n_).narrow(1, offset_, n_).copy_(block);
        continue;
      }
      const auto held = static_cast<size_t>(c);
      const at::Tensor block = at::mm(shifted, state_.held[unit][held].t());
      const int64_t other = layout_.offsets[held], size = layout_.sizes[held];
      gram.narrow(0, offset_, n_).narrow(1, other, size).copy_(block);
      gram.narrow(0, other, size).narrow(1, offset_, n_).copy_(block.t());
    }
    if (chunk_ >= layout_.first && chunk_ <= layout_.last) state_.held[unit][static_cast<size_t>(chunk_)] = shifted;
    ms_ += ms_since(start);
  }

  SideState& state_;
  const Layout& layout_;
  int64_t chunk_, offset_, n_;
  std::vector<bool> delivered_;
  std::exception_ptr error_;
  double ms_ = 0;
};

// Units from the discovery pass: rows that chunk 0 gave one tensor (one slot) share one.
void plan_units(SideState& state, const GramBatch& batch) {
  std::map<int64_t, int64_t> unit_of_slot;
  for (size_t r = 0; r < batch.rows.size(); ++r) {
    auto found = unit_of_slot.find(batch.rows[r]);
    if (found == unit_of_slot.end()) {
      found = unit_of_slot.emplace(batch.rows[r], state.units()).first;
      int64_t d = 1;
      for (const int64_t size : batch.shapes[r]) d *= size;
      state.features.push_back(d);
      state.leader.push_back(static_cast<int64_t>(r));
    }
    state.unit_of.push_back(found->second);
  }
}

// A layer that does not vary over the set (fullbatch.cc's rule: ||Xc||² below (64 ε)² ||X||²).
bool constant_unit(const SideState& state, size_t unit, int64_t n) {
  const at::Tensor& gram = state.grams[unit];
  const double diagonal = gram.diagonal().to(at::kDouble).sum().item<double>();
  const double total = at::sum(gram, at::kDouble).item<double>();
  const double trace = diagonal - total / static_cast<double>(n);
  const double norm =
      diagonal + 2.0 * state.dots[unit].sum().item<double>() + static_cast<double>(n) * state.ref_norm2[unit];
  constexpr double tolerance = (64.0 / 8388608.0) * (64.0 / 8388608.0);
  return !(trace > norm * tolerance && norm > 0);
}

}  // namespace

struct CKAEngine::FullSide {
  Side planned;  // the side with the rows and shapes that chunk 0 fixed
  SideState state;
};

void CKAEngine::full_append(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2,
                            int64_t count) {
  const std::string what = "Chunk " + std::to_string(chunks_.size());
  const int64_t n = detail::batch_size(inputs1, what + " of data 1");
  if (inputs2 != nullptr) {
    const int64_t n2 = detail::batch_size(*inputs2, what + " of data 2");
    if (n2 != n) {
      throw CKAError(codes::kBatchSizeMismatch,
                     what + ": data 1 gave " + std::to_string(n) + " samples but data 2 gave " + std::to_string(n2) +
                         "; both models must see the same samples",
                     ErrorKind::RangeError);
    }
  }
  if (!chunks_.empty() && chunks_.front().has_inputs2 != (inputs2 != nullptr)) {
    throw CKAError(codes::kInvalidArg,
                   what + (inputs2 != nullptr ? " has its own inputs for model 2 but chunk 0 had none"
                                              : " has no inputs for model 2 but chunk 0 had its own"),
                   ErrorKind::TypeError);
  }
  if (count < 1 || count > n) {
    throw CKAError(codes::kInvalidArg,
                   "Expected the sample count of " + what + " to be an integer from 1 to " + std::to_string(n) +
                       " but received " + std::to_string(count),
                   ErrorKind::RangeError);
  }
  // The first `count` samples of every input that has the chunk's n first
  // (the addon's tensors are its own copies already; a trimmed chunk is copied
  // so that the rest is freed).
  auto first = [&](const std::vector<at::Tensor>& inputs) {
    std::vector<at::Tensor> out;
    for (const auto& t : inputs) {
      const bool trim = count < n && t.defined() && t.dim() > 0 && t.size(0) == n;
      out.push_back(trim ? t.narrow(0, 0, count).clone() : t);
    }
    return out;
  };
  FullChunk chunk;
  chunk.inputs1 = first(inputs1);
  if (inputs2 != nullptr) chunk.inputs2 = first(*inputs2);
  chunk.has_inputs2 = inputs2 != nullptr;
  chunk.n = count;
  chunks_.push_back(std::move(chunk));
}

int64_t CKAEngine::full_input_bytes() const {
  int64_t bytes = 0;
  for (const FullChunk& chunk : chunks_) bytes += tensors_bytes(chunk.inputs1) + tensors_bytes(chunk.inputs2);
  return bytes;
}

void CKAEngine::full_clear() {
  chunks_.clear();
  full_done_ = 0;
  full_total_ = 0;
}

FullProgress CKAEngine::full_progress() const {
  FullProgress out;
  out.phase = static_cast<FullPhase>(full_phase_.load());
  if (out.phase == FullPhase::kMeasures) {
    out.done = full_measures_.done.load();
    out.total = full_measures_.total.load();
  } else if (out.phase == FullPhase::kForward) {
    out.done = full_done_.load();
    out.total = full_total_.load();
  }
  return out;
}

FullRunResult CKAEngine::full_run(const FullBatchSettings& settings, int64_t budget, FullRunStats* stats_out) {
  FullRunStats local;
  FullRunStats& stats = stats_out != nullptr ? *stats_out : local;
  stats = FullRunStats();
  auto invalid = [](const std::string& message) {
    return CKAError(codes::kInvalidArg, message, ErrorKind::RangeError);
  };
  auto check = [this](const std::string& where) {
    if (cancelled_) {
      throw CKAError(codes::kAborted,
                     "compare() was aborted during the full-batch comparison (" + where + "); nothing was computed");
    }
  };
  if (chunks_.empty()) throw invalid("The full-batch comparison has no samples: append at least one chunk first");
  const auto chunk_count = static_cast<int64_t>(chunks_.size());
  Layout layout;
  int64_t n = 0;
  for (const FullChunk& chunk : chunks_) {
    layout.offsets.push_back(n);
    layout.sizes.push_back(chunk.n);
    n += chunk.n;
  }
  if (n < 4) {
    throw invalid("The full-batch comparison needs at least 4 samples but the set has " + std::to_string(n));
  }
  if (settings.measures.empty()) throw invalid("Expected at least one full-batch measure");
  if (settings.mknn_k < 1 || settings.mknn_k >= n) {
    throw invalid("Expected mknnK to be an integer from 1 to " + std::to_string(n - 1) + " (below the " + thousands(n) +
                  " samples of the full-batch set) but received " + std::to_string(settings.mknn_k));
  }
  // A forward pass; a cancelled one says where the full-batch run stopped.
  auto forward = [&](const Model& model, const std::vector<at::Tensor>& inputs, TapReceiver& receiver,
                     const std::string& batch) {
    try {
      model.forward(inputs, receiver, batch, &cancelled_);
    } catch (const CKAError& e) {
      if (e.code() != codes::kAborted) throw;
      check(batch);
      throw;
    }
  };
  struct PhaseGuard {
    std::atomic<int>& phase;
    ~PhaseGuard() { phase = static_cast<int>(FullPhase::kIdle); }
  } guard{full_phase_};
  full_phase_ = static_cast<int>(FullPhase::kForward);
  full_done_ = 0;
  full_total_ = 1 + chunk_count;
  full_measures_.done = 0;
  full_measures_.total = 0;
  const int threads = config_.threads > 0 ? config_.threads : usable_cores();
  detail::use_threads(threads);
  stats.chunks = chunk_count;

  // Discovery on chunk 0: rows, shapes and shared tensors, as the streaming
  // engine's first batch, with no Gram made.
  const bool has_inputs2 = chunks_.front().has_inputs2;
  const bool one_pass = sides_[0].model == sides_[1].model && !has_inputs2;
  // The same σ per layer on both sides (NaN: from the data) keeps the rbf work shared too.
  const auto same_sigmas = [](const std::vector<double>& a, const std::vector<double>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); });
  };
  const bool shared = one_pass && detail::same_selection(sides_[0].selection, sides_[1].selection) &&
                      sides_[0].views == sides_[1].views && same_sigmas(config_.sigmas1, config_.sigmas2);
  FullSide full[2];
  std::vector<LeftOutLayer> left_out;
  {
    check("chunk 0");
    const FullChunk& chunk = chunks_.front();
    const std::string batch = "chunk 0";
    const auto start = Clock::now();
    NoFeatures none;
    Side discover[2] = {sides_[0], sides_[1]};
    std::vector<Row> planned[2];
    GramBatch found[2];
    for (Side& side : discover) {
      side.rows.clear();
      side.shapes.clear();
    }
    if (one_pass) {
      std::unique_ptr<GramCollector> c1 = collector_for(discover[0], chunk.n, &none);
      if (shared) {
        forward(*discover[0].model, chunk.inputs1, *c1, batch);
        found[0] = finish_side(discover[0], *c1, batch, &planned[0], &left_out);
        found[1] = found[0];
        planned[1] = planned[0];
        const size_t count = left_out.size();
        for (size_t i = 0; i < count; ++i) {
          LeftOutLayer copy = left_out[i];
          copy.model = 2;
          left_out.push_back(std::move(copy));
        }
      } else {
        std::unique_ptr<GramCollector> c2 = collector_for(discover[1], chunk.n, &none);
        detail::FanOut both(*c1, *c2);
        forward(*discover[0].model, chunk.inputs1, both, batch);
        found[0] = finish_side(discover[0], *c1, batch, &planned[0], &left_out);
        found[1] = finish_side(discover[1], *c2, batch, &planned[1], &left_out);
      }
      ++stats.forwards;
    } else {
      for (int s = 0; s < 2; ++s) {
        check(batch);
        std::unique_ptr<GramCollector> c = collector_for(discover[s], chunk.n, &none);
        forward(*discover[s].model, s == 1 && has_inputs2 ? chunk.inputs2 : chunk.inputs1, *c, batch);
        found[s] = finish_side(discover[s], *c, batch, &planned[s], &left_out);
        ++stats.forwards;
      }
    }
    for (int s = 0; s < 2; ++s) {
      full[s].planned = discover[s];
      full[s].planned.rows = std::move(planned[s]);
      full[s].planned.shapes = found[s].shapes;
      full[s].state.label = sides_[s].label;
      full[s].state.rows = &full[s].planned.rows;
      plan_units(full[s].state, found[s]);
    }
    stats.forward_ms += ms_since(start);
    full_done_ = 1;
  }

  // The memory estimate, and the groups of chunks whose features are held at once.
  const int64_t m = static_cast<int64_t>(full[0].planned.rows.size());
  const int64_t p = static_cast<int64_t>(full[1].planned.rows.size());
  const int sides = shared ? 1 : 2;
  int64_t units = 0, width = 0, widest = 0;  // width: Σ d over the units
  for (int s = 0; s < sides; ++s) {
    units += full[s].state.units();
    for (const int64_t d : full[s].state.features) {
      width += d;
      widest = std::max(widest, d);
    }
  }
  const int64_t largest = *std::max_element(layout.sizes.begin(), layout.sizes.end());
  for (const FullChunk& chunk : chunks_)
    stats.input_bytes += tensors_bytes(chunk.inputs1) + tensors_bytes(chunk.inputs2);
  stats.gram_bytes = units * (n * n * 4 + n * 8);
  stats.measure_bytes = full_batch_measure_bytes(n, m, p, shared, settings);
  stats.budget_bytes = budget > 0 ? budget : default_budget();
  const int64_t working = largest * widest * 12;  // one layer's float32 and float64 copies in the tap
  const int64_t fixed = stats.input_bytes + stats.gram_bytes + stats.measure_bytes + working;
  const auto chunk_features = [&](int64_t c) { return layout.sizes[static_cast<size_t>(c)] * width * 4; };
  int64_t least = 0;
  for (int64_t c = 0; c < chunk_count; ++c) least = std::max(least, chunk_features(c));
  if (fixed + least > stats.budget_bytes) {
    stats.feature_bytes = least + working;
    stats.estimate_bytes = fixed + least;
    throw CKAError(codes::kMemoryBudget,
                   "The full-batch comparison of " + thousands(n) + " samples needs about " +
                       gib(stats.estimate_bytes) + " (Grams " + gib(stats.gram_bytes) + ", features " +
                       gib(stats.feature_bytes) + ", measures " + gib(stats.measure_bytes) + ", inputs " +
                       gib(stats.input_bytes) + ") but the memory budget is " + gib(stats.budget_bytes) +
                       " (fullBatch.memoryBudget, --memory-budget): lower the sample count, choose fewer layers or a "
                       "smaller view (spatial-mean), leave out cca_rho, cca_r2, svcca and procrustes, or raise the "
                       "budget",
                   ErrorKind::RangeError);
  }
  std::vector<std::pair<int64_t, int64_t>> groups;
  int64_t held = 0, most = 0;
  for (int64_t c = 0; c < chunk_count; ++c) {
    if (groups.empty() || fixed + held + chunk_features(c) > stats.budget_bytes) {
      groups.emplace_back(c, c);
      held = 0;
    }
    groups.back().second = c;
    held += chunk_features(c);
    most = std::max(most, held);
  }
  stats.groups = static_cast<int64_t>(groups.size());
  stats.feature_bytes = most + working;
  stats.estimate_bytes = fixed + most;
  int64_t passes = 1;
  for (const auto& group : groups) passes += chunk_count - group.first;
  full_total_ = passes;

  const auto gram_options = at::TensorOptions().dtype(at::kFloat);
  for (int s = 0; s < sides; ++s) {
    SideState& state = full[s].state;
    const c10::Device device = full[s].planned.model->device();
    const auto units_here = static_cast<size_t>(state.units());
    state.reference.assign(units_here, at::Tensor());
    state.ref_norm2.assign(units_here, 0.0);
    for (size_t u = 0; u < units_here; ++u) {
      state.grams.push_back(at::empty({n, n}, gram_options.device(device)));
      state.dots.push_back(at::empty({n}, at::TensorOptions().dtype(at::kDouble).device(device)));
    }
  }

  // The passes: group g runs every chunk from its first one on.
  for (size_t g = 0; g < groups.size(); ++g) {
    layout.first = groups[g].first;
    layout.last = groups[g].second;
    layout.first_group = g == 0;
    for (int s = 0; s < sides; ++s) {
      full[s].state.held.assign(static_cast<size_t>(full[s].state.units()),
                                std::vector<at::Tensor>(static_cast<size_t>(chunk_count)));
    }
    for (int64_t c = layout.first; c < chunk_count; ++c) {
      const std::string batch = "chunk " + std::to_string(c);
      check(batch);
      const FullChunk& chunk = chunks_[static_cast<size_t>(c)];
      const auto start = Clock::now();
      double tap_ms = 0;
      BlockSink sink1(full[0].state, layout, c);
      std::unique_ptr<GramCollector> c1 = collector_for(full[0].planned, chunk.n, &sink1);
      if (shared) {
        forward(*full[0].planned.model, chunk.inputs1, *c1, batch);
        c1->check(full[0].planned.label, batch);
        sink1.rethrow();
        ++stats.forwards;
      } else {
        BlockSink sink2(full[1].state, layout, c);
        std::unique_ptr<GramCollector> c2 = collector_for(full[1].planned, chunk.n, &sink2);
        if (one_pass) {
          detail::FanOut both(*c1, *c2);
          forward(*full[0].planned.model, chunk.inputs1, both, batch);
          ++stats.forwards;
        } else {
          forward(*full[0].planned.model, chunk.inputs1, *c1, batch);
          c1->check(full[0].planned.label, batch);
          sink1.rethrow();
          check(batch);
          forward(*full[1].planned.model, has_inputs2 ? chunk.inputs2 : chunk.inputs1, *c2, batch);
          stats.forwards += 2;
        }
        c1->check(full[0].planned.label, batch);
        sink1.rethrow();
        c2->check(full[1].planned.label, batch);
        sink2.rethrow();
        tap_ms += sink2.ms();
      }
      tap_ms += sink1.ms();
      stats.gram_ms += tap_ms;
      stats.forward_ms += std::max(0.0, ms_since(start) - tap_ms);
      ++full_done_;
    }
  }
  for (int s = 0; s < sides; ++s) full[s].state.held.clear();
  check("after the forward passes");

  // The Grams per row (rows of one unit share its tensors), then the measures.
  auto gram_list = [&](int s, const std::vector<double>& user, const c10::Device& device) {
    const SideState& state = full[shared ? 0 : s].state;
    const std::vector<Row>& rows = full[shared ? 0 : s].planned.rows;
    std::vector<FullGram> out;
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto u = static_cast<size_t>(state.unit_of[r]);
      FullGram g;
      g.gram = state.grams[u].to(device);
      g.dots = state.dots[u].to(device);
      g.ref_norm2 = state.ref_norm2[u];
      g.features = state.features[u];
      const auto layer = static_cast<size_t>(rows[r].layer);
      if (layer < user.size() && !std::isnan(user[layer])) g.sigma = user[layer];
      out.push_back(std::move(g));
    }
    return out;
  };
  const c10::Device device = sides_[0].model->device();
  const std::vector<FullGram> grams1 = gram_list(0, config_.sigmas1, device);
  const std::vector<FullGram> grams2 = shared ? std::vector<FullGram>() : gram_list(1, config_.sigmas2, device);
  full_phase_ = static_cast<int>(FullPhase::kMeasures);
  FullRunResult result;
  {
    const auto start = Clock::now();
    result.matrices = compute_full_batch(grams1, shared ? grams1 : grams2, settings, &full_measures_, &cancelled_);
    stats.measure_ms = ms_since(start);
  }

  for (int s = 0; s < 2; ++s) {
    const SideState& state = full[shared ? 0 : s].state;
    const std::vector<Row>& rows = full[shared ? 0 : s].planned.rows;
    std::vector<std::string>& names = s == 0 ? result.rows1 : result.rows2;
    std::vector<int64_t>& features = s == 0 ? result.features1 : result.features2;
    const std::vector<double>& sigma = s == 0 ? result.matrices.sigma1 : result.matrices.sigma2;
    std::vector<bool> constant(static_cast<size_t>(state.units()));
    for (size_t u = 0; u < constant.size(); ++u) constant[u] = constant_unit(state, u, n);
    for (size_t r = 0; r < rows.size(); ++r) {
      names.push_back(rows[r].name);
      const auto u = static_cast<size_t>(state.unit_of[r]);
      features.push_back(state.features[u]);
      const std::string layer = "Layer '" + rows[r].name + "' of model " + sides_[s].label;
      if (constant[u]) {
        result.warnings.push_back(layer + " does not vary over the full-batch set: its values are null");
      } else if (r < sigma.size() && std::isnan(sigma[r])) {
        result.warnings.push_back(layer +
                                  " has no RBF sigma (the median squared distance over the full-batch set is 0): its "
                                  "rbf_cka and rbf_cka_biased values are null");
      }
    }
  }
  result.samples = n;
  result.left_out = std::move(left_out);
  result.stats = stats;
  return result;
}

}  // namespace tcka
