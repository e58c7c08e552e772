// Full-batch measures (issue 16, docs/full-batch.md): every similarity
// measure of docs/measures.md computed for all layer pairs from the N x N
// Gram matrices of one evaluation set. Each measure is invariant to rotations
// of the feature space, so the Gram is all it needs: one float64
// eigendecomposition of the centred Gram per layer (not per pair) serves CCA,
// SVCCA and Procrustes; distances come from d²ᵢⱼ = Kᵢᵢ + Kⱼⱼ - 2Kᵢⱼ and
// cosines from the uncentred Gram.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace tcka {

// The measure ids of the API, in this order.
enum class FullMeasure {
  kCka,              // "cka": debiased linear CKA (unbiased HSIC₁ on the one set)
  kLinearCkaBiased,  // "linear_cka_biased": <Kc, Lc> / (|Kc| |Lc|)
  kRbfCka,           // "rbf_cka": unbiased HSIC₁ on RBF Grams
  kRbfCkaBiased,     // "rbf_cka_biased": biased CKA on RBF Grams (Kornblith et al.'s gram_rbf + cka)
  kDcor,             // "dcor": bias-corrected distance correlation R*
  kCcaRho,           // "cca_rho": mean canonical correlation
  kCcaR2,            // "cca_r2": mean squared canonical correlation
  kSvcca,            // "svcca": cca_rho on each side's top principal directions (svcca_variance of the variance)
  kProcrustes,       // "procrustes": |X̂ᵀŶ|_* with X̂ = Xc / |Xc|_F
  kRsa,              // "rsa": Spearman correlation of the upper triangles of the Euclidean distance matrices
  kMknn,             // "mknn": mutual k-NN alignment, cosine neighbours of the uncentred features
};

// "cka", "linear_cka_biased", ...; parse throws ERR_INVALID_ARG (RangeError) naming `what` and listing the ids.
const char* full_measure_id(FullMeasure measure);
FullMeasure parse_full_measure(const std::string& id, const std::string& what);
// Whether the measure needs each layer's eigendecomposition (cca_rho, cca_r2, svcca, procrustes).
bool needs_eigen(FullMeasure measure);

struct FullBatchSettings {
  std::vector<FullMeasure> measures;  // each at most once, in the caller's order
  double rbf_threshold = 0.5;         // σ = rbf_threshold x √(median d² over all N² entries), per layer
  double svcca_variance = 0.99;       // in (0, 1]
  int64_t mknn_k = 10;                // 1 <= k < N
  // Ridge CCA: each eigen-direction weighted by √(λ / (λ + ε·λmax)). 0: plain
  // CCA, and cells of a layer that fills the sample space are null.
  double cca_ridge = 0;
};

// One layer's Gram on the evaluation set. The features were shifted by a
// reference point r (the mean of the first chunk) before the Gram, so that
// float32 does not lose the spread of a layer far from the origin; centring
// (H K H) removes r exactly, and the uncentred Gram is
// Kᵢⱼ = gramᵢⱼ + dotsᵢ + dotsⱼ + ref_norm2.
struct FullGram {
  at::Tensor gram;                                          // (N, N) float32, symmetric: (X - r)(X - r)ᵀ
  at::Tensor dots;                                          // (N) float64: (xᵢ - r)·r
  double ref_norm2 = 0;                                     // |r|²
  int64_t features = 0;                                     // d, the feature size after the view
  double sigma = std::numeric_limits<double>::quiet_NaN();  // rbf: the user's σ (NaN: from the data)
};

// The measures' output. Every matrix is m x p, row-major, aligned with the
// Gram lists; a null cell has a reason.
struct FullBatchMatrices {
  std::vector<std::vector<std::optional<double>>> values;  // per measure of the settings, in their order
  // Per measure, per cell: "" where there is a value, else one of
  // "constant" (a layer that does not vary over the set),
  // "rank_deficient" (cca_rho, cca_r2, svcca without a ridge: a layer fills the centred sample space),
  // "no_sigma" (rbf measures: the median squared distance is 0),
  // "zero_norm" (mknn: a sample with a zero feature has no cosine).
  std::vector<std::vector<std::string>> reasons;
  std::vector<double> sigma1, sigma2;  // rbf σ per layer (NaN: undefined); empty without an rbf measure
  // Eigendecomposition measures only (else empty): the numerical rank of each
  // layer's centred features, and the directions SVCCA kept.
  std::vector<int64_t> rank1, rank2;
  std::vector<int64_t> svcca_dims1, svcca_dims2;
  // Layers whose column space is the whole centred sample space (d >= N - 1
  // or numerical rank >= N - 1): cca_rho, cca_r2 (and svcca when it keeps
  // N - 1 directions) say nothing there. Aligned with the Gram lists.
  std::vector<bool> fills1, fills2;
  // Relative eigenvalue tolerance used (λ < tolerance x λmax are dropped).
  double eigen_tolerance = 0;
};

// What the measure phase has done, for a progress bar (written by the
// computing thread, read from any thread).
struct FullBatchProgress {
  std::atomic<int64_t> done{0};
  std::atomic<int64_t> total{0};
};

// All measures of `settings` for every pair (k[a], l[b]). `k` and `l` may be
// the same vector object (one model on one data set with the same layers):
// each layer's work is then done once. N = k[0].gram.size(0) >= 4. Computes
// in float64 on the Grams' device. Checks `cancelled` between units of work
// and throws CKAError ABORT_ERR (codes::kAborted) when it is set. `progress`
// (may be null): total set first, done counts units (per-layer
// decompositions, per-measure pair products).
FullBatchMatrices compute_full_batch(const std::vector<FullGram>& k, const std::vector<FullGram>& l,
                                     const FullBatchSettings& settings, FullBatchProgress* progress,
                                     const std::atomic<bool>* cancelled);

// The most bytes compute_full_batch allocates at once beyond its inputs, for
// N samples and m + p layers (m + p counted once when shared). For the
// memory estimate before a run.
int64_t full_batch_measure_bytes(int64_t n, int64_t m, int64_t p, bool shared, const FullBatchSettings& settings);

}  // namespace tcka
