// The BLAS that libtorch itself uses, found at run time: syrk for Gram
// matrices (X·Xᵀ costs half a general product when only one triangle is
// computed) and the BLAS's own thread count (OpenBLAS keeps a thread pool of
// its own, apart from libtorch's OpenMP threads).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace tcka {

// Writes x·xᵀ into `out` (n x n): x is (n, d), both on the CPU or both on a
// GPU, of one floating dtype. On the CPU with a BLAS that has ?syrk, only one
// triangle is computed and then mirrored; otherwise at::mm_out.
void gram_product(const at::Tensor& x, at::Tensor& out);

// Only the upper triangle (row-major, the diagonal included) of x·xᵀ, by
// ?syrk, into `out`; false (nothing written) where that BLAS path does not
// apply (then use gram_product).
bool gram_upper(const at::Tensor& x, at::Tensor& out);

// Sets the BLAS's own thread count where it has one (OpenBLAS, MKL); false
// when no such BLAS was found.
bool set_blas_threads(int threads);

// E.g. "openblas (syrk)" or "none found (at::mm)", for benchmarks and runtimeInfo().
std::string blas_description();

}  // namespace tcka
