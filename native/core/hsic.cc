#include "hsic.h"

#include <ATen/ATen.h>  // tensor arithmetic operators (TensorOperators.h needs all of Functions.h)

#include <algorithm>
#include <cmath>
#include <limits>

namespace tcka {
namespace {

// Rows per block of the Gram matrices: small enough that a block of all
// m + p Grams in the pair dtype stays within `budget` bytes, and about n/16
// so that the blocks above the diagonal are most of the work.
int64_t block_rows(int64_t grams, int64_t n, int64_t element_bytes, int64_t budget) {
  const int64_t by_memory = budget / std::max<int64_t>(1, grams * n * element_bytes);
  return std::max<int64_t>(1, std::min({by_memory, (n + 15) / 16, n}));
}

// 1 where the layer varies over the batch, else 0. Rounding alone leaves
// ||Xc|| of a constant feature near eps·||X||; a layer below 64 eps carries
// no signal in this precision.
at::Tensor varies_mask(const GramBatch& batch, int64_t n, at::ScalarType pair_dtype) {
  const double eps = batch.grams.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                              : std::numeric_limits<float>::epsilon();
  const double tolerance = (64.0 * eps) * (64.0 * eps);
  // ||Xc||² = tr(K), taken here for all slots at once; ||X||² = tr(K) + n·||mean||².
  at::Tensor trace = batch.grams.diagonal(0, 1, 2).sum(1, false, at::kDouble);
  at::Tensor norm = trace + batch.mean_norms.to(at::kDouble) * static_cast<double>(n);
  return at::logical_and(trace > norm * tolerance, norm > 0).to(pair_dtype);
}

}  // namespace

// The HSIC terms of two sets of Grams whose diagonals are already zero, times
// the masks (one per slot of `k`/`l`), picked out by their row maps.
BatchHsic hsic_products(GramBatch k, GramBatch l, int64_t n, const at::Tensor& mask_a, const at::Tensor& mask_b,
                        c10::Device device_, at::ScalarType pair_dtype_);

HsicAccumulator::HsicAccumulator(int64_t m, int64_t p, c10::Device device, at::ScalarType pair_dtype)
    : m_(m), p_(p), device_(device), pair_dtype_(pair_dtype) {
  const auto options = at::TensorOptions().dtype(at::kDouble).device(device);
  xy_ = at::zeros({m, p}, options);
  xx_ = at::zeros({m}, options);
  yy_ = at::zeros({p}, options);
}

void HsicAccumulator::set(const at::Tensor& xy, const at::Tensor& xx, const at::Tensor& yy) {
  xy_.copy_(xy.reshape({m_, p_}));
  xx_.copy_(xx.reshape({m_}));
  yy_.copy_(yy.reshape({p_}));
}

BatchHsic HsicAccumulator::compute(GramBatch k, GramBatch l, int64_t n) const {
  for (GramBatch* g : {&k, &l}) {
    if (g->grams.device() == device_) continue;
    g->grams = g->grams.to(device_);
    g->mean_norms = g->mean_norms.to(device_);
  }
  const at::Tensor mask_a = varies_mask(k, n, pair_dtype_);
  const at::Tensor mask_b = varies_mask(l, n, pair_dtype_);
  // K̃: the Grams with a zero diagonal.
  k.grams.diagonal(0, 1, 2).zero_();
  l.grams.diagonal(0, 1, 2).zero_();
  return hsic_products(std::move(k), std::move(l), n, mask_a, mask_b, device_, pair_dtype_);
}

namespace {

// Rows of `batch` as one tensor (rows, n, n), and the row map's index tensor.
at::Tensor row_index(const GramBatch& batch) {
  std::vector<int64_t> rows = batch.rows;
  if (rows.empty()) {
    for (int64_t i = 0; i < batch.grams.size(0); ++i) rows.push_back(i);
  }
  return at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(batch.grams.device());
}

// d² of one slot in float64: Kᵢᵢ + Kⱼⱼ - 2Kᵢⱼ, clamped at 0, diagonal exactly 0.
at::Tensor squared_distances(const at::Tensor& gram) {
  const at::Tensor g = gram.to(at::kDouble);
  const at::Tensor diag = g.diagonal().clone();
  at::Tensor d2 = (diag.unsqueeze(1) + diag.unsqueeze(0) - g * 2.0).clamp_min_(0.0);
  d2.diagonal().zero_();
  return d2;
}

}  // namespace

std::vector<double> median_sigmas(const GramBatch& batch, int64_t n, double threshold) {
  const at::Tensor index = row_index(batch).cpu();
  std::vector<double> out;
  for (int64_t r = 0; r < index.size(0); ++r) {
    const at::Tensor d2 = squared_distances(batch.grams[index[r].item<int64_t>()]).reshape({-1}).cpu();
    // Selection, not a sort: the k-th smallest (1-based) of the n² values.
    const int64_t count = n * n;
    auto kth = [&](int64_t k) { return std::get<0>(d2.kthvalue(k)).item<double>(); };
    const double median = count % 2 == 1 ? kth(count / 2 + 1) : 0.5 * (kth(count / 2) + kth(count / 2 + 1));
    out.push_back(threshold * std::sqrt(median));
  }
  return out;
}

BatchHsic HsicAccumulator::compute_kernel(Measure measure, const GramBatch& k, const GramBatch& l, int64_t n,
                                          const std::vector<double>& sigma1, const std::vector<double>& sigma2) const {
  // One kernel per comparison row (two rows sharing a slot may have two σ),
  // built slot by slot in float64 and kept in the pair dtype with a zero diagonal.
  auto kernels = [&](const GramBatch& batch, const std::vector<double>& sigma, at::Tensor* mask) {
    const at::Tensor index = row_index(batch);
    const int64_t rows = index.size(0);
    *mask = varies_mask(batch, n, pair_dtype_).to(device_).index_select(0, index.to(device_));
    at::Tensor out = at::empty({rows, n, n}, at::TensorOptions().dtype(pair_dtype_).device(device_));
    const at::Tensor cpu_index = index.cpu();
    std::vector<double> usable(static_cast<size_t>(rows), 1.0);
    for (int64_t r = 0; r < rows; ++r) {
      at::Tensor d2 = squared_distances(batch.grams[cpu_index[r].item<int64_t>()].to(device_));
      at::Tensor kernel;
      if (measure == Measure::kRbf) {
        const double s = static_cast<size_t>(r) < sigma.size() ? sigma[static_cast<size_t>(r)] : 0.0;
        if (!(s > 0) || !std::isfinite(s)) {
          usable[static_cast<size_t>(r)] = 0.0;
          out[r].zero_();
          continue;
        }
        kernel = (d2 * (-1.0 / (2.0 * s * s))).exp_();
      } else {
        kernel = d2.sqrt_();
      }
      kernel.diagonal().zero_();
      out[r].copy_(kernel);
    }
    *mask = *mask * at::tensor(usable, at::TensorOptions().dtype(at::kDouble)).to(device_, pair_dtype_);
    return GramBatch{out, at::Tensor(), {}};
  };
  at::Tensor mask_a, mask_b;
  GramBatch ka = kernels(k, sigma1, &mask_a);
  GramBatch lb = kernels(l, sigma2, &mask_b);
  return hsic_products(std::move(ka), std::move(lb), n, mask_a, mask_b, device_, pair_dtype_);
}

BatchHsic hsic_products(GramBatch k, GramBatch l, int64_t n, const at::Tensor& mask_a, const at::Tensor& mask_b,
                        c10::Device device_, at::ScalarType pair_dtype_) {
  // The Grams are symmetric, so tr(K̃L̃) = Σᵢⱼ K̃ᵢⱼL̃ᵢⱼ needs only the blocks on
  // and above the diagonal: for rows I = [i0, i1), the diagonal block counts
  // once and the block right of it, columns [i1, n), twice. Each block of all
  // Grams is copied into the pair dtype once, so the float64 copies never
  // exceed the block budget. The same blocks give the row sums K̃1 (rows I
  // from the block's rows, columns [i1, n) from its columns) and ||K̃||².
  const int64_t m = k.grams.size(0), p = l.grams.size(0);
  const auto options = at::TensorOptions().dtype(pair_dtype_).device(device_);
  at::Tensor trace = at::zeros({m, p}, options);
  at::Tensor rows_a = at::zeros({m, n}, options), rows_b = at::zeros({p, n}, options);
  at::Tensor square_a = at::zeros({m}, options), square_b = at::zeros({p}, options);
  const int64_t b = block_rows(m + p, n, at::elementSize(pair_dtype_), HsicAccumulator::kBlockBudget);
  for (int64_t i0 = 0; i0 < n; i0 += b) {
    const int64_t i1 = std::min(n, i0 + b), rows = i1 - i0;
    // Rows [i0, i1), columns [c0, c1) of every Gram, as a contiguous copy in the pair dtype.
    auto block = [&](const at::Tensor& grams, int64_t c0, int64_t c1) {
      return grams.slice(1, i0, i1).slice(2, c0, c1).to(pair_dtype_).contiguous();
    };
    auto add_block = [&](const at::Tensor& ga, const at::Tensor& gb, int64_t c0, int64_t c1, double weight) {
      const at::Tensor da = block(ga, c0, c1), db = block(gb, c0, c1);
      const int64_t cols = da.size(2);
      trace.addmm_(da.view({m, rows * cols}), db.view({p, rows * cols}).t(), 1.0, weight);
      square_a.add_(da.square().sum({1, 2}), weight);
      square_b.add_(db.square().sum({1, 2}), weight);
      rows_a.slice(1, i0, i1).add_(da.sum(2));
      rows_b.slice(1, i0, i1).add_(db.sum(2));
      if (c0 != i0) {  // by symmetry, the block's column sums are the row sums of rows [i1, n)
        rows_a.slice(1, i1, n).add_(da.sum(1));
        rows_b.slice(1, i1, n).add_(db.sum(1));
      }
    };
    add_block(k.grams, l.grams, i0, i1, 1.0);
    if (i1 < n) add_block(k.grams, l.grams, i1, n, 2.0);
  }
  // Rows that share a slot, or slots no row uses (the first batch records
  // every call of a layer), are sorted out on the small results.
  const auto index = [&](const std::vector<int64_t>& rows) {
    return at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(device_);
  };
  const bool pick_a = !k.rows.empty(), pick_b = !l.rows.empty();
  const at::Tensor rows_k = pick_a ? index(k.rows) : at::Tensor(), rows_l = pick_b ? index(l.rows) : at::Tensor();
  k = GramBatch();  // the Grams are no longer needed
  l = GramBatch();

  const double nd = static_cast<double>(n);
  const double c_total = 1.0 / ((nd - 1.0) * (nd - 2.0));
  const double c_rows = 2.0 / (nd - 2.0);
  const double c_norm = 1.0 / (nd * (nd - 3.0));
  const at::Tensor total_a = rows_a.sum(1), total_b = rows_b.sum(1);

  at::Tensor xy = (trace + at::outer(total_a, total_b) * c_total - at::mm(rows_a, rows_b.t()) * c_rows) * c_norm;
  xy = xy * at::outer(mask_a, mask_b);
  auto self = [&](const at::Tensor& square, const at::Tensor& row_sums, const at::Tensor& total,
                  const at::Tensor& mask) {
    return (square + total.square() * c_total - row_sums.square().sum(1) * c_rows) * c_norm * mask;
  };
  at::Tensor xx = self(square_a, rows_a, total_a, mask_a), yy = self(square_b, rows_b, total_b, mask_b);
  if (pick_a) {
    xy = xy.index_select(0, rows_k);
    xx = xx.index_select(0, rows_k);
  }
  if (pick_b) {
    xy = xy.index_select(1, rows_l);
    yy = yy.index_select(0, rows_l);
  }
  return {xy.to(at::kDouble).contiguous(), xx.to(at::kDouble), yy.to(at::kDouble)};
}

void HsicAccumulator::add(const BatchHsic& batch) {
  xy_.add_(batch.xy);
  xx_.add_(batch.xx);
  yy_.add_(batch.yy);
}

}  // namespace tcka
