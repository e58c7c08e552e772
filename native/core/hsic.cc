#include "hsic.h"

#include <ATen/ATen.h>  // tensor arithmetic operators (TensorOperators.h needs all of Functions.h)
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace tcka {
namespace {

// 1 where the layer varies over the batch, else 0. Rounding alone leaves
// ||Xc|| of a constant feature near eps·||X||; a layer below 64 eps carries
// no signal in this precision.
at::Tensor varies_mask(const GramBatch& batch, int64_t n, at::ScalarType pair_dtype) {
  const double eps = batch.grams.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                              : std::numeric_limits<float>::epsilon();
  const double tolerance = (64.0 * eps) * (64.0 * eps);
  // ||Xc||²: from the float64 pass over the feature where the tap made one,
  // else tr(K), taken here for all slots at once; ||X||² = ||Xc||² + n·||mean||².
  at::Tensor trace = batch.spreads.defined() ? batch.spreads.to(batch.grams.device())
                                             : batch.grams.diagonal(0, 1, 2).sum(1, false, at::kDouble);
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

// The row sums K̃1 and ||K̃||² of every slot (K̃: K without its diagonal), in
// float64, where the taps did not make them.
// (Only these Grams need both triangles.)
void ensure_stats(GramBatch& batch) {
  if (batch.row_sums.defined() && batch.squares.defined()) return;
  const at::Tensor g = batch.grams.to(at::kDouble);
  const at::Tensor diagonal = g.diagonal(0, 1, 2);
  batch.row_sums = g.sum(2) - diagonal;
  batch.squares = g.square().sum({1, 2}) - diagonal.square().sum(1);
}

BatchHsic HsicAccumulator::compute(GramBatch k, GramBatch l, int64_t n) const {
  const bool shared = k.grams.is_same(l.grams);
  for (GramBatch* g : {&k, &l}) {
    ensure_stats(*g);
    if (g->grams.device() == device_) continue;
    g->grams = g->grams.to(device_);
    g->mean_norms = g->mean_norms.to(device_);
  }
  if (shared) l.grams = k.grams;
  const at::Tensor mask_a = varies_mask(k, n, pair_dtype_);
  const at::Tensor mask_b = varies_mask(l, n, pair_dtype_);
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

// d² of one slot in float64: Kᵢᵢ + Kⱼⱼ - 2Kᵢⱼ, clamped at 0, diagonal exactly
// 0. From the Gram's upper triangle (the taps fill only that one).
at::Tensor squared_distances(const at::Tensor& gram) {
  const at::Tensor upper = gram.to(at::kDouble).triu();
  const at::Tensor g = upper + upper.triu(1).t();
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
    GramBatch kernel_batch;
    kernel_batch.grams = out;
    return kernel_batch;
  };
  at::Tensor mask_a, mask_b;
  GramBatch ka = kernels(k, sigma1, &mask_a);
  GramBatch lb = kernels(l, sigma2, &mask_b);
  ensure_stats(ka);
  ensure_stats(lb);
  return hsic_products(std::move(ka), std::move(lb), n, mask_a, mask_b, device_, pair_dtype_);
}

namespace {

// Length of the float32 sums in a float32 panel product (pair dtype kFloat)
// before they are added into float64.
constexpr int64_t kFloat32PanelWidth = 4096;

// The strict upper triangle of rows [i0, i1) of every slot of `grams`
// (slots, n, n), one slot per row of `to` (slots, Σ (n - 1 - i)), converted
// to `to`'s dtype.
template <typename From, typename To>
void pack_upper(const at::Tensor& grams, int64_t i0, int64_t i1, at::Tensor& to) {
  const int64_t slots = grams.size(0), n = grams.size(1), width = to.size(1);
  const From* from = grams.data_ptr<From>();
  To* out = to.data_ptr<To>();
  at::parallel_for(0, slots, 1, [&](int64_t begin, int64_t end) {
    for (int64_t a = begin; a < end; ++a) {
      To* dst = out + a * width;
      const From* gram = from + a * n * n;
      for (int64_t i = i0; i < i1; ++i) {
        const From* src = gram + i * n;
        for (int64_t j = i + 1; j < n; ++j) *dst++ = static_cast<To>(src[j]);
      }
    }
  });
}

at::Tensor pack_panel_into(const at::Tensor& grams, int64_t i0, int64_t i1, at::Tensor to, at::ScalarType dtype);

// `buffer`, when defined and large enough on the CPU, holds the packed panel (no fresh pages per panel).
at::Tensor pack_panel(const at::Tensor& grams, int64_t i0, int64_t i1, int64_t width, at::ScalarType dtype,
                      at::Tensor* buffer = nullptr) {
  if (!grams.device().is_cpu() || !grams.is_contiguous()) {
    const int64_t n = grams.size(1);
    std::vector<at::Tensor> parts;
    for (int64_t i = i0; i < i1; ++i) parts.push_back(grams.select(1, i).slice(1, i + 1, n));
    return at::cat(parts, 1).to(dtype);
  }
  const int64_t size = grams.size(0) * width;
  if (buffer == nullptr || !buffer->defined() || buffer->numel() < size || buffer->scalar_type() != dtype) {
    at::Tensor fresh = at::empty({size}, at::TensorOptions().dtype(dtype));
    advise_huge_pages(fresh);
    if (buffer != nullptr) *buffer = fresh;
    return pack_panel_into(grams, i0, i1, fresh.view({grams.size(0), width}), dtype);
  }
  return pack_panel_into(grams, i0, i1, buffer->narrow(0, 0, size).view({grams.size(0), width}), dtype);
}

at::Tensor pack_panel_into(const at::Tensor& grams, int64_t i0, int64_t i1, at::Tensor to, at::ScalarType dtype) {
  const int64_t width = to.size(1);
  const bool from_float = grams.scalar_type() == at::kFloat;
  if (dtype == at::kDouble) {
    from_float ? pack_upper<float, double>(grams, i0, i1, to) : pack_upper<double, double>(grams, i0, i1, to);
  } else if (dtype == at::kFloat) {
    from_float ? pack_upper<float, float>(grams, i0, i1, to) : pack_upper<double, float>(grams, i0, i1, to);
  } else {
    return pack_panel(grams.to(at::kDouble), i0, i1, width, at::kDouble).to(dtype);
  }
  return to;
}

}  // namespace

// tr(K̃L̃) for every pair of slots, in float64: the Grams are symmetric, so
// it is twice the sum over their strict upper triangles, which are packed
// in panels of rows into the pair dtype and multiplied (m x w)·(w x p) panel
// by panel; float32 panel products are added into the float64 sums panel by
// panel (kFloat32PanelWidth bounds the float32 sums' length).
at::Tensor pair_traces(const at::Tensor& ka, const at::Tensor& lb, int64_t n, c10::Device device,
                       at::ScalarType pair_dtype) {
  const bool shared = ka.is_same(lb);
  const int64_t m = ka.size(0), p = lb.size(0);
  const int64_t grams = shared ? m : m + p;
  at::Tensor trace = at::zeros({m, p}, at::TensorOptions().dtype(at::kDouble).device(device));
  const int64_t element = static_cast<int64_t>(at::elementSize(pair_dtype));
  int64_t limit = std::max<int64_t>(n, HsicAccumulator::kBlockBudget / std::max<int64_t>(1, grams * element));
  if (pair_dtype != at::kDouble) limit = std::min<int64_t>(limit, std::max<int64_t>(n, kFloat32PanelWidth));
  at::Tensor buffer_a, buffer_b;
  int64_t i0 = 0;
  while (i0 < n - 1) {
    int64_t i1 = i0, width = 0;
    while (i1 < n - 1 && (width == 0 || width + (n - 1 - i1) <= limit)) {
      width += n - 1 - i1;
      ++i1;
    }
    const at::Tensor a = pack_panel(ka, i0, i1, width, pair_dtype, &buffer_a).to(device);
    const at::Tensor b = shared ? a : pack_panel(lb, i0, i1, width, pair_dtype, &buffer_b).to(device);
    if (pair_dtype == at::kDouble) {
      trace.addmm_(a, b.t(), 1.0, 2.0);
    } else {
      trace.add_(at::mm(a, b.t()).to(at::kDouble), 2.0);
    }
    i0 = i1;
  }
  return trace;
}

BatchHsic hsic_products(GramBatch k, GramBatch l, int64_t n, const at::Tensor& mask_a, const at::Tensor& mask_b,
                        c10::Device device_, at::ScalarType pair_dtype_) {
  // tr(K̃L̃) from the Grams' upper triangles; the row sums K̃1 and ||K̃||²
  // were made with the Grams (ensure_stats()).
  const at::Tensor trace = pair_traces(k.grams, l.grams, n, device_, pair_dtype_);
  const auto to_pair = [&](const at::Tensor& t) { return t.to(device_, at::kDouble); };
  const at::Tensor rows_a = to_pair(k.row_sums), rows_b = to_pair(l.row_sums);
  const at::Tensor square_a = to_pair(k.squares), square_b = to_pair(l.squares);
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
  xy = xy * at::outer(mask_a.to(at::kDouble), mask_b.to(at::kDouble));
  auto self = [&](const at::Tensor& square, const at::Tensor& row_sums, const at::Tensor& total,
                  const at::Tensor& mask) {
    return (square + total.square() * c_total - row_sums.square().sum(1) * c_rows) * c_norm * mask.to(at::kDouble);
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
