#include "engine.h"

#include <ATen/Parallel.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/stack.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <optional>
#include <thread>

#include "blas.h"
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

GramBatch CKAEngine::run_side(const Side& side, const std::vector<at::Tensor>& inputs, int64_t n,
                              const std::string& batch, std::vector<Row>* planned,
                              std::vector<LeftOutLayer>* left_out) {
  std::unique_ptr<GramCollector> collector = collector_for(side, n);
  side.model->forward(inputs, *collector, batch, &cancelled_);
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
  return run_step(inputs1, inputs2, false);
}

StepOutcome CKAEngine::calibrate(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2) {
  if (!sums_.empty() || batches_ > 0) {
    throw CKAError(codes::kInvalidArg, "calibrate() only runs before any batch is compared", ErrorKind::Error);
  }
  return run_step(inputs1, inputs2, true);
}

StepOutcome CKAEngine::run_step(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2,
                                bool calibrate) {
  const int64_t index = calibrate ? 0 : steps_++;
  const std::string batch = "batch " + std::to_string(index);
  StepOutcome outcome;
  const int64_t n = batch_size(inputs1, "Batch " + std::to_string(index) + " of data 1");
  if (inputs2 != nullptr) {
    const int64_t n2 = batch_size(*inputs2, "Batch " + std::to_string(index) + " of data 2");
    if (n2 != n) {
      throw CKAError(codes::kBatchSizeMismatch,
                     "Step " + std::to_string(index) + ": data 1 gave " + std::to_string(n) +
                         " samples but data 2 gave " + std::to_string(n2) +
                         "; both models must see the same number of samples in a step",
                     ErrorKind::RangeError);
    }
  }
  outcome.n = n;
  if (n < 4) {
    if (calibrate) {
      outcome.skipped = true;
      outcome.skip_reason = "small";
      return outcome;
    }
    ++skipped_;
    outcome.skipped = true;
    outcome.skip_reason = "small";
    outcome.warnings.push_back("Skipped " + batch + ": it has " + std::to_string(n) +
                               " samples, and the unbiased HSIC estimator needs at least 4");
    return outcome;
  }

  const int threads = config_.threads > 0 ? config_.threads : at::get_num_threads();
  use_threads(threads);
  std::vector<Row> planned1, planned2;
  GramBatch k, l;
  bool shared = false, concurrent = false;
  if (sides_[0].model == sides_[1].model && inputs2 == nullptr) {
    // The same model on the same data: one forward pass feeds both sides,
    // and one set of Grams does when both pick the same layers.
    std::unique_ptr<GramCollector> c1 = collector_for(sides_[0], n);
    if (same_selection(sides_[0].selection, sides_[1].selection) && sides_[0].rows.size() == sides_[1].rows.size() &&
        sides_[0].views == sides_[1].views) {
      sides_[0].model->forward(inputs1, *c1, batch, &cancelled_);
      k = finish_side(sides_[0], *c1, batch, &planned1, &outcome.left_out);
      l = k;
      planned2 = planned1;
      // Both sides are the same model on the same data: model 2 leaves out what model 1 does.
      const size_t count = outcome.left_out.size();
      for (size_t i = 0; i < count; ++i) {
        LeftOutLayer copy = outcome.left_out[i];
        copy.model = 2;
        outcome.left_out.push_back(std::move(copy));
      }
      shared = true;
    } else {
      std::unique_ptr<GramCollector> c2 = collector_for(sides_[1], n);
      FanOut both(*c1, *c2);
      sides_[0].model->forward(inputs1, both, batch, &cancelled_);
      reused_ += c2->reused();
      k = finish_side(sides_[0], *c1, batch, &planned1, &outcome.left_out);
      l = finish_side(sides_[1], *c2, batch, &planned2, &outcome.left_out);
    }
    ++forwards_;
    reused_ += c1->reused();
  } else if (config_.concurrent) {
    // Model 2 on a second thread (and its own CUDA stream) while model 1 runs here.
    concurrent = true;
    std::exception_ptr failed2;
    std::vector<LeftOutLayer> left_out2;
    const std::vector<at::Tensor>& data2 = inputs2 != nullptr ? *inputs2 : inputs1;
    std::thread second([&] {
      try {
        use_threads(threads);
        const c10::Device device = sides_[1].model->device();
        std::optional<c10::StreamGuard> stream;
        if (!device.is_cpu()) {
          stream.emplace(c10::impl::VirtualGuardImpl(device.type()).getStreamFromGlobalPool(device));
        }
        l = run_side(sides_[1], data2, n, batch, &planned2, &left_out2);
        if (stream) stream->current_stream().synchronize();
      } catch (...) {
        failed2 = std::current_exception();
      }
    });
    std::exception_ptr failed1;
    try {
      k = run_side(sides_[0], inputs1, n, batch, &planned1, &outcome.left_out);
    } catch (...) {
      failed1 = std::current_exception();
    }
    second.join();
    if (failed1) std::rethrow_exception(failed1);
    if (failed2) std::rethrow_exception(failed2);
    outcome.left_out.insert(outcome.left_out.end(), left_out2.begin(), left_out2.end());
  } else {
    k = run_side(sides_[0], inputs1, n, batch, &planned1, &outcome.left_out);
    check_cancelled(batch);
    l = run_side(sides_[1], inputs2 != nullptr ? *inputs2 : inputs1, n, batch, &planned2, &outcome.left_out);
  }
  check_cancelled(batch);
  const std::vector<Row>& rows1 = sides_[0].rows.empty() ? planned1 : sides_[0].rows;
  const std::vector<Row>& rows2 = sides_[1].rows.empty() ? planned2 : sides_[1].rows;
  {
    const auto size = [](const GramBatch& g) { return g.grams.numel() * g.grams.element_size(); };
    const int64_t m = static_cast<int64_t>(rows1.size()), p = static_cast<int64_t>(rows2.size());
    last_.gram_bytes = shared ? size(k) : size(k) + size(l);
    last_.block_bytes = std::min<int64_t>(HsicAccumulator::kBlockBudget,
                                          (m + p) * n * n * static_cast<int64_t>(at::elementSize(config_.pair_dtype)));
    last_.accumulator_bytes = (m * p + m + p) * 8 * static_cast<int64_t>(config_.measures.size());
    last_.threads = threads;
    last_.concurrent = concurrent;
  }

  // RBF σ: fixed by the first accumulated batch (or restored), per row.
  std::vector<double> sigma1 = sigma1_, sigma2 = sigma2_;
  const bool fix_sigmas = has_rbf() && sigma1_.empty();
  if (fix_sigmas) {
    sigma1 = row_sigmas(rows1, k, n, config_.sigmas1);
    sigma2 = row_sigmas(rows2, l, n, config_.sigmas2);
  }
  if (calibrate) {
    check_cancelled(batch);
    if (sides_[0].rows.empty()) sides_[0].rows = std::move(planned1);
    if (sides_[1].rows.empty()) sides_[1].rows = std::move(planned2);
    if (fix_sigmas) {
      sigma1_ = std::move(sigma1);
      sigma2_ = std::move(sigma2);
    }
    return outcome;
  }
  std::vector<std::vector<int64_t>> shapes1 = std::move(k.shapes), shapes2 = std::move(l.shapes);

  std::vector<std::unique_ptr<HsicAccumulator>> fresh;
  if (sums_.empty()) {
    for (size_t i = 0; i < config_.measures.size(); ++i) {
      fresh.push_back(std::make_unique<HsicAccumulator>(static_cast<int64_t>(rows1.size()),
                                                        static_cast<int64_t>(rows2.size()), sides_[0].model->device(),
                                                        config_.pair_dtype));
    }
  }
  auto sums_of = [&](size_t i) -> HsicAccumulator& { return fresh.empty() ? *sums_[i] : *fresh[i]; };
  // The kernel measures read the Grams; the linear one (last) consumes them.
  std::vector<BatchHsic> all_terms(config_.measures.size());
  for (size_t i = 0; i < config_.measures.size(); ++i) {
    if (config_.measures[i] == Measure::kLinear) continue;
    check_cancelled(batch);
    all_terms[i] = sums_of(i).compute_kernel(config_.measures[i], k, l, n, sigma1, sigma2);
  }
  for (size_t i = 0; i < config_.measures.size(); ++i) {
    if (config_.measures[i] == Measure::kLinear) all_terms[i] = sums_of(i).compute(std::move(k), std::move(l), n);
  }
  const BatchHsic& terms = all_terms.front();

  bool finite = true;
  for (const BatchHsic& t : all_terms) {
    finite =
        finite &&
        at::stack({at::isfinite(t.xx).all(), at::isfinite(t.yy).all(), at::isfinite(t.xy).all()}).all().item<bool>();
  }
  if (!finite) {
    std::string where;
    auto first_bad = [](const at::Tensor& t) { return at::nonzero(at::logical_not(at::isfinite(t.cpu()))); };
    at::Tensor bad1 = first_bad(terms.xx);
    at::Tensor bad2 = first_bad(terms.yy);
    if (bad1.size(0) > 0) {
      where = "layer '" + rows1[static_cast<size_t>(bad1[0][0].item<int64_t>())].name + "' of model " + sides_[0].label;
    } else if (bad2.size(0) > 0) {
      where = "layer '" + rows2[static_cast<size_t>(bad2[0][0].item<int64_t>())].name + "' of model " + sides_[1].label;
    } else {
      where = "a layer pair";
    }
    if (config_.skip_non_finite) {
      check_cancelled(batch);
      ++skipped_;
      outcome.skipped = true;
      outcome.skip_reason = "non_finite";
      outcome.warnings.push_back("Skipped " + batch + ": non-finite values (NaN or Inf) in the output of " + where);
      return outcome;
    }
    throw CKAError(codes::kNonFinite, "Non-finite values (NaN or Inf) in the output of " + where + " on " + batch +
                                          "; nothing from this batch was added (the option skipNonFinite skips such "
                                          "batches instead)");
  }

  check_cancelled(batch);
  if (!fresh.empty()) sums_ = std::move(fresh);
  if (sides_[0].rows.empty()) sides_[0].rows = std::move(planned1);
  if (sides_[1].rows.empty()) sides_[1].rows = std::move(planned2);
  if (sides_[0].shapes.size() != sides_[0].rows.size()) sides_[0].shapes = std::move(shapes1);
  if (sides_[1].shapes.size() != sides_[1].rows.size()) sides_[1].shapes = std::move(shapes2);
  if (fix_sigmas) {
    sigma1_ = std::move(sigma1);
    sigma2_ = std::move(sigma2);
  }
  for (size_t i = 0; i < sums_.size(); ++i) sums_[i]->add(all_terms[i]);
  ++batches_;
  samples_ += n;
  return outcome;
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
  EngineStats out = last_;
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
