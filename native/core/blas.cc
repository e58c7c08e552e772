#include "blas.h"

#include <ATen/ops/mm.h>
#include <dlfcn.h>

#include <algorithm>
#include <mutex>

namespace tcka {
namespace {

// Fortran BLAS entry points (every BLAS exports these names).
using SsyrkFn = void (*)(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha,
                         const float* a, const int* lda, const float* beta, float* c, const int* ldc);
using DsyrkFn = void (*)(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
                         const double* a, const int* lda, const double* beta, double* c, const int* ldc);
using SetThreadsFn = void (*)(int);

struct Blas {
  SsyrkFn ssyrk = nullptr;
  DsyrkFn dsyrk = nullptr;
  SetThreadsFn set_threads = nullptr;
  std::string name = "none found";
};

template <typename Fn>
Fn symbol(void* handle, const char* name) {
  return reinterpret_cast<Fn>(dlsym(handle, name));
}

// Looks only at libraries already in the process (RTLD_NOLOAD): the BLAS that
// libtorch was linked against. A libtorch with a private, statically linked
// BLAS (pip's MKL builds) exports none of these, and at::mm is used instead.
const Blas& blas() {
  static Blas found;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* libraries[] = {"libopenblas.so.0", "libblas.so.3",   "libmkl_rt.so",
                               "libmkl_rt.so.2",   "libopenblas.so", "libblis.so.4"};
    for (const char* library : libraries) {
      void* handle = dlopen(library, RTLD_LAZY | RTLD_NOLOAD);
      if (handle == nullptr) continue;
      auto ssyrk = symbol<SsyrkFn>(handle, "ssyrk_");
      auto dsyrk = symbol<DsyrkFn>(handle, "dsyrk_");
      if (ssyrk == nullptr || dsyrk == nullptr) continue;
      found.ssyrk = ssyrk;
      found.dsyrk = dsyrk;
      if (auto set = symbol<SetThreadsFn>(handle, "openblas_set_num_threads")) {
        found.set_threads = set;
        found.name = "openblas";
      } else if (auto mkl = symbol<SetThreadsFn>(handle, "MKL_Set_Num_Threads")) {
        found.set_threads = mkl;
        found.name = "mkl";
      } else {
        found.name = library;
      }
      return;
    }
  });
  return found;
}

constexpr int64_t kSlice = 2048;

// Copies the lower triangle (row-major) into the upper one.
template <typename T>
void mirror_lower(T* c, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) c[i * n + j] = c[j * n + i];
  }
}

}  // namespace

namespace {

// x·xᵀ's triangle `uplo` (column-major terms) by ?syrk into `out`, where the
// BLAS has it: row-major x (n x d) is column-major (d x n) with lda = d, so
// C = xᵀ·x in column-major terms is x·xᵀ; column-major 'U' is the row-major
// lower triangle, 'L' the upper one. In slices of kSlice features, summed with
// beta = 1: a long inner dimension runs far below the kernel's peak (a third
// of it at 16k). False (nothing written) where this path does not apply.
bool syrk_triangle(const at::Tensor& x, at::Tensor& out, const char* uplo) {
  const Blas& b = blas();
  const int64_t n = x.size(0), d = x.size(1);
  const bool fits = n <= INT32_MAX && d <= INT32_MAX && d > 0;
  const bool cpu = x.device().is_cpu() && out.device().is_cpu() && out.is_contiguous() && x.is_contiguous();
  if (!cpu || !fits || x.scalar_type() != out.scalar_type()) return false;
  if (x.scalar_type() == at::kFloat ? b.ssyrk == nullptr : x.scalar_type() != at::kDouble || b.dsyrk == nullptr) {
    return false;
  }
  const int ni = static_cast<int>(n), di = static_cast<int>(d);
  const int chunk = static_cast<int>(std::min<int64_t>(d, kSlice));
  if (x.scalar_type() == at::kFloat) {
    const float one = 1, zero = 0;
    for (int k0 = 0; k0 < di; k0 += chunk) {
      const int k = std::min(chunk, di - k0);
      b.ssyrk(uplo, "T", &ni, &k, &one, x.data_ptr<float>() + k0, &di, k0 == 0 ? &zero : &one, out.data_ptr<float>(),
              &ni);
    }
  } else {
    const double one = 1, zero = 0;
    for (int k0 = 0; k0 < di; k0 += chunk) {
      const int k = std::min(chunk, di - k0);
      b.dsyrk(uplo, "T", &ni, &k, &one, x.data_ptr<double>() + k0, &di, k0 == 0 ? &zero : &one, out.data_ptr<double>(),
              &ni);
    }
  }
  return true;
}

}  // namespace

bool gram_upper(const at::Tensor& x, at::Tensor& out) { return syrk_triangle(x, out, "L"); }

void gram_product(const at::Tensor& x, at::Tensor& out) {
  const at::Tensor a = x.device().is_cpu() ? x.contiguous() : x;
  if (syrk_triangle(a, out, "U")) {
    if (out.scalar_type() == at::kFloat) {
      mirror_lower(out.data_ptr<float>(), x.size(0));
    } else {
      mirror_lower(out.data_ptr<double>(), x.size(0));
    }
    return;
  }
  at::mm_out(out, x, x.t());
}

bool set_blas_threads(int threads) {
  const Blas& b = blas();
  if (b.set_threads == nullptr || threads < 1) return false;
  b.set_threads(threads);
  return true;
}

std::string blas_description() {
  const Blas& b = blas();
  return b.ssyrk != nullptr ? b.name + " (syrk)" : b.name + " (at::mm)";
}

}  // namespace tcka
