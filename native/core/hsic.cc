#include "hsic.h"

#include <cmath>
#include <limits>

namespace tcka {
namespace {

struct Prepared {
  at::Tensor flat;    // (r, n²) zero-diagonal Grams in the pair dtype
  at::Tensor rowsum;  // (r, n) K̃1
  at::Tensor total;   // (r) 1ᵀK̃1
  at::Tensor mask;    // (r) 1 where the layer varies over the batch, else 0
};

Prepared prepare(GramBatch batch, int64_t n, at::ScalarType pair_dtype) {
  const int64_t rows = batch.grams.size(0);
  // Rounding alone leaves ||Xc|| of a constant feature near eps·||X||; a layer
  // below 64 eps carries no signal in this precision.
  const double eps = batch.grams.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                              : std::numeric_limits<float>::epsilon();
  const double tolerance = (64.0 * eps) * (64.0 * eps);
  at::Tensor stats = batch.stats.to(at::kDouble);
  at::Tensor trace = stats.select(1, 0);
  at::Tensor norm = trace + stats.select(1, 1);
  at::Tensor varies = at::logical_and(trace > norm * tolerance, norm > 0);

  batch.grams.diagonal(0, 1, 2).zero_();
  Prepared out;
  out.flat = batch.grams.reshape({rows, n * n}).to(pair_dtype);
  batch.grams = at::Tensor();  // free the original when a copy was made
  out.rowsum = out.flat.view({rows, n, n}).sum(2);
  out.total = out.rowsum.sum(1);
  out.mask = varies.to(pair_dtype);
  return out;
}

}  // namespace

HsicAccumulator::HsicAccumulator(int64_t m, int64_t p, c10::Device device, at::ScalarType pair_dtype)
    : m_(m), p_(p), device_(device), pair_dtype_(pair_dtype) {
  const auto options = at::TensorOptions().dtype(at::kDouble).device(device);
  xy_ = at::zeros({m, p}, options);
  xx_ = at::zeros({m}, options);
  yy_ = at::zeros({p}, options);
}

BatchHsic HsicAccumulator::compute(GramBatch k, GramBatch l, int64_t n) const {
  if (k.grams.device() != device_) k = {k.grams.to(device_), k.stats.to(device_)};
  if (l.grams.device() != device_) l = {l.grams.to(device_), l.stats.to(device_)};
  const Prepared a = prepare(std::move(k), n, pair_dtype_);
  const Prepared b = prepare(std::move(l), n, pair_dtype_);

  const double nd = static_cast<double>(n);
  const double c_total = 1.0 / ((nd - 1.0) * (nd - 2.0));
  const double c_rows = 2.0 / (nd - 2.0);
  const double c_norm = 1.0 / (nd * (nd - 3.0));

  // tr(K̃ₐL̃_b) = <vec K̃ₐ, vec L̃_b> for symmetric Grams.
  at::Tensor trace = at::mm(a.flat, b.flat.t());
  at::Tensor rows = at::mm(a.rowsum, b.rowsum.t());
  at::Tensor xy = (trace + at::outer(a.total, b.total) * c_total - rows * c_rows) * c_norm;
  xy = xy * at::outer(a.mask, b.mask);

  auto self = [&](const Prepared& s) {
    at::Tensor tr = at::linalg_vector_norm(s.flat, 2, {1}, false, c10::nullopt).square();
    at::Tensor rs = s.rowsum.square().sum(1);
    return (tr + s.total.square() * c_total - rs * c_rows) * c_norm * s.mask;
  };
  return {xy.to(at::kDouble), self(a).to(at::kDouble), self(b).to(at::kDouble)};
}

void HsicAccumulator::add(const BatchHsic& batch) {
  xy_.add_(batch.xy);
  xx_.add_(batch.xx);
  yy_.add_(batch.yy);
}

}  // namespace tcka
