#include "engine.h"

#include <ATen/ATen.h>  // at::tensor, index_select
#include <ATen/Parallel.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/stack.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "blas.h"
#include "device.h"
#include "errors.h"

namespace tcka {
namespace detail {

int64_t batch_size(const std::vector<at::Tensor>& inputs, const std::string& what) {
  if (inputs.empty()) throw CKAError(codes::kInvalidBatch, what + " has no input tensor", ErrorKind::TypeError);
  const at::Tensor& first = inputs.front();
  if (!first.defined() || first.dim() == 0) {
    throw CKAError(codes::kInvalidBatch, what + ": the first input must have a batch dimension", ErrorKind::RangeError);
  }
  return first.size(0);
}

}  // namespace detail

CKAEngine::CKAEngine(std::shared_ptr<Model> model1, std::shared_ptr<Model> model2, CKAConfig config)
    : config_(std::move(config)) {
  sides_[0].model = std::move(model1);
  sides_[1].model = std::move(model2);
  sides_[1].index = 2;
  sides_[0].label = "'" + (config_.label1.empty() ? model_base_name(sides_[0].model->path()) : config_.label1) + "'";
  sides_[1].label = "'" + (config_.label2.empty() ? model_base_name(sides_[1].model->path()) : config_.label2) + "'";
  sides_[0].selection = resolve_layers(sides_[0].model->layers(), config_.layers1, sides_[0].label);
  sides_[1].selection = resolve_layers(sides_[1].model->layers(), config_.layers2, sides_[1].label);
  // CPU defaults: one thread per batch and a batch on every usable core
  // (with `threads` given: as many batches as fit the cores). CUDA: two
  // batches on two streams, libtorch's threads for the host side.
  const bool cpu = sides_[0].model->device().is_cpu();
  threads_ = config_.threads > 0 ? config_.threads : cpu ? 1 : at::get_num_threads();
  // Ranks started together on one machine (torch-cka launch, torchrun: LOCAL_WORLD_SIZE) share its cores.
  int local_ranks = 1;
  if (const char* local = std::getenv("LOCAL_WORLD_SIZE")) local_ranks = std::max(1, std::atoi(local));
  workers_ = config_.workers > 0 ? config_.workers : cpu ? std::max(1, usable_cores() / local_ranks / threads_) : 2;
  sides_[0].views = config_.views1;
  sides_[1].views = config_.views2;
  for (const Side& side : sides_) {
    if (!side.views.empty() && side.views.size() != side.model->layers().size()) {
      throw CKAError(codes::kInvalidArg,
                     "Model " + side.label + " has " + std::to_string(side.model->layers().size()) + " layers but " +
                         std::to_string(side.views.size()) + " views were given (one per layer)",
                     ErrorKind::RangeError);
    }
  }
}

std::unique_ptr<GramCollector> CKAEngine::collector_for(const Side& side, int64_t n, FeatureSink* sink) const {
  const Model& model = *side.model;
  std::unique_ptr<GramCollector> collector;
  if (!side.rows.empty()) {
    collector = std::make_unique<GramCollector>(model.layers(), side.selection, side.rows, n, config_.gram_dtype,
                                                model.device(), sink);
    if (side.shapes.size() == side.rows.size()) collector->set_expected_shapes(&side.shapes);
  } else {
    collector =
        std::make_unique<GramCollector>(model.layers(), side.selection, n, config_.gram_dtype, model.device(), sink);
  }
  collector->set_views(&side.views, side.index);
  return collector;
}

GramBatch CKAEngine::finish_side(const Side& side, GramCollector& collector, const std::string& batch,
                                 std::vector<Row>* planned, std::vector<LeftOutLayer>* left_out) const {
  const Model& model = *side.model;
  collector.check(side.label, batch);
  if (!side.rows.empty()) return collector.take(side.rows);
  std::vector<int64_t> calls = collector.calls();
  for (const auto& item : collector.unusable()) calls[static_cast<size_t>(item.first)] = 0;
  std::vector<int64_t> dropped;
  *planned = plan_rows(side.selection, model.layers(), calls, side.label, batch, &dropped);
  for (const int64_t layer : dropped) {
    const std::string& name = model.layers()[static_cast<size_t>(layer)].name;
    auto why = collector.unusable().find(layer);
    if (why != collector.unusable().end()) {
      left_out->push_back({side.index, name, why->second.code, why->second.message});
    } else {
      left_out->push_back({side.index, name, codes::kLayerNotRun, "it did not run during " + batch});
    }
  }
  return collector.take(*planned);
}

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The rows' Grams (and their statistics) in row order, one per row.
GramBatch compact(GramBatch batch) {
  if (batch.rows.empty() || !batch.grams.defined()) return batch;
  bool in_order = static_cast<int64_t>(batch.rows.size()) == batch.grams.size(0);
  for (size_t r = 0; in_order && r < batch.rows.size(); ++r) in_order = batch.rows[r] == static_cast<int64_t>(r);
  if (in_order) {  // already one Gram per row, in row order: nothing to copy
    batch.rows.clear();
    return batch;
  }
  const at::Tensor index = at::tensor(batch.rows, at::TensorOptions().dtype(at::kLong));
  const auto pick = [&](const at::Tensor& t) { return t.defined() ? t.index_select(0, index.to(t.device())) : t; };
  GramBatch out;
  out.grams = pick(batch.grams);
  out.mean_norms = pick(batch.mean_norms);
  out.spreads = pick(batch.spreads);
  out.row_sums = pick(batch.row_sums);
  out.squares = pick(batch.squares);
  out.shapes = std::move(batch.shapes);
  return out;
}

// A forward pass's time split between the models and the collectors' taps.
void add_forward_times(EngineTimes& times, double forward_ms, std::initializer_list<const GramCollector*> collectors) {
  double tap_ms = 0, gram_ms = 0;
  for (const GramCollector* c : collectors) {
    tap_ms += c->tap_seconds() * 1000.0;
    gram_ms += c->gram_seconds() * 1000.0;
  }
  times.forward_ms += std::max(0.0, forward_ms - tap_ms);
  times.tap_ms += std::max(0.0, tap_ms - gram_ms);
  times.gram_ms += gram_ms;
}

}  // namespace

GramBatch CKAEngine::run_side(const Side& side, const std::vector<at::Tensor>& inputs, int64_t n,
                              const std::string& batch, std::vector<Row>* planned, std::vector<LeftOutLayer>* left_out,
                              EngineTimes* times) {
  std::unique_ptr<GramCollector> collector = collector_for(side, n);
  const auto start = Clock::now();
  side.model->forward(inputs, *collector, batch, &cancelled_);
  add_forward_times(*times, ms_since(start), {collector.get()});
  ++forwards_;
  reused_ += collector->reused();
  return finish_side(side, *collector, batch, planned, left_out);
}

namespace detail {

void use_threads(int threads) {
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  set_blas_threads(threads);
}

bool same_selection(const LayerSelection& a, const LayerSelection& b) {
  if (a.all_layers != b.all_layers || a.entries.size() != b.entries.size()) return false;
  for (size_t i = 0; i < a.entries.size(); ++i) {
    if (a.entries[i].layer != b.entries[i].layer || a.entries[i].call != b.entries[i].call) return false;
  }
  return true;
}

}  // namespace detail

using detail::batch_size;
using detail::FanOut;
using detail::same_selection;
using detail::use_threads;

bool CKAEngine::has_rbf() const {
  return std::find(config_.measures.begin(), config_.measures.end(), Measure::kRbf) != config_.measures.end();
}

std::vector<double> CKAEngine::row_sigmas(const std::vector<Row>& rows, const GramBatch& grams, int64_t n,
                                          const std::vector<double>& user) const {
  auto user_sigma = [&](const Row& row) {
    const auto layer = static_cast<size_t>(row.layer);
    return row.layer >= 0 && layer < user.size() && !std::isnan(user[layer]) ? user[layer] : std::nan("");
  };
  bool all_user = true;
  for (const auto& row : rows) all_user = all_user && !std::isnan(user_sigma(row));
  std::vector<double> out =
      all_user ? std::vector<double>(rows.size(), 0.0) : median_sigmas(grams, n, config_.rbf_threshold);
  for (size_t r = 0; r < rows.size() && r < out.size(); ++r) {
    const double given = user_sigma(rows[r]);
    if (!std::isnan(given)) out[r] = given;
    if (!(out[r] > 0) || !std::isfinite(out[r])) out[r] = std::nan("");  // degenerate: that row's values are null
  }
  return out;
}

StepOutcome CKAEngine::step(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2) {
  std::vector<BatchInput> one(1);
  one[0].inputs1 = inputs1;
  if (inputs2 != nullptr) {
    one[0].inputs2 = *inputs2;
    one[0].has_inputs2 = true;
  }
  std::exception_ptr error;
  std::vector<StepOutcome> outcomes = steps(one, &error);
  if (error) std::rethrow_exception(error);
  return outcomes.front();
}

StepOutcome CKAEngine::calibrate(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2) {
  if (!sums_.empty() || batches_ > 0) {
    throw CKAError(codes::kInvalidArg, "calibrate() only runs before any batch is compared", ErrorKind::Error);
  }
  BatchInput input{inputs1, inputs2 != nullptr ? *inputs2 : std::vector<at::Tensor>(), inputs2 != nullptr};
  Computed work = prepare(input, 0);
  if (work.small) {
    work.outcome.skipped = true;
    work.outcome.skip_reason = "small";
    return work.outcome;
  }
  compute(work, input, threads_per_batch(), true);
  check_cancelled(work.batch);
  std::lock_guard<std::mutex> lock(mutex_);
  if (sides_[0].rows.empty()) sides_[0].rows = std::move(work.planned1);
  if (sides_[1].rows.empty()) sides_[1].rows = std::move(work.planned2);
  if (work.own_sigmas) {
    sigma1_ = std::move(work.sigma1);
    sigma2_ = std::move(work.sigma2);
  }
  return work.outcome;
}

int CKAEngine::threads_per_batch() const { return threads_; }

CKAEngine::Computed CKAEngine::prepare(const BatchInput& input, int64_t index) const {
  Computed work;
  work.index = index;
  work.batch = "batch " + std::to_string(index);
  const int64_t n = batch_size(input.inputs1, "Batch " + std::to_string(index) + " of data 1");
  if (input.has_inputs2) {
    const int64_t n2 = batch_size(input.inputs2, "Batch " + std::to_string(index) + " of data 2");
    if (n2 != n) {
      throw CKAError(codes::kBatchSizeMismatch,
                     "Step " + std::to_string(index) + ": data 1 gave " + std::to_string(n) +
                         " samples but data 2 gave " + std::to_string(n2) +
                         "; both models must see the same number of samples in a step",
                     ErrorKind::RangeError);
    }
  }
  work.n = n;
  work.outcome.n = n;
  work.small = n < 4;
  return work;
}

void CKAEngine::compute(Computed& work, const BatchInput& input, int threads, bool calibrate) {
  const auto wall = Clock::now();
  const std::string& batch = work.batch;
  const int64_t n = work.n;
  // What the batches committed so far fixed (rows, shapes, σ): a batch that
  // starts before they are fixed discovers its own, checked at its commit.
  Side sides[2];
  std::vector<double> fixed1, fixed2;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    sides[0] = sides_[0];
    sides[1] = sides_[1];
    fixed1 = sigma1_;
    fixed2 = sigma2_;
  }
  work.planned = !sides[0].rows.empty() && !sides[1].rows.empty();
  use_threads(threads);
  EngineTimes& times = work.times;
  const std::vector<at::Tensor>& inputs1 = input.inputs1;
  const std::vector<at::Tensor>* inputs2 = input.has_inputs2 ? &input.inputs2 : nullptr;
  GramBatch& k = work.k;
  GramBatch& l = work.l;
  bool concurrent = false;
  auto spare = [&](GramCollector& c, int side) {
    at::Tensor buffer = take_spare(side);
    if (buffer.defined()) c.reuse_buffer(std::move(buffer));
  };
  if (sides[0].model == sides[1].model && inputs2 == nullptr) {
    // The same model on the same data: one forward pass feeds both sides,
    // and one set of Grams does when both pick the same layers.
    std::unique_ptr<GramCollector> c1 = collector_for(sides[0], n);
    spare(*c1, 0);
    if (same_selection(sides[0].selection, sides[1].selection) && sides[0].rows.size() == sides[1].rows.size() &&
        sides[0].views == sides[1].views) {
      const auto start = Clock::now();
      sides[0].model->forward(inputs1, *c1, batch, &cancelled_);
      add_forward_times(times, ms_since(start), {c1.get()});
      k = finish_side(sides[0], *c1, batch, &work.planned1, &work.outcome.left_out);
      l = k;
      work.planned2 = work.planned1;
      // Both sides are the same model on the same data: model 2 leaves out what model 1 does.
      const size_t count = work.outcome.left_out.size();
      for (size_t i = 0; i < count; ++i) {
        LeftOutLayer copy = work.outcome.left_out[i];
        copy.model = 2;
        work.outcome.left_out.push_back(std::move(copy));
      }
      work.shared = true;
    } else {
      std::unique_ptr<GramCollector> c2 = collector_for(sides[1], n);
      spare(*c2, 1);
      FanOut both(*c1, *c2);
      const auto start = Clock::now();
      sides[0].model->forward(inputs1, both, batch, &cancelled_);
      add_forward_times(times, ms_since(start), {c1.get(), c2.get()});
      reused_ += c2->reused();
      k = finish_side(sides[0], *c1, batch, &work.planned1, &work.outcome.left_out);
      l = finish_side(sides[1], *c2, batch, &work.planned2, &work.outcome.left_out);
    }
    ++forwards_;
    reused_ += c1->reused();
  } else if (config_.concurrent) {
    // Model 2 on a second thread (and its own CUDA stream) while model 1 runs here.
    concurrent = true;
    std::exception_ptr failed2;
    std::vector<LeftOutLayer> left_out2;
    EngineTimes times2;
    const std::vector<at::Tensor>& data2 = inputs2 != nullptr ? *inputs2 : inputs1;
    std::thread second([&] {
      try {
        use_threads(threads);
        const c10::Device device = sides[1].model->device();
        std::optional<c10::StreamGuard> stream;
        if (!device.is_cpu()) {
          stream.emplace(c10::impl::VirtualGuardImpl(device.type()).getStreamFromGlobalPool(device));
        }
        l = run_side(sides[1], data2, n, batch, &work.planned2, &left_out2, &times2);
        if (stream) stream->current_stream().synchronize();
      } catch (...) {
        failed2 = std::current_exception();
      }
    });
    std::exception_ptr failed1;
    try {
      k = run_side(sides[0], inputs1, n, batch, &work.planned1, &work.outcome.left_out, &times);
    } catch (...) {
      failed1 = std::current_exception();
    }
    second.join();
    if (failed1) std::rethrow_exception(failed1);
    if (failed2) std::rethrow_exception(failed2);
    work.outcome.left_out.insert(work.outcome.left_out.end(), left_out2.begin(), left_out2.end());
    times.forward_ms += times2.forward_ms;
    times.tap_ms += times2.tap_ms;
    times.gram_ms += times2.gram_ms;
  } else {
    k = run_side(sides[0], inputs1, n, batch, &work.planned1, &work.outcome.left_out, &times);
    check_cancelled(batch);
    l = run_side(sides[1], inputs2 != nullptr ? *inputs2 : inputs1, n, batch, &work.planned2, &work.outcome.left_out,
                 &times);
  }
  check_cancelled(batch);
  const std::vector<Row>& rows1 = sides[0].rows.empty() ? work.planned1 : sides[0].rows;
  const std::vector<Row>& rows2 = sides[1].rows.empty() ? work.planned2 : sides[1].rows;
  if (sides[0].rows.empty() == false) work.planned1 = sides[0].rows;
  if (sides[1].rows.empty() == false) work.planned2 = sides[1].rows;
  {
    const auto size = [](const GramBatch& g) {
      return g.grams.defined() ? g.grams.numel() * g.grams.element_size() : 0;
    };
    const int64_t m = static_cast<int64_t>(rows1.size()), p = static_cast<int64_t>(rows2.size());
    work.stats.gram_bytes = work.shared ? size(k) : size(k) + size(l);
    work.stats.block_bytes = std::min<int64_t>(
        HsicAccumulator::kBlockBudget, (m + p) * n * n * static_cast<int64_t>(at::elementSize(config_.pair_dtype)));
    work.stats.accumulator_bytes = (m * p + m + p) * 8 * static_cast<int64_t>(config_.measures.size());
    work.stats.threads = threads;
    work.stats.concurrent = concurrent;
  }
  work.shapes1 = k.shapes;
  work.shapes2 = l.shapes;
  // A discovery pass holds a Gram per call, rows pointing into them: one Gram
  // per row, in row order, as a planned pass holds them, so that the products
  // (their shapes, their blocking) and so the sums are the same bit for bit.
  if (!k.rows.empty()) {
    k = compact(std::move(k));
    if (work.shared) {
      l = k;
    } else if (!l.rows.empty()) {
      l = compact(std::move(l));
    }
  } else if (!l.rows.empty()) {
    l = compact(std::move(l));
  }

  // RBF σ: fixed by the first accumulated batch (or restored), per row. A
  // batch computed before σ was fixed uses its own, which its commit keeps
  // if it is the first accumulated batch and replaces otherwise.
  work.sigma1 = fixed1;
  work.sigma2 = fixed2;
  work.own_sigmas = has_rbf() && fixed1.empty();
  if (work.own_sigmas) {
    work.sigma1 = row_sigmas(rows1, k, n, config_.sigmas1);
    work.sigma2 = row_sigmas(rows2, l, n, config_.sigmas2);
  }
  if (calibrate) {
    times.wall_ms += ms_since(wall);
    return;
  }
  compute_terms(work);
  times.wall_ms += ms_since(wall);
}

void CKAEngine::compute_terms(Computed& work) {
  const auto start = Clock::now();
  const int64_t n = work.n;
  const int64_t m = static_cast<int64_t>(work.planned1.size()), p = static_cast<int64_t>(work.planned2.size());
  HsicAccumulator terms(m, p, sides_[0].model->device(), config_.pair_dtype);
  work.terms.assign(config_.measures.size(), BatchHsic());
  for (size_t i = 0; i < config_.measures.size(); ++i) {
    check_cancelled(work.batch);
    if (config_.measures[i] == Measure::kLinear) {
      work.terms[i] = terms.compute(work.k, work.l, n);
    } else {
      work.terms[i] = terms.compute_kernel(config_.measures[i], work.k, work.l, n, work.sigma1, work.sigma2);
    }
  }
  work.finite = true;
  for (const BatchHsic& t : work.terms) {
    work.finite =
        work.finite &&
        at::stack({at::isfinite(t.xx).all(), at::isfinite(t.yy).all(), at::isfinite(t.xy).all()}).all().item<bool>();
  }
  if (!work.finite) {
    const BatchHsic& first = work.terms.front();
    auto first_bad = [](const at::Tensor& t) { return at::nonzero(at::logical_not(at::isfinite(t.cpu()))); };
    at::Tensor bad1 = first_bad(first.xx);
    at::Tensor bad2 = first_bad(first.yy);
    if (bad1.size(0) > 0) {
      work.where = "layer '" + work.planned1[static_cast<size_t>(bad1[0][0].item<int64_t>())].name + "' of model " +
                   sides_[0].label;
    } else if (bad2.size(0) > 0) {
      work.where = "layer '" + work.planned2[static_cast<size_t>(bad2[0][0].item<int64_t>())].name + "' of model " +
                   sides_[1].label;
    } else {
      work.where = "a layer pair";
    }
  }
  // The Grams are kept only while an earlier batch may still fix other σ.
  if (!work.own_sigmas) {
    at::Tensor grams1 = std::move(work.k.grams), grams2 = std::move(work.l.grams);
    work.k = GramBatch();
    work.l = GramBatch();
    if (work.shared) grams2 = at::Tensor();
    give_spare(0, std::move(grams1));
    give_spare(1, std::move(grams2));
  }
  work.times.pair_ms += ms_since(start);
}

at::Tensor CKAEngine::take_spare(int side) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& pool = spares_[side];
  if (pool.empty()) return at::Tensor();
  at::Tensor out = std::move(pool.back());
  pool.pop_back();
  return out;
}

void CKAEngine::trim() {
  std::lock_guard<std::mutex> lock(mutex_);
  spares_[0].clear();
  spares_[1].clear();
}

void CKAEngine::give_spare(int side, at::Tensor grams) {
  // Only memory no other tensor holds.
  if (!grams.defined() || grams.use_count() != 1 || grams.storage().use_count() != 1) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto& pool = spares_[side];
  if (pool.size() < static_cast<size_t>(std::max(1, workers_))) pool.push_back(std::move(grams));
}

bool CKAEngine::same_rows(const std::vector<Row>& a, const std::vector<Row>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].layer != b[i].layer || a[i].call != b[i].call || a[i].name != b[i].name) return false;
  }
  return true;
}

void CKAEngine::commit(Computed& work, const BatchInput& input, int threads) {
  const std::string& batch = work.batch;
  if (work.small) {
    ++skipped_;
    work.outcome.skipped = true;
    work.outcome.skip_reason = "small";
    work.outcome.warnings.push_back("Skipped " + batch + ": it has " + std::to_string(work.n) +
                                    " samples, and the unbiased HSIC estimator needs at least 4");
    return;
  }
  // A batch that discovered its rows while an earlier one fixed them: the
  // same rows and shapes keep its terms; anything else runs it again on the
  // fixed rows, as one batch after the other would have (and fails as that would).
  const bool rows_fixed = !sides_[0].rows.empty() && !sides_[1].rows.empty();
  if (rows_fixed && !work.planned) {
    const bool same = same_rows(work.planned1, sides_[0].rows) && same_rows(work.planned2, sides_[1].rows) &&
                      (sides_[0].shapes.size() != sides_[0].rows.size() || work.shapes1 == sides_[0].shapes) &&
                      (sides_[1].shapes.size() != sides_[1].rows.size() || work.shapes2 == sides_[1].shapes);
    if (!same) {
      Computed again = prepare(input, work.index);
      compute(again, input, threads, false);
      again.times.wait_ms += work.times.wall_ms;
      work = std::move(again);
    } else {
      work.outcome.left_out.clear();  // only the batch that fixed the rows reports them
    }
  }
  // σ fixed by an earlier batch after this one made its own: its kernel terms again, with the fixed σ.
  if (work.own_sigmas && !sigma1_.empty()) {
    use_threads(threads);  // as the workers do: the same terms, bit for bit
    work.own_sigmas = false;
    work.sigma1 = sigma1_;
    work.sigma2 = sigma2_;
    compute_terms(work);
  } else if (work.k.grams.defined()) {
    work.k = GramBatch();
    work.l = GramBatch();
  }
  if (!work.finite) {
    if (config_.skip_non_finite) {
      check_cancelled(batch);
      ++skipped_;
      work.outcome.skipped = true;
      work.outcome.skip_reason = "non_finite";
      work.outcome.warnings.push_back("Skipped " + batch + ": non-finite values (NaN or Inf) in the output of " +
                                      work.where);
      return;
    }
    throw CKAError(codes::kNonFinite, "Non-finite values (NaN or Inf) in the output of " + work.where + " on " + batch +
                                          "; nothing from this batch was added (the option skipNonFinite skips such "
                                          "batches instead)");
  }
  check_cancelled(batch);
  if (sums_.empty()) {
    std::vector<std::unique_ptr<HsicAccumulator>> fresh;
    for (size_t i = 0; i < config_.measures.size(); ++i) {
      fresh.push_back(std::make_unique<HsicAccumulator>(static_cast<int64_t>(work.planned1.size()),
                                                        static_cast<int64_t>(work.planned2.size()),
                                                        sides_[0].model->device(), config_.pair_dtype));
    }
    sums_ = std::move(fresh);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (sides_[0].rows.empty()) sides_[0].rows = work.planned1;
    if (sides_[1].rows.empty()) sides_[1].rows = work.planned2;
    if (sides_[0].shapes.size() != sides_[0].rows.size()) sides_[0].shapes = work.shapes1;
    if (sides_[1].shapes.size() != sides_[1].rows.size()) sides_[1].shapes = work.shapes2;
    if (work.own_sigmas) {
      sigma1_ = work.sigma1;
      sigma2_ = work.sigma2;
    }
  }
  for (size_t i = 0; i < sums_.size(); ++i) sums_[i]->add(work.terms[i]);
  ++batches_;
  samples_ += work.n;
}

std::vector<StepOutcome> CKAEngine::steps(const std::vector<BatchInput>& batches, std::exception_ptr* error) {
  std::vector<StepOutcome> outcomes;
  const int threads = threads_per_batch();
  const int workers = std::max(1, std::min<int>(static_cast<int>(batches.size()), workers_));
  const auto wall = Clock::now();
  const c10::Device device = sides_[0].model->device();
  std::vector<Computed> work(batches.size());
  std::vector<std::exception_ptr> failed(batches.size());
  // Batch sizes and the like are checked first, in order: the first bad one ends the list there.
  size_t count = 0;
  try {
    for (; count < batches.size(); ++count) work[count] = prepare(batches[count], steps_ + static_cast<int64_t>(count));
  } catch (...) {
    failed[count] = std::current_exception();
  }
  auto run = [&](size_t i) {
    try {
      check_cancelled(work[i].batch);
      if (work[i].small) return;
      // On a GPU, each worker's batch on a stream of its own.
      std::optional<c10::StreamGuard> stream;
      if (!device.is_cpu() && workers > 1) {
        stream.emplace(c10::impl::VirtualGuardImpl(device.type()).getStreamFromGlobalPool(device));
      }
      compute(work[i], batches[i], threads, false);
      if (stream) stream->current_stream().synchronize();
    } catch (...) {
      failed[i] = std::current_exception();
    }
  };
  // Every batch tried counts as a step, added or not (as its messages number it).
  auto attempted = [&] { ++steps_; };
  // Batch i, computed: added (or skipped) in order; false at the first failure, which goes to `error`.
  auto add = [&](size_t i) {
    attempted();
    if (failed[i]) {
      *error = failed[i];
      return false;
    }
    try {
      commit(work[i], batches[i], threads);
      outcomes.push_back(std::move(work[i].outcome));
      merge_times(work[i]);
      return true;
    } catch (...) {
      *error = std::current_exception();
      return false;
    }
  };
  if (workers <= 1 || count <= 1) {
    // One batch after the other, each committed before the next starts.
    for (size_t i = 0; i <= count && i < batches.size(); ++i) {
      if (!failed[i]) run(i);
      if (!add(i)) break;
    }
  } else {
    // Each worker takes the next batch; batches are added in order as they finish.
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    std::vector<std::atomic<bool>> done(count);
    std::vector<Clock::time_point> finished_at(count);
    for (auto& d : done) d = false;
    std::mutex m;
    std::condition_variable finished;
    for (int w = 0; w < workers; ++w) {
      pool.emplace_back([&] {
        for (size_t i = next++; i < count; i = next++) {
          if (!failed[i]) run(i);
          {
            std::lock_guard<std::mutex> lock(m);
            done[i] = true;
            finished_at[i] = Clock::now();
          }
          finished.notify_all();
        }
      });
    }
    for (size_t i = 0; i < batches.size(); ++i) {
      if (i < count) {
        std::unique_lock<std::mutex> lock(m);
        finished.wait(lock, [&] { return done[i].load(); });
        // Done, and waiting for the batches before it to be added.
        work[i].times.wait_ms += ms_since(finished_at[i]);
      }
      if (!add(i)) break;
      if (i + 1 >= count && count < batches.size()) {
        attempted();
        *error = failed[count];
        break;
      }
    }
    if (*error) cancelled_ = true;  // the workers stop at their next check
    for (auto& t : pool) t.join();
    if (*error) cancelled_ = false;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  times_.wall_ms += ms_since(wall);
  last_.workers = workers_;
  return outcomes;
}

void CKAEngine::merge_times(const Computed& work) {
  std::lock_guard<std::mutex> lock(mutex_);
  times_.forward_ms += work.times.forward_ms;
  times_.tap_ms += work.times.tap_ms;
  times_.gram_ms += work.times.gram_ms;
  times_.pair_ms += work.times.pair_ms;
  times_.wait_ms += work.times.wait_ms;
  times_.batches += 1;
  const int workers = last_.workers;
  if (!work.small) {
    last_ = work.stats;
    last_.workers = workers;
  }
}

void CKAEngine::check_cancelled(const std::string& batch) const {
  if (cancelled_) {
    throw CKAError(codes::kAborted, "compare() was aborted during " + batch + "; nothing from it was added");
  }
}

EngineState CKAEngine::state() const {
  if (sums_.empty()) throw CKAError(codes::kNoData, "No batch has been compared yet; there is no state to save");
  EngineState out;
  out.rows1 = sides_[0].rows;
  out.rows2 = sides_[1].rows;
  auto values = [](const at::Tensor& t) {
    const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  for (const auto& sums : sums_) {
    for (auto [to, from] : {std::pair{&out.xy, sums->xy()}, {&out.xx, sums->xx()}, {&out.yy, sums->yy()}}) {
      const std::vector<double> v = values(from);
      to->insert(to->end(), v.begin(), v.end());
    }
  }
  out.sigma1 = sigma1_;
  out.sigma2 = sigma2_;
  out.steps = steps_;
  out.batches = batches_;
  out.samples = samples_;
  out.skipped = skipped_;
  return out;
}

void CKAEngine::restore(const EngineState& state) {
  auto invalid = [](const std::string& message) {
    return CKAError(codes::kInvalidArg, message, ErrorKind::RangeError);
  };
  if (!sums_.empty() || batches_ > 0) throw invalid("A saved state can only be restored before any batch is compared");
  auto check_rows = [&](const Side& side, const std::vector<Row>& rows) {
    if (rows.empty()) throw invalid("The saved state has no layers for model " + side.label);
    const auto& layers = side.model->layers();
    for (const auto& row : rows) {
      if (row.layer < 0 || static_cast<size_t>(row.layer) >= layers.size() || row.call < 1 ||
          row_name(layers[static_cast<size_t>(row.layer)].name, row.call) != row.name) {
        throw invalid("The saved state's layer '" + row.name + "' is not a layer of model " + side.label);
      }
    }
  };
  check_rows(sides_[0], state.rows1);
  check_rows(sides_[1], state.rows2);
  const auto m = static_cast<int64_t>(state.rows1.size()), p = static_cast<int64_t>(state.rows2.size());
  const auto count = static_cast<int64_t>(config_.measures.size());
  if (static_cast<int64_t>(state.xy.size()) != count * m * p || static_cast<int64_t>(state.xx.size()) != count * m ||
      static_cast<int64_t>(state.yy.size()) != count * p) {
    throw invalid("The saved state's sums do not match its " + std::to_string(m) + " x " + std::to_string(p) +
                  " layers and " + std::to_string(count) + " measure(s)");
  }
  const size_t sigma_rows1 = has_rbf() ? static_cast<size_t>(m) : 0,
               sigma_rows2 = has_rbf() ? static_cast<size_t>(p) : 0;
  if (state.sigma1.size() != sigma_rows1 || state.sigma2.size() != sigma_rows2) {
    throw invalid("The saved state's RBF sigmas (" + std::to_string(state.sigma1.size()) + " + " +
                  std::to_string(state.sigma2.size()) + ") do not match " + std::to_string(sigma_rows1) + " + " +
                  std::to_string(sigma_rows2) + " rows");
  }
  if (state.batches < 1 || state.samples < 4 * state.batches || state.skipped < 0 ||
      state.steps < state.batches + state.skipped) {
    throw invalid("The saved state's counts are inconsistent");
  }
  auto tensor = [](const std::vector<double>& v) {
    return at::from_blob(const_cast<double*>(v.data()), {static_cast<int64_t>(v.size())}, at::kDouble).clone();
  };
  std::vector<std::unique_ptr<HsicAccumulator>> all;
  for (int64_t i = 0; i < count; ++i) {
    auto sums = std::make_unique<HsicAccumulator>(m, p, sides_[0].model->device(), config_.pair_dtype);
    sums->set(tensor(state.xy).slice(0, i * m * p, (i + 1) * m * p), tensor(state.xx).slice(0, i * m, (i + 1) * m),
              tensor(state.yy).slice(0, i * p, (i + 1) * p));
    all.push_back(std::move(sums));
  }
  sides_[0].rows = state.rows1;
  sides_[1].rows = state.rows2;
  sides_[0].shapes.clear();  // learnt again from the next batch
  sides_[1].shapes.clear();
  sums_ = std::move(all);
  sigma1_ = state.sigma1;
  sigma2_ = state.sigma2;
  steps_ = state.steps;
  batches_ = state.batches;
  samples_ = state.samples;
  skipped_ = state.skipped;
}

void CKAEngine::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  spares_[0].clear();
  spares_[1].clear();
  sums_.clear();
  sigma1_.clear();
  sigma2_.clear();
  sides_[0].rows.clear();
  sides_[1].rows.clear();
  sides_[0].shapes.clear();
  sides_[1].shapes.clear();
  steps_ = batches_ = samples_ = skipped_ = 0;
}

EngineStats CKAEngine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineStats out = last_;
  out.times = times_;
  out.forwards = forwards_;
  out.reused_grams = reused_;
  return out;
}

CKAResult CKAEngine::result() const {
  if (sums_.empty()) {
    throw CKAError(codes::kNoData, "No batch has been compared yet" +
                                       (skipped_ > 0 ? " (" + std::to_string(skipped_) +
                                                           " batch(es) skipped for having fewer than 4 samples)"
                                                     : std::string()) +
                                       "; call compare() with data first");
  }
  CKAResult out;
  for (const auto& row : sides_[0].rows) out.rows1.push_back(row.name);
  for (const auto& row : sides_[1].rows) out.rows2.push_back(row.name);
  for (size_t i = 0; i < sums_.size(); ++i) {
    const at::Tensor xy = sums_[i]->xy().cpu().contiguous();
    const at::Tensor xx = sums_[i]->xx().cpu().contiguous();
    const at::Tensor yy = sums_[i]->yy().cpu().contiguous();
    const int64_t m = xy.size(0), p = xy.size(1);
    const double* pxy = xy.data_ptr<double>();
    const std::vector<double> self1(xx.data_ptr<double>(), xx.data_ptr<double>() + m);
    const std::vector<double> self2(yy.data_ptr<double>(), yy.data_ptr<double>() + p);
    std::vector<std::optional<double>> matrix;
    matrix.reserve(static_cast<size_t>(m * p));
    for (int64_t a = 0; a < m; ++a) {
      for (int64_t b = 0; b < p; ++b) {
        const double denominator = std::sqrt(self1[a] * self2[b]);
        if (self1[a] > 0 && self2[b] > 0 && std::isfinite(denominator)) {
          matrix.emplace_back(pxy[a * p + b] / denominator);
        } else {
          matrix.emplace_back(std::nullopt);
        }
      }
    }
    out.matrices.push_back(std::move(matrix));
    if (i == 0) {
      out.self1 = self1;
      out.self2 = self2;
    }
  }
  out.sigma1 = sigma1_;
  out.sigma2 = sigma2_;
  const bool first_rbf = config_.measures.front() == Measure::kRbf;
  auto warn_constant = [&](const std::vector<double>& self, const std::vector<std::string>& rows,
                           const std::string& label, const std::vector<double>& sigma) {
    for (size_t i = 0; i < self.size(); ++i) {
      if (self[i] > 0) continue;
      if (first_rbf && i < sigma.size() && std::isnan(sigma[i])) continue;  // warned below
      out.warnings.push_back("Layer '" + rows[i] + "' of model " + label + " does not vary over the data (self-HSIC " +
                             std::to_string(self[i]) + "): its CKA values are null");
    }
  };
  warn_constant(out.self1, out.rows1, sides_[0].label, sigma1_);
  warn_constant(out.self2, out.rows2, sides_[1].label, sigma2_);
  auto warn_sigma = [&](const std::vector<double>& sigma, const std::vector<std::string>& rows,
                        const std::string& label) {
    for (size_t i = 0; i < sigma.size() && i < rows.size(); ++i) {
      if (!std::isnan(sigma[i])) continue;
      out.warnings.push_back("Layer '" + rows[i] + "' of model " + label +
                             " has no RBF sigma (the median squared distance of its first batch is 0): its rbf_cka "
                             "values are null");
    }
  };
  warn_sigma(sigma1_, out.rows1, sides_[0].label);
  warn_sigma(sigma2_, out.rows2, sides_[1].label);
  out.samples = samples_;
  out.batches = batches_;
  out.skipped = skipped_;
  return out;
}

}  // namespace tcka
