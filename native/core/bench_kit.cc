#include "bench_kit.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include "blas.h"
#include "errors.h"

namespace tcka {
namespace {

constexpr int64_t kInner = 2048;  // k of the BLAS rates

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int use_threads(int threads) {
  if (threads > 0) {
    at::set_num_threads(threads);
    set_blas_threads(threads);
  }
  return at::get_num_threads();
}

// The fastest of the calls after one warm-up: at least 3 of them and 0.2 s.
template <typename Call>
double best_seconds(Call&& call) {
  call();
  double best = std::numeric_limits<double>::infinity(), total = 0;
  for (int calls = 0; calls < 3 || total < 0.2; ++calls) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const double s = seconds_since(t0);
    best = std::min(best, s);
    total += s;
  }
  return best;
}

// Hands on the output of each wanted (layer, call) as it comes, with no copy,
// as a forward hook keeps it (a later in-place op in the model changes it).
class FirstCalls : public TapReceiver {
 public:
  // wanted[layer]: the (call, slot) pairs to keep.
  FirstCalls(const std::vector<std::vector<std::pair<int64_t, size_t>>>& wanted, size_t slots)
      : wanted_(wanted), calls_(wanted.size(), 0), kept_(slots) {}

  void on_tap(int64_t layer, const c10::IValue& output) noexcept override {
    if (layer < 0 || static_cast<size_t>(layer) >= wanted_.size()) return;
    const int64_t call = ++calls_[static_cast<size_t>(layer)];
    if (!output.isTensor()) return;
    for (const auto& [want, slot] : wanted_[static_cast<size_t>(layer)]) {
      if (want == call) kept_[slot] = output.toTensor();
    }
  }

  const at::Tensor& kept(size_t slot) const { return kept_[slot]; }

 private:
  const std::vector<std::vector<std::pair<int64_t, size_t>>>& wanted_;
  std::vector<int64_t> calls_;
  std::vector<at::Tensor> kept_;
};

// One model's selected layers and, after batch 0, the rows it kept.
struct Side {
  const Model* model = nullptr;
  std::string label;
  std::vector<std::vector<std::pair<int64_t, size_t>>> wanted;  // per layer index
  std::vector<std::string> names;                               // per slot
  std::vector<size_t> rows;                                     // slots kept
  std::vector<int64_t> features;                                // d per row
};

Side make_side(const Model& model, const std::vector<std::string>& names) {
  Side side;
  side.model = &model;
  side.label = "'" + model_base_name(model.path()) + "'";
  side.wanted.resize(model.layers().size());
  for (const auto& entry : model.select(names).entries) {
    const int64_t call = entry.call == 0 ? 1 : entry.call;  // the first call unless named
    side.wanted[static_cast<size_t>(entry.layer)].emplace_back(call, side.names.size());
    side.names.push_back(row_name(model.layers()[static_cast<size_t>(entry.layer)].name, call));
  }
  return side;
}

bool fits(const at::Tensor& t, int64_t n) { return t.defined() && t.dim() >= 1 && t.size(0) == n; }

// Runs the model on one batch and returns the Grams of its rows, (m, n, n)
// float32 of the uncentred features, diagonals zeroed. Batch 0 fixes the rows.
at::Tensor side_grams(Side& side, const at::Tensor& batch, int64_t n, size_t index) {
  const std::string what = "batch " + std::to_string(index);
  FirstCalls taps(side.wanted, side.names.size());
  side.model->forward({batch}, taps, what);
  if (index == 0) {
    for (size_t slot = 0; slot < side.names.size(); ++slot) {
      if (!fits(taps.kept(slot), n)) continue;  // not a tensor, or not the batch first
      side.rows.push_back(slot);
      side.features.push_back(taps.kept(slot).numel() / n);
    }
    if (side.rows.empty()) {
      throw CKAError(codes::kNoLayers, "No chosen layer of model " + side.label +
                                           " gave a tensor with the batch as first dimension during batch 0");
    }
  }
  std::vector<at::Tensor> grams;
  for (const size_t slot : side.rows) {
    const at::Tensor& out = taps.kept(slot);
    if (!fits(out, n)) {
      throw CKAError(codes::kLayerNotRun, "Layer '" + side.names[slot] + "' of model " + side.label +
                                              " gave no tensor with the batch as first dimension during " + what +
                                              " (it did during batch 0)");
    }
    const at::Tensor x = out.reshape({n, -1}).to(at::kFloat);
    grams.push_back(at::mm(x, x.t()));
  }
  at::Tensor k = at::stack(grams);
  k.diagonal(0, 1, 2).zero_();
  return k;
}

// What the unbiased HSIC needs of a stack of Grams K̃: K̃ flattened, K̃1, 1ᵀK̃1.
struct Terms {
  at::Tensor flat, rows, totals;
};

Terms terms_of(const at::Tensor& k) { return {k.view({k.size(0), -1}), k.sum(2), k.sum({1, 2})}; }

// HSIC1 = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n-1)(n-2)) - 2/(n-2)·(K̃1)·(L̃1)] / (n(n-3)),
// for all pairs (trace, outer, rows: m x p) or for each K with itself (m).
at::Tensor hsic1(const at::Tensor& trace, const at::Tensor& outer, const at::Tensor& rows, int64_t n) {
  const double nd = static_cast<double>(n);
  return (trace + outer / ((nd - 1) * (nd - 2)) - rows * (2.0 / (nd - 2))) / (nd * (nd - 3));
}

}  // namespace

BlasRates measure_blas_rates(int64_t n, int64_t m, int64_t p, int threads) {
  if (n < 1 || m < 1 || p < 1) {
    throw CKAError(codes::kInvalidArg, "Expected n, m and p of the BLAS rates to be at least 1", ErrorKind::RangeError);
  }
  BlasRates rates;
  rates.threads = use_threads(threads);
  rates.n = n;
  rates.m = m;
  rates.p = p;
  rates.k = kInner;
  at::manual_seed(0);
  const double k = static_cast<double>(kInner);

  const at::Tensor x = at::randn({n, kInner});
  at::Tensor gram = at::empty({n, n});
  const double syrk_s = best_seconds([&] { gram_product(x, gram); });
  // The whole n x n product's count, n(n+1)·k: syrk does n(n+1)/2·k
  // multiply-adds, 2 FLOPs each.
  rates.ssyrk_gflops = static_cast<double>(n) * static_cast<double>(n + 1) * k / syrk_s / 1e9;

  const double gemm_flops = 2.0 * static_cast<double>(m) * static_cast<double>(p) * k;
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const at::Tensor a = at::randn({m, kInner}, at::TensorOptions().dtype(dtype));
    const at::Tensor b = at::randn({kInner, p}, at::TensorOptions().dtype(dtype));
    at::Tensor c = at::empty({m, p}, at::TensorOptions().dtype(dtype));
    const double s = best_seconds([&] { at::mm_out(c, a, b); });
    (dtype == at::kFloat ? rates.sgemm_gflops : rates.dgemm_gflops) = gemm_flops / s / 1e9;
  }
  return rates;
}

PeerRun peer_baseline(const Model& m1, const Model& m2, const std::vector<std::string>& layers1,
                      const std::vector<std::string>& layers2, const std::vector<at::Tensor>& batches, int threads) {
  if (batches.empty()) throw CKAError(codes::kInvalidArg, "Expected at least one batch", ErrorKind::RangeError);
  for (size_t b = 0; b < batches.size(); ++b) {
    if (!batches[b].defined() || batches[b].dim() < 1 || batches[b].size(0) < 4) {
      throw CKAError(codes::kInvalidBatch,
                     "Expected batch " + std::to_string(b) + " to have a batch dimension of at least 4 samples",
                     ErrorKind::RangeError);
    }
  }
  Side side1 = make_side(m1, layers1), side2 = make_side(m2, layers2);
  use_threads(threads);

  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor xy, xx, yy;  // float32 sums over the batches, as the peer keeps them
  for (size_t b = 0; b < batches.size(); ++b) {
    const int64_t n = batches[b].size(0);
    const Terms k = terms_of(side_grams(side1, batches[b], n, b));
    const Terms l = terms_of(side_grams(side2, batches[b], n, b));
    const at::Tensor pair =
        hsic1(at::mm(k.flat, l.flat.t()), k.totals.unsqueeze(1) * l.totals.unsqueeze(0), at::mm(k.rows, l.rows.t()), n);
    const at::Tensor self1 = hsic1(k.flat.square().sum(1), k.totals.square(), k.rows.square().sum(1), n);
    const at::Tensor self2 = hsic1(l.flat.square().sum(1), l.totals.square(), l.rows.square().sum(1), n);
    if (b == 0) {
      xy = pair;
      xx = self1;
      yy = self2;
    } else {
      xy += pair;
      xx += self1;
      yy += self2;
    }
  }
  const at::Tensor cka = (xy / (xx.unsqueeze(1) * yy.unsqueeze(0)).sqrt()).to(at::kDouble).cpu().contiguous();
  PeerRun run;
  run.seconds = seconds_since(t0);

  for (const size_t slot : side1.rows) run.rows1.push_back(side1.names[slot]);
  for (const size_t slot : side2.rows) run.rows2.push_back(side2.names[slot]);
  run.features1 = side1.features;
  run.features2 = side2.features;
  const double* values = cka.data_ptr<double>();
  run.cka.assign(values, values + cka.numel());
  for (double& v : run.cka) {
    if (!std::isfinite(v)) v = std::nan("");
  }
  return run;
}

}  // namespace tcka
