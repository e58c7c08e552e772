// Minibatch HSIC accumulators for all layer pairs at once (Nguyen, Raghu,
// Kornblith 2021, eq. 3, with the unbiased estimator of Song et al. 2012):
//
//   HSIC1(K, L) = [ tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1 ] / (n(n-3))
//
// where K̃ is K with a zero diagonal. For m Grams of model 1 and p of model 2,
// the traces are (m x n²)·(n² x p) products over the blocks on and above the
// diagonal (the Grams are symmetric), and every 1ᵀK̃L̃1 one (m x n)·(n x p)
// product of row sums. Sums are kept in float64.
#pragma once

#include <ATen/core/Tensor.h>

#include "gram.h"

namespace tcka {

struct BatchHsic {
  at::Tensor xy;  // (m, p)
  at::Tensor xx;  // (m)
  at::Tensor yy;  // (p)
};

class HsicAccumulator {
 public:
  // Bytes of pair-dtype copies of Gram blocks alive at once in compute().
  static constexpr int64_t kBlockBudget = 32LL << 20;

  // `pair_dtype`: the precision of the pair products (kDouble by default;
  // kFloat trades accuracy for speed on large m·p·n²).
  HsicAccumulator(int64_t m, int64_t p, c10::Device device, at::ScalarType pair_dtype);

  // One batch's HSIC terms. Consumes the Grams (their diagonals are zeroed in
  // place). Layers that are constant over the batch (||Xc|| negligible next
  // to ||X||, i.e. only rounding noise) contribute exactly 0.
  BatchHsic compute(GramBatch k, GramBatch l, int64_t n) const;

  void add(const BatchHsic& batch);
  // Replaces the sums (float64 CPU tensors of the accumulator's shapes).
  void set(const at::Tensor& xy, const at::Tensor& xx, const at::Tensor& yy);

  at::Tensor xy() const { return xy_; }
  at::Tensor xx() const { return xx_; }
  at::Tensor yy() const { return yy_; }
  int64_t m() const { return m_; }
  int64_t p() const { return p_; }

 private:
  int64_t m_, p_;
  c10::Device device_;
  at::ScalarType pair_dtype_;
  at::Tensor xy_, xx_, yy_;  // float64 sums
};

}  // namespace tcka
