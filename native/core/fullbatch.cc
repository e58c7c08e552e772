// Full-batch measures from the Grams (fullbatch.h, docs/full-batch.md).
//
// The work is split in two kinds of unit:
//  - per layer, once (once in all when both lists are the same object): the
//    float64 centred Gram's row means and diagonal, the RBF σ (median d²),
//    the eigendecomposition (cca_rho, cca_r2, svcca, procrustes), the ranks
//    of the distances (rsa) and the cosine neighbour lists (mknn);
//  - per pass over the pairs: the kernel measures as blocked GEMMs over row
//    blocks of all N² entries (one pass per kernel: linear serves cka and
//    linear_cka_biased, RBF serves rbf_cka and rbf_cka_biased, the distance
//    kernel dcor), one product Uxᵀ Uy per pair that serves every eigen measure
//    (their matrices are row/column scalings or corners of it), one product of
//    the rank vectors (rsa) and the neighbour-list intersections (mknn).
//
// Kernel measures: with T = Σᵢ≠ⱼ AᵢⱼCᵢⱼ (the GEMM), r the off-diagonal row
// sums and δ the diagonals of the kernels A, C,
//   HSIC₁ = [T + (1ᵀr_A)(1ᵀr_C)/((N-1)(N-2)) - 2/(N-2)·r_A·r_C] / (N(N-3))
//   ⟨HAH, HCH⟩ = F - (2/N) f_A·f_C + (1ᵀf_A)(1ᵀf_C)/N²,  F = T + δ_A·δ_C, f = r + δ
// so the unbiased (cka, rbf_cka, dcor) and the biased (linear_cka_biased,
// rbf_cka_biased) measures of one kernel share the one big product.
#include "fullbatch.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "errors.h"

namespace tcka {

namespace {

constexpr FullMeasure kAllMeasures[] = {FullMeasure::kCka,        FullMeasure::kLinearCkaBiased,
                                        FullMeasure::kRbfCka,     FullMeasure::kRbfCkaBiased,
                                        FullMeasure::kDcor,       FullMeasure::kCcaRho,
                                        FullMeasure::kCcaR2,      FullMeasure::kSvcca,
                                        FullMeasure::kProcrustes, FullMeasure::kRsa,
                                        FullMeasure::kMknn};

// Bytes of float64 kernel blocks of all layers alive at once in a pair pass.
constexpr int64_t kBlockBudget = 64LL << 20;

// Float32 rounding: the Grams are float32, so eigenvalues below N·ε·λmax of
// the float64 centred Gram are rounding noise (numpy.linalg.matrix_rank's rule).
constexpr double kFloat32Eps = 1.0 / 8388608.0;  // 2^-23

// A layer constant over the set: ||Xc||² below (64 ε)² ||X||² (hsic.cc's rule).
constexpr double kConstantTolerance = (64.0 * kFloat32Eps) * (64.0 * kFloat32Eps);

enum class Kernel { kLinear, kRbf, kDistance };

struct Layer {
  const FullGram* source = nullptr;
  at::Tensor row_mean;  // (N) float64: row means of the shifted Gram
  double total_mean = 0;
  at::Tensor gram_diag;  // (N) float64: diagonal of the shifted Gram
  bool constant = false;
  double sigma = std::numeric_limits<double>::quiet_NaN();
  // Eigen measures.
  int64_t rank = 0;
  at::Tensor factor;  // (N, r) float64, eigenvectors by decreasing eigenvalue
  at::Tensor lambda;  // (r) float64, decreasing
  double lambda_sum = 0;
  double lambda_max = 0;
  int64_t svcca_dims = 0;
  bool fills = false;
  // rsa: centred, unit-norm average ranks of the strict upper triangle of d² (undefined: no variation).
  at::Tensor ranks;
  // mknn: (N, k) int64 neighbour lists (undefined: a zero-norm sample).
  at::Tensor neighbours;
};

[[noreturn]] void aborted() {
  throw CKAError(codes::kAborted, "compare() was aborted during the full-batch measures", ErrorKind::Error);
}

[[noreturn]] void invalid(const std::string& message) {
  throw CKAError(codes::kInvalidArg, message, ErrorKind::RangeError);
}

// Rows per block of a kernel pass: all `layers` float64 row blocks within
// the budget (at least one row), and about N/16 so that the blocks on and
// above the diagonal, the only ones a pass reads, are most of the work.
int64_t pass_rows(int64_t layers, int64_t n) {
  const int64_t by_memory = kBlockBudget / std::max<int64_t>(1, layers * n * 8);
  return std::max<int64_t>(1, std::min<int64_t>({by_memory, (n + 15) / 16, n}));
}

// The shifted Gram rows [i0, i1), columns [c0, N), in float64.
at::Tensor gram_rows(const Layer& layer, int64_t i0, int64_t i1, int64_t c0 = 0) {
  return layer.source->gram.slice(0, i0, i1).slice(1, c0).to(at::kDouble).contiguous();
}

// Rows [i0, i1), columns [c0, N) of Kc = H G H (the shift by r cancels).
at::Tensor centred_rows(const Layer& layer, int64_t i0, int64_t i1, int64_t c0 = 0) {
  at::Tensor g = gram_rows(layer, i0, i1, c0);
  g.sub_(layer.row_mean.slice(0, i0, i1).unsqueeze(1))
      .sub_(layer.row_mean.slice(0, c0).unsqueeze(0))
      .add_(layer.total_mean);
  return g;
}

// Rows [i0, i1), columns [c0, N) (c0 <= i0) of d² = Gᵢᵢ + Gⱼⱼ - 2Gᵢⱼ,
// clamped at 0, with an exact zero diagonal.
at::Tensor distance_rows(const Layer& layer, int64_t i0, int64_t i1, int64_t c0 = 0) {
  at::Tensor g = gram_rows(layer, i0, i1, c0);
  at::Tensor d2 = (layer.gram_diag.slice(0, i0, i1).unsqueeze(1) + layer.gram_diag.slice(0, c0).unsqueeze(0))
                      .sub_(g.mul_(2.0))
                      .clamp_min_(0.0);
  d2.diagonal(i0 - c0, 0, 1).zero_();
  return d2;
}

// numpy's median of the N² entries of d² (the mean of the two middle values when N² is even).
double median_d2(const Layer& layer, int64_t n) {
  const at::Tensor d2 = distance_rows(layer, 0, n).reshape({-1});
  const int64_t count = n * n;
  auto kth = [&](int64_t k) { return std::get<0>(d2.kthvalue(k)).item<double>(); };
  return count % 2 == 1 ? kth(count / 2 + 1) : 0.5 * (kth(count / 2) + kth(count / 2 + 1));
}

void prepare_basic(Layer& layer, const FullGram& g, int64_t n, const std::string& name) {
  layer.source = &g;
  const at::Tensor gram = g.gram.to(at::kDouble);
  layer.row_mean = gram.mean(1);
  layer.total_mean = layer.row_mean.mean().item<double>();
  layer.gram_diag = gram.diagonal().clone();
  // tr Kc = Σ Gᵢᵢ - N·mean(G); ||X||² = Σ (Gᵢᵢ + 2 dotsᵢ) + N ||r||².
  const double trace = layer.gram_diag.sum().item<double>() - static_cast<double>(n) * layer.total_mean;
  const double dots = g.dots.defined() && g.dots.numel() > 0 ? g.dots.to(at::kDouble).sum().item<double>() : 0.0;
  const double norm = layer.gram_diag.sum().item<double>() + 2.0 * dots + static_cast<double>(n) * g.ref_norm2;
  if (!std::isfinite(trace) || !std::isfinite(norm) || !at::isfinite(gram).all().item<bool>()) {
    throw CKAError(codes::kNonFinite, "The full-batch Gram of " + name + " holds values that are not finite numbers",
                   ErrorKind::RangeError);
  }
  layer.constant = !(trace > norm * kConstantTolerance && norm > 0);
}

void prepare_sigma(Layer& layer, int64_t n, double threshold) {
  if (std::isfinite(layer.source->sigma)) {
    layer.sigma = layer.source->sigma;
  } else {
    layer.sigma = threshold * std::sqrt(median_d2(layer, n));
  }
  if (!(layer.sigma > 0) || !std::isfinite(layer.sigma)) layer.sigma = std::numeric_limits<double>::quiet_NaN();
}

void prepare_eigen(Layer& layer, int64_t n, const FullBatchSettings& settings) {
  at::Tensor kc = centred_rows(layer, 0, n);
  kc = (kc + kc.t()).mul_(0.5);  // exactly symmetric for eigh
  auto eig = at::linalg_eigh(kc);
  kc = at::Tensor();
  const at::Tensor w = std::get<0>(eig);  // ascending
  const double lmax = w[n - 1].item<double>();
  int64_t r = 0;
  if (lmax > 0 && std::isfinite(lmax)) {
    const double cut = static_cast<double>(n) * kFloat32Eps * lmax;
    r = (w > cut).sum().item<int64_t>();
  }
  layer.rank = r;
  layer.lambda_max = lmax > 0 ? lmax : 0;
  layer.factor = std::get<1>(eig).slice(1, n - r, n).flip({1}).contiguous();
  layer.lambda = w.slice(0, n - r, n).flip({0}).contiguous();
  layer.lambda_sum = r > 0 ? layer.lambda.sum().item<double>() : 0.0;
  layer.fills = layer.source->features >= n - 1 || r >= n - 1;
  // SVCCA: the fewest leading directions whose eigenvalues reach svcca_variance of the kept total.
  if (r > 0) {
    const at::Tensor cum = layer.lambda.cumsum(0).cpu();
    const double total = cum[r - 1].item<double>();
    const double* c = cum.data_ptr<double>();
    int64_t k = r;
    for (int64_t i = 0; i < r; ++i) {
      if (c[i] >= settings.svcca_variance * total) {
        k = i + 1;
        break;
      }
    }
    layer.svcca_dims = k;
  }
}

// Each temporary is released as soon as the next step has it (M = N(N-1)/2
// values: at most about 5 M doubles alive at once).
void prepare_ranks(Layer& layer, int64_t n, const at::Tensor& upper) {
  at::Tensor v, order;
  std::tie(v, order) = at::sort(distance_rows(layer, 0, n).masked_select(upper));
  // Average ranks of ties (scipy.stats.rankdata's "average"): a run of c
  // equal values ending at rank e (1-based) gets e - (c - 1)/2.
  at::Tensor counts = std::get<2>(at::unique_consecutive(v, false, true));
  v = at::Tensor();
  at::Tensor average = counts.cumsum(0).to(at::kDouble);
  average.sub_((counts.to(at::kDouble) - 1.0) * 0.5);
  at::Tensor ranked = at::repeat_interleave(average, counts);
  average = at::Tensor();
  counts = at::Tensor();
  at::Tensor ranks = at::empty_like(ranked).scatter_(0, order, ranked);
  ranked = at::Tensor();
  order = at::Tensor();
  ranks.sub_(ranks.mean());
  const double norm = ranks.norm().item<double>();
  if (norm > 0 && std::isfinite(norm)) layer.ranks = ranks.div_(norm);
}

// Bytes per cosine of a row block in prepare_neighbours: the float64 cosines,
// the sort's values and int64 order, and the sort's own copy of both.
constexpr int64_t kNeighbourRowBytes = 40;

void prepare_neighbours(Layer& layer, int64_t n, int64_t k) {
  const FullGram& g = *layer.source;
  const auto options = at::TensorOptions().dtype(at::kDouble).device(g.gram.device());
  const at::Tensor dots = g.dots.defined() && g.dots.numel() == n ? g.dots.to(options) : at::zeros({n}, options);
  // Uncentred Gram Kᵢⱼ = Gᵢⱼ + dotsᵢ + dotsⱼ + ||r||²; a sample whose squared
  // norm is rounding noise next to the terms it is made of has no cosine.
  const at::Tensor norms = layer.gram_diag + dots * 2.0 + g.ref_norm2;
  const at::Tensor scale = layer.gram_diag + dots.abs() * 2.0 + std::abs(g.ref_norm2);
  if ((norms <= scale * (64.0 * kFloat32Eps)).any().item<bool>()) return;
  const at::Tensor inv = norms.rsqrt();
  at::Tensor out = at::empty({n, k}, at::TensorOptions().dtype(at::kLong).device(g.gram.device()));
  const int64_t b =
      std::max<int64_t>(1, std::min<int64_t>(n, kBlockBudget / (std::max<int64_t>(1, n) * kNeighbourRowBytes)));
  for (int64_t i0 = 0; i0 < n; i0 += b) {
    const int64_t i1 = std::min(n, i0 + b);
    at::Tensor c = gram_rows(layer, i0, i1);
    c.add_(dots.slice(0, i0, i1).unsqueeze(1)).add_(dots.unsqueeze(0)).add_(g.ref_norm2);
    c.mul_(inv.slice(0, i0, i1).unsqueeze(1)).mul_(inv.unsqueeze(0));
    c.diagonal(i0, 0, 1).fill_(-std::numeric_limits<double>::infinity());  // self excluded
    // Stable descending sort: equal cosines keep the lower index first.
    const at::Tensor order = std::get<1>(at::sort(c, true, 1, true));
    out.slice(0, i0, i1).copy_(order.slice(1, 0, k));
  }
  layer.neighbours = out;
}

struct KernelSums {
  at::Tensor cross;               // (m, p): Σᵢ≠ⱼ AᵢⱼCᵢⱼ
  at::Tensor square_a, square_b;  // (m), (p): Σᵢ≠ⱼ Aᵢⱼ²
  at::Tensor rows_a, rows_b;      // (m, N), (p, N): off-diagonal row sums
  at::Tensor diag_a, diag_b;      // (m, N), (p, N): kernel diagonals
};

// Rows [i0, i1), columns [i0, N) of a layer's kernel, with a zero diagonal
// (zeros for an RBF kernel without σ).
at::Tensor kernel_rows(const Layer& layer, Kernel kernel, int64_t i0, int64_t i1) {
  at::Tensor block;
  if (kernel == Kernel::kLinear) {
    block = centred_rows(layer, i0, i1, i0);
  } else {
    block = distance_rows(layer, i0, i1, i0);
    if (kernel == Kernel::kRbf) {
      if (!std::isfinite(layer.sigma)) return block.zero_();
      block.mul_(-1.0 / (2.0 * layer.sigma * layer.sigma)).exp_();
    } else {
      block.sqrt_();
    }
  }
  block.diagonal().zero_();
  return block;
}

at::Tensor kernel_diag(const Layer& layer, Kernel kernel, int64_t n) {
  if (kernel == Kernel::kLinear) {
    return layer.gram_diag - layer.row_mean * 2.0 + layer.total_mean;
  }
  const auto options = at::TensorOptions().dtype(at::kDouble).device(layer.gram_diag.device());
  if (kernel == Kernel::kRbf && std::isfinite(layer.sigma)) return at::ones({n}, options);
  return at::zeros({n}, options);
}

KernelSums kernel_pass(const std::vector<Layer*>& a, const std::vector<Layer*>& b, bool shared, Kernel kernel,
                       int64_t n, const std::atomic<bool>* cancelled) {
  const int64_t m = static_cast<int64_t>(a.size()), p = static_cast<int64_t>(b.size());
  const int64_t layers = shared ? m : m + p;
  const c10::Device device = a[0]->gram_diag.device();
  const auto options = at::TensorOptions().dtype(at::kDouble).device(device);
  KernelSums s;
  s.cross = at::zeros({m, p}, options);
  s.square_a = at::zeros({m}, options);
  s.rows_a = at::zeros({m, n}, options);
  s.diag_a = at::empty({m, n}, options);
  for (int64_t i = 0; i < m; ++i) s.diag_a[i].copy_(kernel_diag(*a[i], kernel, n));
  if (!shared) {
    s.square_b = at::zeros({p}, options);
    s.rows_b = at::zeros({p, n}, options);
    s.diag_b = at::empty({p, n}, options);
    for (int64_t i = 0; i < p; ++i) s.diag_b[i].copy_(kernel_diag(*b[i], kernel, n));
  }
  // The kernels are symmetric, so a pass reads only the blocks on and above
  // the diagonal: rows I = [i0, i1), columns [i0, N). The diagonal block
  // counts once and the part right of it twice, which the GEMM gets by
  // scaling that part by √2 on both sides (after the row sums are taken:
  // rows I from the block's rows, rows [i1, N) from its columns).
  const int64_t rows = pass_rows(layers, n);
  at::Tensor buffer_a = at::empty({m * rows * n}, options);
  at::Tensor buffer_b = shared ? buffer_a : at::empty({p * rows * n}, options);
  auto fill = [&](const std::vector<Layer*>& side, at::Tensor& buffer, at::Tensor& square, at::Tensor& row_sums,
                  int64_t i0, int64_t i1) {
    const int64_t count = i1 - i0, width = n - i0, layers_here = static_cast<int64_t>(side.size());
    at::Tensor block = buffer.slice(0, 0, layers_here * count * width).view({layers_here, count, width});
    for (int64_t i = 0; i < layers_here; ++i)
      block[i].copy_(kernel_rows(*side[static_cast<size_t>(i)], kernel, i0, i1));
    row_sums.slice(1, i0, i1).add_(block.sum(2));
    if (i1 < n) {
      const at::Tensor right = block.slice(2, count);
      row_sums.slice(1, i1, n).add_(right.sum(1));
      right.mul_(std::sqrt(2.0));
    }
    const at::Tensor flat = block.view({layers_here, count * width});
    for (int64_t i = 0; i < layers_here; ++i) square[i].add_(at::dot(flat[i], flat[i]));  // no squared copy
    return flat;
  };
  for (int64_t i0 = 0; i0 < n; i0 += rows) {
    if (cancelled && cancelled->load()) aborted();
    const int64_t i1 = std::min(n, i0 + rows);
    const at::Tensor fa = fill(a, buffer_a, s.square_a, s.rows_a, i0, i1);
    if (shared) {
      s.cross.addmm_(fa, fa.t());
    } else {
      const at::Tensor fb = fill(b, buffer_b, s.square_b, s.rows_b, i0, i1);
      s.cross.addmm_(fa, fb.t());
    }
  }
  if (shared) {
    s.cross = (s.cross + s.cross.t()).mul_(0.5);
    s.square_b = s.square_a;
    s.rows_b = s.rows_a;
    s.diag_b = s.diag_a;
  }
  return s;
}

// Unbiased HSIC₁ (m, p) and self terms; biased centred Frobenius products.
struct KernelValues {
  at::Tensor xy, xx, yy;
};

KernelValues unbiased(const KernelSums& s, int64_t n) {
  const double nd = static_cast<double>(n);
  const double c_total = 1.0 / ((nd - 1.0) * (nd - 2.0)), c_rows = 2.0 / (nd - 2.0), c_norm = 1.0 / (nd * (nd - 3.0));
  const at::Tensor ta = s.rows_a.sum(1), tb = s.rows_b.sum(1);
  at::Tensor xy = (s.cross + at::outer(ta, tb) * c_total - at::mm(s.rows_a, s.rows_b.t()) * c_rows) * c_norm;
  at::Tensor xx = (s.square_a + ta.square() * c_total - s.rows_a.square().sum(1) * c_rows) * c_norm;
  at::Tensor yy = (s.square_b + tb.square() * c_total - s.rows_b.square().sum(1) * c_rows) * c_norm;
  return {xy, xx, yy};
}

KernelValues biased(const KernelSums& s, int64_t n) {
  const double nd = static_cast<double>(n);
  const at::Tensor fa = s.rows_a + s.diag_a, fb = s.rows_b + s.diag_b;
  const at::Tensor ta = fa.sum(1), tb = fb.sum(1);
  at::Tensor xy = s.cross + at::mm(s.diag_a, s.diag_b.t()) - at::mm(fa, fb.t()) * (2.0 / nd) +
                  at::outer(ta, tb) * (1.0 / (nd * nd));
  at::Tensor xx = s.square_a + s.diag_a.square().sum(1) - fa.square().sum(1) * (2.0 / nd) + ta.square() / (nd * nd);
  at::Tensor yy = s.square_b + s.diag_b.square().sum(1) - fb.square().sum(1) * (2.0 / nd) + tb.square() / (nd * nd);
  return {xy, xx, yy};
}

// The singular values of `m` (r1 x r2): square roots of the eigenvalues of
// the smaller of m mᵀ, mᵀ m (clamped at 0). About 1.8x faster than an SVD
// at r = N - 1 (a GEMM and a tridiagonalisation without vectors); a singular
// value σ comes with an absolute error near ε·σmax²/σ... at most √ε·σmax,
// which the tests bound (procrustes and cca to 1e-6 relative).
at::Tensor singular_values(const at::Tensor& m) {
  if (m.size(0) == 0 || m.size(1) == 0) return at::zeros({0}, m.options());
  const at::Tensor gram = m.size(0) <= m.size(1) ? at::mm(m, m.t()) : at::mm(m.t(), m);
  return at::linalg_eigvalsh(gram).clamp_min_(0.0).sqrt_();
}

}  // namespace

const char* full_measure_id(FullMeasure measure) {
  switch (measure) {
    case FullMeasure::kCka: return "cka";
    case FullMeasure::kLinearCkaBiased: return "linear_cka_biased";
    case FullMeasure::kRbfCka: return "rbf_cka";
    case FullMeasure::kRbfCkaBiased: return "rbf_cka_biased";
    case FullMeasure::kDcor: return "dcor";
    case FullMeasure::kCcaRho: return "cca_rho";
    case FullMeasure::kCcaR2: return "cca_r2";
    case FullMeasure::kSvcca: return "svcca";
    case FullMeasure::kProcrustes: return "procrustes";
    case FullMeasure::kRsa: return "rsa";
    case FullMeasure::kMknn: return "mknn";
  }
  return "?";
}

FullMeasure parse_full_measure(const std::string& id, const std::string& what) {
  std::string ids;
  for (FullMeasure m : kAllMeasures) {
    if (id == full_measure_id(m)) return m;
    ids += ids.empty() ? "" : ", ";
    ids += full_measure_id(m);
  }
  invalid("Expected one of " + ids + " for " + what + " but received '" + id + "'");
}

bool needs_eigen(FullMeasure measure) {
  return measure == FullMeasure::kCcaRho || measure == FullMeasure::kCcaR2 || measure == FullMeasure::kSvcca ||
         measure == FullMeasure::kProcrustes;
}

// What compute_full_batch holds at once beyond its inputs (L = the distinct
// layers, m + p or m when shared; 8-byte doubles):
//  - per layer, always: row means, diagonal and kernel diagonals, ~8N doubles;
//  - kernel passes: the block budget (64 MiB) plus one layer's row block
//    temporaries (≤ the budget again) and the row-sum/diagonal tensors (4 L N);
//  - eigen measures: the kept factors, at most L·N·(N-1) doubles, plus the
//    transient of one eigendecomposition: the float64 Kc and its symmetrised
//    copy, the eigenvector matrix and LAPACK syevd's 1 + 6N + 2N² workspace
//    (≤ 6 N²), or of one pair: Uxᵀ Uy, its scaled copies and the SVD
//    workspace (≤ 6 N²);
//  - rbf σ: one float64 d² and kthvalue's copy (3 N²);
//  - rsa: the L rank vectors of N(N-1)/2 doubles, plus one layer's transient:
//    d², the upper-triangle mask, values, sorted values and int64 order,
//    ranks (≤ 5 N² doubles);
//  - mknn: L·N·k int64 lists plus a row block of cosines and its sort (the budget).
// The transients do not overlap (one layer or pair at a time), but the
// allocator does not always give a phase's freed blocks back before the next
// phase takes differently sized ones, and BLAS/LAPACK keep buffers of their
// own: the bound is the held sum plus 1.5 x the largest transient plus
// 64 MiB. fullbatch_check.py checks the peak RSS growth against it.
int64_t full_batch_measure_bytes(int64_t n, int64_t m, int64_t p, bool shared, const FullBatchSettings& settings) {
  const int64_t layers = shared ? m : m + p;
  const int64_t nn = n * n;
  bool kernel = false, rbf = false, eigen = false, rsa = false, mknn = false;
  for (FullMeasure measure : settings.measures) {
    eigen = eigen || needs_eigen(measure);
    rbf = rbf || measure == FullMeasure::kRbfCka || measure == FullMeasure::kRbfCkaBiased;
    kernel = kernel || (!needs_eigen(measure) && measure != FullMeasure::kRsa && measure != FullMeasure::kMknn);
    rsa = rsa || measure == FullMeasure::kRsa;
    mknn = mknn || measure == FullMeasure::kMknn;
  }
  int64_t held = layers * n * 8 * 8 + m * p * 8 * 16 * static_cast<int64_t>(settings.measures.size() + 1);
  int64_t transient = nn * 8 * 2;  // prepare_basic's float64 copy of one Gram (and its row mean pass)
  if (kernel) {
    held += layers * n * 8 * 4;
    // All layers' row blocks, plus one layer's block temporaries (3 blocks).
    const int64_t rows = pass_rows(layers, n);
    transient = std::max(transient, (layers + 3) * rows * n * 8);
  }
  if (rbf) transient = std::max(transient, 3 * nn * 8);
  if (eigen) {
    held += layers * n * std::max<int64_t>(0, n - 1) * 8 + layers * n * 8;
    transient = std::max(transient, 6 * nn * 8);
  }
  if (rsa) {
    held += layers * (nn - n) / 2 * 8 + nn;  // rank vectors, the upper-triangle mask
    transient = std::max(transient, 5 * nn * 8);
  }
  if (mknn) {
    held += layers * n * settings.mknn_k * 8;
    transient = std::max(transient, kBlockBudget + 3 * n * 8);  // a row block of cosines, its sort
  }
  return held + transient + transient / 2 + (64LL << 20);
}

FullBatchMatrices compute_full_batch(const std::vector<FullGram>& k, const std::vector<FullGram>& l,
                                     const FullBatchSettings& settings, FullBatchProgress* progress,
                                     const std::atomic<bool>* cancelled) {
  const bool shared = &k == &l;
  if (k.empty() || l.empty()) invalid("The full-batch comparison needs at least one layer on each side");
  const int64_t n = k[0].gram.defined() && k[0].gram.dim() == 2 ? k[0].gram.size(0) : 0;
  for (const auto* side : {&k, &l}) {
    for (const FullGram& g : *side) {
      if (!g.gram.defined() || g.gram.dim() != 2 || g.gram.size(0) != n || g.gram.size(1) != n) {
        invalid("Expected every full-batch Gram to be " + std::to_string(n) + " x " + std::to_string(n));
      }
    }
  }
  if (n < 4) invalid("Expected at least 4 samples for the full-batch measures but received " + std::to_string(n));
  if (settings.mknn_k < 1 || settings.mknn_k >= n) {
    invalid("Expected mknnK to be an integer from 1 to " + std::to_string(n - 1) + " (below the " + std::to_string(n) +
            " samples) but received " + std::to_string(settings.mknn_k));
  }
  if (!(settings.svcca_variance > 0 && settings.svcca_variance <= 1)) {
    invalid("Expected svccaVariance in (0, 1] but received " + std::to_string(settings.svcca_variance));
  }
  if (!(settings.cca_ridge >= 0) || !std::isfinite(settings.cca_ridge)) {
    invalid("Expected ccaRidge to be a finite number >= 0 but received " + std::to_string(settings.cca_ridge));
  }
  bool kernels[3] = {false, false, false}, eigen = false, rbf = false, rsa = false, mknn = false;
  for (size_t i = 0; i < settings.measures.size(); ++i) {
    const FullMeasure measure = settings.measures[i];
    for (size_t j = 0; j < i; ++j) {
      if (settings.measures[j] == measure)
        invalid(std::string("The measure ") + full_measure_id(measure) + " is listed twice");
    }
    eigen = eigen || needs_eigen(measure);
    rbf = rbf || measure == FullMeasure::kRbfCka || measure == FullMeasure::kRbfCkaBiased;
    rsa = rsa || measure == FullMeasure::kRsa;
    mknn = mknn || measure == FullMeasure::kMknn;
    if (measure == FullMeasure::kCka || measure == FullMeasure::kLinearCkaBiased) kernels[0] = true;
    if (measure == FullMeasure::kRbfCka || measure == FullMeasure::kRbfCkaBiased) kernels[1] = true;
    if (measure == FullMeasure::kDcor) kernels[2] = true;
  }
  const int64_t m = static_cast<int64_t>(k.size()), p = static_cast<int64_t>(l.size());
  auto check = [&] {
    if (cancelled && cancelled->load()) aborted();
  };
  auto tick = [&](int64_t units) {
    if (progress) progress->done.fetch_add(units);
  };

  // Units: one per distinct layer, one per kernel pass, one per eigen pair, one for rsa, one for mknn.
  const int64_t distinct = shared ? m : m + p;
  const int64_t pairs = shared ? m * (m + 1) / 2 : m * p;
  int64_t total = distinct + (kernels[0] ? 1 : 0) + (kernels[1] ? 1 : 0) + (kernels[2] ? 1 : 0) + (eigen ? pairs : 0) +
                  (rsa ? 1 : 0) + (mknn ? 1 : 0);
  if (progress) {
    progress->done.store(0);
    progress->total.store(total);
  }

  std::vector<Layer> layers(static_cast<size_t>(distinct));
  std::vector<Layer*> a, b;
  for (int64_t i = 0; i < m; ++i) a.push_back(&layers[static_cast<size_t>(i)]);
  for (int64_t i = 0; i < p; ++i) b.push_back(shared ? a[static_cast<size_t>(i)] : &layers[static_cast<size_t>(m + i)]);
  at::Tensor upper;
  if (rsa) {
    upper = at::ones({n, n}, at::TensorOptions().dtype(at::kBool).device(k[0].gram.device())).triu_(1);
  }
  for (int64_t i = 0; i < distinct; ++i) {
    check();
    const FullGram& g = i < m ? k[static_cast<size_t>(i)] : l[static_cast<size_t>(i - m)];
    Layer& layer = layers[static_cast<size_t>(i)];
    prepare_basic(
        layer, g, n,
        i < m ? "layer " + std::to_string(i) + " of model 1" : "layer " + std::to_string(i - m) + " of model 2");
    layer.fills = g.features >= n - 1;
    if (!layer.constant) {
      if (rbf) prepare_sigma(layer, n, settings.rbf_threshold);
      if (eigen) prepare_eigen(layer, n, settings);
      if (rsa) prepare_ranks(layer, n, upper);
      if (mknn) prepare_neighbours(layer, n, settings.mknn_k);
    }
    tick(1);
  }
  upper = at::Tensor();

  FullBatchMatrices out;
  const size_t cells = static_cast<size_t>(m * p);
  out.values.assign(settings.measures.size(), std::vector<std::optional<double>>(cells));
  out.reasons.assign(settings.measures.size(), std::vector<std::string>(cells));
  for (int64_t i = 0; i < m; ++i) out.fills1.push_back(a[static_cast<size_t>(i)]->fills);
  for (int64_t i = 0; i < p; ++i) out.fills2.push_back(b[static_cast<size_t>(i)]->fills);
  if (rbf) {
    for (int64_t i = 0; i < m; ++i) out.sigma1.push_back(a[static_cast<size_t>(i)]->sigma);
    for (int64_t i = 0; i < p; ++i) out.sigma2.push_back(b[static_cast<size_t>(i)]->sigma);
  }
  if (eigen) {
    out.eigen_tolerance = static_cast<double>(n) * kFloat32Eps;
    for (int64_t i = 0; i < m; ++i) out.rank1.push_back(a[static_cast<size_t>(i)]->rank);
    for (int64_t i = 0; i < p; ++i) out.rank2.push_back(b[static_cast<size_t>(i)]->rank);
    for (int64_t i = 0; i < m; ++i) out.svcca_dims1.push_back(a[static_cast<size_t>(i)]->svcca_dims);
    for (int64_t i = 0; i < p; ++i) out.svcca_dims2.push_back(b[static_cast<size_t>(i)]->svcca_dims);
  }
  auto index_of = [&](FullMeasure measure) -> int {
    for (size_t i = 0; i < settings.measures.size(); ++i) {
      if (settings.measures[i] == measure) return static_cast<int>(i);
    }
    return -1;
  };
  // Writes cell (i, j) of measure slot `slot` (and its mirror when shared):
  // a value, or the first reason that applies.
  auto put = [&](int slot, int64_t i, int64_t j, double value, const char* reason) {
    if (slot < 0) return;
    const Layer& x = *a[static_cast<size_t>(i)];
    const Layer& y = *b[static_cast<size_t>(j)];
    std::string why;
    if (x.constant || y.constant) {
      why = "constant";
    } else if (reason) {
      why = reason;
    } else if (!std::isfinite(value)) {
      why = "constant";  // a self-term that is not positive: no variation the estimator sees
    }
    if (shared && i == j && why.empty()) value = 1.0;
    for (int pass = 0; pass < (shared && i != j ? 2 : 1); ++pass) {
      const size_t cell = pass == 0 ? static_cast<size_t>(i * p + j) : static_cast<size_t>(j * p + i);
      out.reasons[static_cast<size_t>(slot)][cell] = why;
      out.values[static_cast<size_t>(slot)][cell] = why.empty() ? std::optional<double>(value) : std::nullopt;
    }
  };
  auto ratio = [](double xy, double xx, double yy) {
    if (!(xx > 0) || !(yy > 0)) return std::numeric_limits<double>::quiet_NaN();
    return xy / std::sqrt(xx * yy);
  };
  auto for_pairs = [&](auto&& fn) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = shared ? i : 0; j < p; ++j) fn(i, j);
    }
  };

  // Kernel passes.
  const Kernel kinds[3] = {Kernel::kLinear, Kernel::kRbf, Kernel::kDistance};
  const FullMeasure unbiased_ids[3] = {FullMeasure::kCka, FullMeasure::kRbfCka, FullMeasure::kDcor};
  for (int kind = 0; kind < 3; ++kind) {
    if (!kernels[kind]) continue;
    check();
    KernelSums sums = kernel_pass(a, b, shared, kinds[kind], n, cancelled);
    const int slot_u = index_of(unbiased_ids[kind]);
    const int slot_b = kind == 0   ? index_of(FullMeasure::kLinearCkaBiased)
                       : kind == 1 ? index_of(FullMeasure::kRbfCkaBiased)
                                   : -1;
    const char* reason = nullptr;
    for (int which = 0; which < 2; ++which) {
      const int slot = which == 0 ? slot_u : slot_b;
      if (slot < 0) continue;
      KernelValues v = which == 0 ? unbiased(sums, n) : biased(sums, n);
      const at::Tensor xy = v.xy.cpu().contiguous(), xx = v.xx.cpu().contiguous(), yy = v.yy.cpu().contiguous();
      const double* pxy = xy.data_ptr<double>();
      const double* pxx = xx.data_ptr<double>();
      const double* pyy = yy.data_ptr<double>();
      for_pairs([&](int64_t i, int64_t j) {
        reason = nullptr;
        if (kind == 1 &&
            (!std::isfinite(a[static_cast<size_t>(i)]->sigma) || !std::isfinite(b[static_cast<size_t>(j)]->sigma))) {
          reason = "no_sigma";
        }
        double value = ratio(pxy[i * p + j], pxx[i], pyy[j]);
        if (!reason && kind == 1 && !std::isfinite(value)) reason = "no_sigma";
        put(slot, i, j, value, reason);
      });
    }
    tick(1);
  }

  // Eigen measures: one Uxᵀ Uy per pair.
  if (eigen) {
    const int slot_rho = index_of(FullMeasure::kCcaRho), slot_r2 = index_of(FullMeasure::kCcaR2);
    const int slot_sv = index_of(FullMeasure::kSvcca), slot_pr = index_of(FullMeasure::kProcrustes);
    const double ridge = settings.cca_ridge;
    auto weights = [&](const Layer& x) {
      // Ridge CCA: √(λ / (λ + ε λmax)); plain CCA: 1.
      if (ridge > 0) return (x.lambda / (x.lambda + ridge * x.lambda_max)).sqrt_();
      return at::ones_like(x.lambda);
    };
    std::vector<at::Tensor> w1, w2;
    for (Layer* x : a) w1.push_back(x->constant ? at::Tensor() : weights(*x));
    for (size_t j = 0; j < b.size(); ++j)
      w2.push_back(shared ? w1[j] : (b[j]->constant ? at::Tensor() : weights(*b[j])));
    for_pairs([&](int64_t i, int64_t j) {
      check();
      const Layer& x = *a[static_cast<size_t>(i)];
      const Layer& y = *b[static_cast<size_t>(j)];
      if (x.constant || y.constant || x.rank == 0 || y.rank == 0) {
        for (int slot : {slot_rho, slot_r2, slot_sv, slot_pr})
          put(slot, i, j, 0.0, x.constant || y.constant ? nullptr : "constant");
        tick(1);
        return;
      }
      const at::Tensor& wx = w1[static_cast<size_t>(i)];
      const at::Tensor& wy = w2[static_cast<size_t>(j)];
      const bool cca_deficient = ridge == 0 && (x.fills || y.fills);
      const int64_t kx = x.svcca_dims, ky = y.svcca_dims;
      const bool svcca_deficient = ridge == 0 && (kx >= n - 1 || ky >= n - 1);
      // A layer with itself (shared lists) is 1 wherever defined: put() writes
      // it. Otherwise the product is made as large as the asked measures need:
      // all of Uxᵀ Uy for cca and procrustes, its top-left corner for svcca
      // alone, nothing where every cell is rank-deficient.
      const bool self = shared && i == j;
      const bool full = !self && (((slot_rho >= 0 || slot_r2 >= 0) && !cca_deficient) || slot_pr >= 0);
      at::Tensor mxy, corner;
      if (full) {
        mxy = at::mm(x.factor.t(), y.factor);  // (rx, ry)
        corner = mxy.slice(0, 0, kx).slice(1, 0, ky);
      } else if (!self && slot_sv >= 0 && !svcca_deficient) {
        corner = at::mm(x.factor.slice(1, 0, kx).t(), y.factor.slice(1, 0, ky));
      }
      if (slot_rho >= 0 || slot_r2 >= 0) {
        double rho = 1, r2 = 1;
        if (!cca_deficient && !self) {
          const at::Tensor sv =
              singular_values(ridge > 0 ? mxy * wx.unsqueeze(1) * wy.unsqueeze(0) : mxy).clamp(0.0, 1.0);
          const double count = static_cast<double>(std::min(x.rank, y.rank));
          rho = sv.sum().item<double>() / count;
          r2 = sv.square().sum().item<double>() / count;
        }
        put(slot_rho, i, j, rho, cca_deficient ? "rank_deficient" : nullptr);
        put(slot_r2, i, j, r2, cca_deficient ? "rank_deficient" : nullptr);
      }
      if (slot_sv >= 0) {
        double rho = 1;
        if (!svcca_deficient && !self) {
          if (ridge > 0) corner = corner * wx.slice(0, 0, kx).unsqueeze(1) * wy.slice(0, 0, ky).unsqueeze(0);
          rho = singular_values(corner).clamp(0.0, 1.0).sum().item<double>() / static_cast<double>(std::min(kx, ky));
        }
        put(slot_sv, i, j, rho, svcca_deficient ? "rank_deficient" : nullptr);
      }
      if (slot_pr >= 0) {
        double value = 1;
        if (!self) {
          const at::Tensor scaled = mxy * x.lambda.sqrt().unsqueeze(1) * y.lambda.sqrt().unsqueeze(0);
          const double nuclear = singular_values(scaled).sum().item<double>();
          value = std::min(1.0, std::max(0.0, nuclear / std::sqrt(x.lambda_sum * y.lambda_sum)));
        }
        put(slot_pr, i, j, value, nullptr);
      }
      tick(1);
    });
  }

  if (rsa) {
    check();
    const int slot = index_of(FullMeasure::kRsa);
    for_pairs([&](int64_t i, int64_t j) {
      const Layer& x = *a[static_cast<size_t>(i)];
      const Layer& y = *b[static_cast<size_t>(j)];
      if (!x.ranks.defined() || !y.ranks.defined()) {
        put(slot, i, j, 0.0, "constant");
        return;
      }
      check();
      const double value = at::dot(x.ranks, y.ranks).item<double>();
      put(slot, i, j, std::min(1.0, std::max(-1.0, value)), nullptr);
    });
    tick(1);
  }

  if (mknn) {
    check();
    const int slot = index_of(FullMeasure::kMknn);
    const double kd = static_cast<double>(settings.mknn_k);
    for_pairs([&](int64_t i, int64_t j) {
      const Layer& x = *a[static_cast<size_t>(i)];
      const Layer& y = *b[static_cast<size_t>(j)];
      if (!x.neighbours.defined() || !y.neighbours.defined()) {
        put(slot, i, j, 0.0, "zero_norm");
        return;
      }
      check();
      // The lists hold distinct indices, so equal entries count the intersection.
      const int64_t common = x.neighbours.unsqueeze(2).eq(y.neighbours.unsqueeze(1)).sum().item<int64_t>();
      put(slot, i, j, static_cast<double>(common) / (static_cast<double>(n) * kd), nullptr);
    });
    tick(1);
  }
  return out;
}

}  // namespace tcka
