// Yardsticks for the benchmark's performance breakdown (docs/performance.md):
// what the BLAS does on this machine at the sizes of a run, and a peer-like
// baseline, the way the fastest Python CKA library (pytorch-cka) computes
// minibatch CKA, written in libtorch so that both run in one process.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model.h"

namespace tcka {

// GFLOP/s of the best of several calls on random CPU data, k = 2048.
struct BlasRates {
  double ssyrk_gflops = 0;  // n x k float32 through gram_product()
  double sgemm_gflops = 0;  // (m x k)·(k x p) float32
  double dgemm_gflops = 0;  // the same in float64
  int threads = 0;
  int64_t n = 0, m = 0, p = 0, k = 0;
};

// Sets libtorch's and the BLAS's threads to `threads` (0: libtorch's current
// count) and leaves them so. Throws ERR_INVALID_ARG when n, m or p < 1.
BlasRates measure_blas_rates(int64_t n, int64_t m, int64_t p, int threads);

struct PeerRun {
  std::vector<std::string> rows1, rows2;
  std::vector<double> cka;                    // row-major rows1 x rows2, NaN where undefined
  std::vector<int64_t> features1, features2;  // d per row (the output flattened after the batch dimension)
  double seconds = 0;                         // the whole loop: both forwards and all the arithmetic
};

// Linear minibatch CKA the peer's way: hooks keep each layer's first-call
// output as it is, Grams of the uncentred features in float32, one product
// for all pairs, the unbiased HSIC (Song et al.) summed in float32. Empty
// layer lists: every layer with a tensor output (Model::select). Each batch
// is one input tensor with at least 4 samples. Throws what Model::select and
// Model::forward throw, and ERR_INVALID_ARG, ERR_INVALID_BATCH, ERR_LAYER_NOT_RUN,
// ERR_NO_LAYERS.
PeerRun peer_baseline(const Model& m1, const Model& m2, const std::vector<std::string>& layers1,
                      const std::vector<std::string>& layers2, const std::vector<at::Tensor>& batches, int threads);

}  // namespace tcka
