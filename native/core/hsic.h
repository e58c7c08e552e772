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

#include <vector>

#include "gram.h"

namespace tcka {

// The kernels compared (docs/measures.md): linear CKA on the centred Grams,
// RBF CKA (exp(-d²/(2σ²))) and the distance kernel (d = ||xᵢ - xⱼ||, whose
// HSIC₁ ratio is the bias-corrected distance correlation), both built from
// the squared distances d²ᵢⱼ = Kᵢᵢ + Kⱼⱼ - 2Kᵢⱼ of the centred Gram.
enum class Measure { kLinear, kRbf, kDcor };

struct BatchHsic {
  at::Tensor xy;  // (m, p)
  at::Tensor xx;  // (m)
  at::Tensor yy;  // (p)
};

// Per comparison row of `batch`: threshold·√(median of d² over all n²
// entries, the zero diagonal included), computed in float64 (numpy's median:
// the mean of the two middle values when n² is even).
std::vector<double> median_sigmas(const GramBatch& batch, int64_t n, double threshold);

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

  // One batch's HSIC terms of a kernel measure (kRbf or kDcor), one row per
  // comparison row. Reads the Grams (it does not change them), so call it
  // before compute(). `sigma1`/`sigma2` (kRbf): σ per row; a row whose σ is
  // not a positive finite number, and a layer constant over the batch, gives 0.
  BatchHsic compute_kernel(Measure measure, const GramBatch& k, const GramBatch& l, int64_t n,
                           const std::vector<double>& sigma1, const std::vector<double>& sigma2) const;

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
