#include "gram.h"

#include <ATen/ops/dot.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/zeros.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include "blas.h"
#include "errors.h"

namespace tcka {
namespace {

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << '[';
  for (int64_t i = 0; i < t.dim(); ++i) out << (i ? ", " : "") << t.size(i);
  out << ']';
  return out.str();
}

std::string sizes_string(const std::vector<int64_t>& sizes) {
  std::ostringstream out;
  out << "[n";
  for (const int64_t size : sizes) out << ", " << size;
  out << ']';
  return out.str();
}

}  // namespace

std::string View::name() const {
  switch (kind) {
    case Kind::kSpatialMean: return "spatial-mean";
    case Kind::kTokenMean: return "token-mean";
    case Kind::kToken: return "token:" + std::to_string(token);
    case Kind::kFlatten:
    default: return "flatten";
  }
}

View parse_view(const std::string& text, const std::string& what) {
  View view;
  if (text == "flatten") return view;
  if (text == "spatial-mean") {
    view.kind = View::Kind::kSpatialMean;
    return view;
  }
  if (text == "token-mean") {
    view.kind = View::Kind::kTokenMean;
    return view;
  }
  if (text.rfind("token:", 0) == 0) {
    const std::string digits = text.substr(6);
    const size_t start = !digits.empty() && digits[0] == '-' ? 1 : 0;
    bool ok = digits.size() > start && digits.size() <= start + 9;
    for (size_t i = start; ok && i < digits.size(); ++i) ok = digits[i] >= '0' && digits[i] <= '9';
    if (ok) {
      view.kind = View::Kind::kToken;
      view.token = std::stoll(digits);
      return view;
    }
  }
  throw CKAError(codes::kInvalidArg,
                 "Expected " + what +
                     " to be 'flatten', 'spatial-mean', 'token-mean' or 'token:K' (K an integer) but " + "received '" +
                     text + "'",
                 ErrorKind::RangeError);
}

at::Tensor apply_view(const at::Tensor& output, const View& view, std::string* why) {
  switch (view.kind) {
    case View::Kind::kFlatten: return output;
    case View::Kind::kSpatialMean: {
      if (output.dim() < 2) {
        *why = "spatial-mean needs an (N, C, ...) output of at least 2 dimensions";
        return at::Tensor();
      }
      if (output.dim() == 2) return output;
      std::vector<int64_t> dims;
      for (int64_t d = 2; d < output.dim(); ++d) dims.push_back(d);
      for (int64_t d = 2; d < output.dim(); ++d) {
        if (output.size(d) == 0) {
          *why = "spatial-mean needs at least one position after the channel dimension";
          return at::Tensor();
        }
      }
      const at::Tensor x = output.is_floating_point() ? output : output.to(at::kFloat);
      return x.mean(dims);
    }
    case View::Kind::kTokenMean:
    case View::Kind::kToken: {
      if (output.dim() != 3) {
        *why = view.name() + " needs an (N, T, D) output of 3 dimensions";
        return at::Tensor();
      }
      const int64_t tokens = output.size(1);
      if (view.kind == View::Kind::kTokenMean) {
        if (tokens == 0) {
          *why = "token-mean needs at least one token";
          return at::Tensor();
        }
        const at::Tensor x = output.is_floating_point() ? output : output.to(at::kFloat);
        return x.mean(1);
      }
      const int64_t k = view.token < 0 ? tokens + view.token : view.token;
      if (k < 0 || k >= tokens) {
        *why = "token " + std::to_string(view.token) + " is out of range for " + std::to_string(tokens) +
               " token(s) (K from " + std::to_string(-tokens) + " to " + std::to_string(tokens - 1) + ")";
        return at::Tensor();
      }
      return output.select(1, k);
    }
  }
  return output;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Per feature of a row-major (n, d) matrix, in float64: the means, and the
// spread ||X - 1·meanᵀ||² and ||mean||² of the whole. Tiles of features keep
// the sums in the first-level cache.
template <typename T>
void feature_moments(const T* x, int64_t n, int64_t d, std::vector<double>& mean, double* spread, double* mean_norm) {
  constexpr int64_t kTile = 512;
  mean.assign(static_cast<size_t>(d), 0.0);
  double total_spread = 0, total_mean = 0;
  double sum[kTile], squares[kTile];
  for (int64_t j0 = 0; j0 < d; j0 += kTile) {
    const int64_t width = std::min(kTile, d - j0);
    std::fill(sum, sum + width, 0.0);
    std::fill(squares, squares + width, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const T* row = x + i * d + j0;
      for (int64_t j = 0; j < width; ++j) {
        const double v = row[j];
        sum[j] += v;
        squares[j] += v * v;
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      const double mu = sum[j] / static_cast<double>(n);
      mean[static_cast<size_t>(j0 + j)] = mu;
      total_spread += std::max(0.0, squares[j] - sum[j] * mu);
      total_mean += mu * mu;
    }
  }
  *spread = total_spread;
  *mean_norm = total_mean;
}

// Copies the upper triangle of a row-major n x n matrix into the lower one,
// in small tiles (a column-wise walk misses the cache at every step, and
// power-of-two strides map a large tile's rows onto a few cache sets).
template <typename T>
void mirror_upper(T* c, int64_t n) {
  constexpr int64_t kTile = 16;
  for (int64_t i0 = 0; i0 < n; i0 += kTile) {
    const int64_t i1 = std::min(n, i0 + kTile);
    for (int64_t j0 = i0; j0 < n; j0 += kTile) {
      const int64_t j1 = std::min(n, j0 + kTile);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = std::max(j0, i + 1); j < j1; ++j) c[j * n + i] = c[i * n + j];
      }
    }
  }
}

// Row sums of a symmetric matrix held in its upper triangle (row-major),
// diagonal excluded, in float64: row i's part right of the diagonal, plus
// its column part above it (summed down the columns: independent lanes).
// With `square`, also the sum of squares of the whole matrix without its
// diagonal, in the same pass (a large Gram is read from memory once).
template <typename T>
void upper_row_sums(const T* k, int64_t n, double* out, double* square = nullptr) {
  std::fill(out, out + n, 0.0);
  double squares[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    const T* row = k + i * n;
    double part[4] = {0, 0, 0, 0};
    int64_t j = i + 1;
    for (; j + 4 <= n; j += 4) {
      for (int q = 0; q < 4; ++q) {
        const double v = row[j + q];
        part[q] += v;
        squares[q] += v * v;
        out[j + q] += v;
      }
    }
    for (; j < n; ++j) {
      const double v = row[j];
      part[0] += v;
      squares[0] += v * v;
      out[j] += v;
    }
    out[i] += (part[0] + part[1]) + (part[2] + part[3]);
  }
  if (square != nullptr) *square = 2.0 * ((squares[0] + squares[1]) + (squares[2] + squares[3]));
}

// One pass over a symmetric Gram held in its upper triangle: the row sums
// and ||·||² without the diagonal (K̃1, ||K̃||²) in float64. With `correct`,
// the Gram is of an uncentred feature and is centred first, entry by entry
// in float64: Kc = K - g1ᵀ - 1gᵀ + s11ᵀ with g = K1/n and s = 1ᵀK1/n² (exact
// in exact arithmetic: Xc·Xcᵀ = (I - 11ᵀ/n)·XXᵀ·(I - 11ᵀ/n)).
template <typename T>
void gram_pass(T* k, int64_t n, bool correct, double* row_sums, double* square) {
  if (correct) {
    std::vector<double> g(static_cast<size_t>(n));
    upper_row_sums(k, n, g.data());
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      g[static_cast<size_t>(i)] = (g[static_cast<size_t>(i)] + k[i * n + i]) / static_cast<double>(n);
      s += g[static_cast<size_t>(i)];
    }
    s /= static_cast<double>(n);
    const double* gj = g.data();
    for (int64_t i = 0; i < n; ++i) {
      T* row = k + i * n;
      const double shift = s - gj[i];
      for (int64_t j = i; j < n; ++j) row[j] = static_cast<T>(row[j] + (shift - gj[j]));
    }
  }
  upper_row_sums(k, n, row_sums, square);
}

template <typename T>
void reduce_cpu(const at::Tensor& x, int64_t n, GramBatch& out, int64_t slot, at::Tensor* workspace, ReduceTimes* times,
                bool* uncentred) {
  const auto start = Clock::now();
  const int64_t d = x.size(1);
  const T* data = x.data_ptr<T>();
  std::vector<double> mean;
  double spread = 0, mean_norm = 0;
  feature_moments(data, n, d, mean, &spread, &mean_norm);
  // The offset against the spread: an uncentred Gram's float32 rounding,
  // relative to the centred Gram, grows with 1 + offset (docs/performance.md).
  const double offset = spread > 0 ? static_cast<double>(n) * mean_norm / spread : INFINITY;
  const bool skip_centring = d >= 4 * n && offset <= kMaxUncentredOffset;
  at::Tensor product = x;
  if (!skip_centring) {
    const int64_t size = n * d;
    at::Tensor buffer;
    if (workspace != nullptr) {
      if (!workspace->defined() || workspace->numel() < size || workspace->scalar_type() != x.scalar_type()) {
        *workspace = at::empty({size}, x.options());
      }
      buffer = *workspace;
    } else {
      buffer = at::empty({size}, x.options());
    }
    T* centred = buffer.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) {
      const T* row = data + i * d;
      T* to = centred + i * d;
      for (int64_t j = 0; j < d; ++j) to[j] = static_cast<T>(row[j] - mean[static_cast<size_t>(j)]);
    }
    product = buffer.narrow(0, 0, size).view({n, d});
  }
  const auto product_start = Clock::now();
  at::Tensor gram = out.grams[slot];
  T* k = gram.data_ptr<T>();
  if (!gram_upper(product, gram)) gram_product(product, gram);  // full (at::mm): its upper triangle is the same
  double* row_sums = out.row_sums.defined() ? out.row_sums[slot].data_ptr<double>() : nullptr;
  std::vector<double> scratch;
  if (row_sums == nullptr) {
    scratch.resize(static_cast<size_t>(n));
    row_sums = scratch.data();
  }
  double square = 0;
  gram_pass(k, n, skip_centring, row_sums, &square);
  // Without room for the sums (a bare Gram), the whole matrix: hsic.cc makes them from it.
  if (!out.row_sums.defined()) mirror_upper(k, n);
  const double product_seconds = seconds_since(product_start);
  // As the Gram's dtype holds it (a float32 overflow is +inf, as a float32 sum would give).
  if (out.mean_norms.scalar_type() == at::kFloat) {
    out.mean_norms.data_ptr<float>()[slot] =
        mean_norm <= std::numeric_limits<float>::max() ? static_cast<float>(mean_norm) : INFINITY;
  } else {
    out.mean_norms[slot].fill_(mean_norm);
  }
  if (out.spreads.defined()) out.spreads.data_ptr<double>()[slot] = spread;
  if (out.squares.defined()) out.squares.data_ptr<double>()[slot] = square;
  if (uncentred != nullptr) *uncentred = skip_centring;
  if (times != nullptr) {
    times->gram += product_seconds;
    times->other += seconds_since(start) - product_seconds;
  }
}

}  // namespace

void advise_huge_pages(const at::Tensor& tensor) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = 2u << 20;
  if (!tensor.defined() || !tensor.device().is_cpu()) return;
  const auto start = reinterpret_cast<uintptr_t>(tensor.data_ptr());
  const uintptr_t end = start + static_cast<uintptr_t>(tensor.numel()) * tensor.element_size();
  const uintptr_t first = (start + kHuge - 1) & ~(kHuge - 1), last = end & ~(kHuge - 1);
  if (last >= first + 2 * kHuge) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)tensor;
#endif
}

void allocate_gram_stats(GramBatch& batch, int64_t slots, int64_t n) {
  const auto options = at::TensorOptions().dtype(at::kDouble);
  batch.spreads = at::zeros({slots}, options);
  batch.row_sums = at::empty({slots, n}, options);
  batch.squares = at::zeros({slots}, options);
}

void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, GramBatch& out, int64_t slot,
                    at::Tensor* workspace, ReduceTimes* times, bool* uncentred) {
  at::Tensor x = feature.reshape({n, -1});
  if (x.scalar_type() != dtype) x = x.to(dtype);
  const bool cpu = x.device().is_cpu() && out.grams.device().is_cpu() && out.grams.is_contiguous() &&
                   (dtype == at::kFloat || dtype == at::kDouble) && x.size(1) > 0 &&
                   (!out.row_sums.defined() || out.row_sums.device().is_cpu());
  if (cpu) {
    x = x.contiguous();
    if (dtype == at::kFloat) return reduce_cpu<float>(x, n, out, slot, workspace, times, uncentred);
    return reduce_cpu<double>(x, n, out, slot, workspace, times, uncentred);
  }
  // Other devices: tensor operations, explicit centring.
  const auto start = Clock::now();
  const at::Tensor mean = x.mean(0, /*keepdim=*/true);
  at::Tensor centred;
  if (workspace != nullptr) {
    const int64_t size = x.numel();
    if (!workspace->defined() || workspace->numel() < size || workspace->scalar_type() != dtype ||
        workspace->device() != x.device()) {
      *workspace = at::empty({size}, x.options());
    }
    centred = workspace->narrow(0, 0, size).view(x.sizes());
  } else {
    centred = at::empty_like(x, at::MemoryFormat::Contiguous);
  }
  at::sub_out(centred, x, mean);
  const auto product_start = Clock::now();
  at::Tensor gram = out.grams[slot];
  gram_product(centred, gram);
  const at::Tensor flat = mean.view({-1});
  out.mean_norms[slot].copy_(at::dot(flat, flat));
  if (out.spreads.defined()) out.spreads[slot].copy_(centred.square().sum(at::kDouble));
  if (out.row_sums.defined()) {
    const at::Tensor g = gram.to(at::kDouble);
    const at::Tensor diagonal = g.diagonal();
    out.row_sums[slot].copy_(g.sum(1).sub_(diagonal));
    out.squares[slot].copy_(g.square().sum().sub_(diagonal.square().sum()));
  }
  if (uncentred != nullptr) *uncentred = false;
  if (times != nullptr) {
    const double product_seconds = seconds_since(product_start);
    times->gram += product_seconds;
    times->other += seconds_since(start) - product_seconds;
  }
}

void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, at::Tensor gram, at::Tensor mean_norm,
                    at::Tensor* workspace) {
  GramBatch one;
  one.grams = gram.unsqueeze(0);
  one.mean_norms = mean_norm.reshape({1});
  reduce_to_gram(feature, n, dtype, one, 0, workspace);
}

GramCollector::GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection, int64_t n,
                             at::ScalarType dtype, c10::Device device, FeatureSink* sink)
    : layers_(layers),
      n_(n),
      dtype_(dtype),
      device_(device),
      sink_(sink),
      planned_(false),
      lenient_(selection.all_layers),
      wanted_(layers.size(), false),
      calls_(layers.size(), 0),
      call_limit_(layers.size(), -1) {
  for (const auto& entry : selection.entries) wanted_[static_cast<size_t>(entry.layer)] = true;
}

GramCollector::GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection,
                             const std::vector<Row>& rows, int64_t n, at::ScalarType dtype, c10::Device device,
                             FeatureSink* sink)
    : GramCollector(layers, selection, n, dtype, device, sink) {
  planned_ = true;
  lenient_ = false;
  rows_ = rows;
  std::fill(wanted_.begin(), wanted_.end(), false);
  for (size_t r = 0; r < rows.size(); ++r) {
    row_of_[{rows[r].layer, rows[r].call}] = static_cast<int64_t>(r);
    wanted_[static_cast<size_t>(rows[r].layer)] = true;
  }
  for (const auto& entry : selection.entries) {
    if (entry.call != 0) continue;
    int64_t count = 0;
    for (const auto& row : rows) count += row.layer == entry.layer ? 1 : 0;
    call_limit_[static_cast<size_t>(entry.layer)] = count;
  }
  filled_.assign(rows.size(), false);
}

void GramCollector::ensure_buffer() {
  if (sink_ != nullptr || buffer_.grams.defined()) return;  // features go to the sink: no Gram buffer
  const auto options = at::TensorOptions().dtype(dtype_).device(device_);
  const int64_t count = static_cast<int64_t>(rows_.size());
  const int64_t bytes = count * n_ * n_ * static_cast<int64_t>(c10::elementSize(dtype_));
  if (spare_.defined() && spare_.scalar_type() == dtype_ && spare_.device() == device_ &&
      static_cast<int64_t>(spare_.storage().nbytes()) >= bytes) {
    // The spare's memory, whatever its shape was (a discovery buffer has more slots).
    buffer_.grams = at::empty({0}, options).set_(spare_.storage(), 0, {count, n_, n_}, {n_ * n_, n_, 1});
  } else {
    buffer_.grams = at::empty({count, n_, n_}, options);
    advise_huge_pages(buffer_.grams);
  }
  spare_ = at::Tensor();
  buffer_.mean_norms = at::empty({count}, options);
  allocate_gram_stats(buffer_, count, n_);
  if (!device_.is_cpu()) {
    buffer_.spreads = buffer_.spreads.to(device_);
    buffer_.row_sums = buffer_.row_sums.to(device_);
    buffer_.squares = buffer_.squares.to(device_);
  }
}

const View& GramCollector::view_of(int64_t layer) const {
  static const View flatten;
  if (views_ == nullptr || static_cast<size_t>(layer) >= views_->size()) return flatten;
  return (*views_)[static_cast<size_t>(layer)];
}

int64_t GramCollector::reduced_before(const at::Tensor& feature, const View& view) const {
  c10::TensorImpl* impl = feature.unsafeGetTensorImpl();
  // By address (a freed tensor's address can come back: the weak pointer tells).
  const auto [first, last] = reduced_index_.equal_range(impl);
  for (auto it = first; it != last; ++it) {
    const Reduced& r = reduced_[it->second];
    auto alive = r.impl.lock();
    if (alive.get() != impl) continue;
    if (r.view == view && r.version == static_cast<int64_t>(feature._version()) &&
        r.offset == feature.storage_offset() && r.dtype == feature.scalar_type() && r.sizes == feature.sizes().vec() &&
        r.strides == feature.strides().vec()) {
      return r.slot;
    }
  }
  return -1;
}

void GramCollector::remember(const at::Tensor& feature, const View& view, int64_t slot) {
  if (feature.is_inference()) return;  // no version counter: in-place changes could not be seen
  reduced_index_.emplace(feature.unsafeGetTensorImpl(), reduced_.size());
  reduced_.push_back({c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(feature.getIntrusivePtr()),
                      static_cast<int64_t>(feature._version()), feature.storage_offset(), feature.sizes().vec(),
                      feature.strides().vec(), feature.scalar_type(), view, slot});
}

int64_t GramCollector::next_slot() {
  if (sink_ != nullptr) return slots_used_++;  // slots name shared tensors only: no Grams
  const int64_t capacity = buffer_.grams.defined() ? buffer_.grams.size(0) : 0;
  if (slots_used_ == capacity) {
    // First: one slot per call that the traced methods announce for each
    // wanted layer; then double. Growing copies, so it should be rare.
    int64_t want = 0;
    for (size_t i = 0; i < wanted_.size(); ++i) {
      if (wanted_[i]) want += std::max<int64_t>(1, layers_[i].forward_methods);
    }
    const int64_t grown = std::max<int64_t>(capacity == 0 ? want : 2 * capacity, slots_used_ + 1);
    const auto options = at::TensorOptions().dtype(dtype_).device(device_);
    GramBatch bigger;
    bigger.grams = at::empty({grown, n_, n_}, options);
    advise_huge_pages(bigger.grams);
    bigger.mean_norms = at::empty({grown}, options);
    allocate_gram_stats(bigger, grown, n_);
    if (!device_.is_cpu()) {
      bigger.spreads = bigger.spreads.to(device_);
      bigger.row_sums = bigger.row_sums.to(device_);
      bigger.squares = bigger.squares.to(device_);
    }
    if (capacity > 0) {
      bigger.grams.narrow(0, 0, capacity).copy_(buffer_.grams);
      bigger.mean_norms.narrow(0, 0, capacity).copy_(buffer_.mean_norms);
      bigger.spreads.narrow(0, 0, capacity).copy_(buffer_.spreads);
      bigger.row_sums.narrow(0, 0, capacity).copy_(buffer_.row_sums);
      bigger.squares.narrow(0, 0, capacity).copy_(buffer_.squares);
    }
    buffer_ = std::move(bigger);
  }
  return slots_used_++;
}

void GramCollector::fail(const std::string& code, int64_t layer, const std::string& message) noexcept {
  if (!error_code_.empty()) return;
  error_code_ = code;
  error_layer_ = layer;
  error_message_ = message;
}

void GramCollector::reject(const std::string& code, int64_t layer, const std::string& message) noexcept {
  if (!lenient_) return fail(code, layer, message);
  try {
    unusable_.emplace(layer, Unusable{code, message});
  } catch (...) {
    fail(code, layer, message);
  }
}

void GramCollector::on_tap(int64_t layer, const c10::IValue& output) noexcept {
  const auto start = Clock::now();
  struct Timer {
    Clock::time_point start;
    double& total;
    ~Timer() { total += seconds_since(start); }
  } timer{start, tap_seconds_};
  if (layer < 0 || static_cast<size_t>(layer) >= wanted_.size()) return;
  const auto index = static_cast<size_t>(layer);
  const int64_t call = ++calls_[index];
  if (!wanted_[index] || !error_code_.empty() || unusable_.count(layer) != 0) return;
  try {
    const std::string name = row_name(layers_[index].name, call);
    if (call_limit_[index] >= 0 && call > call_limit_[index]) {
      fail(codes::kLayerCallCount, layer,
           "Layer '" + layers_[index].name + "' ran more often than in the first batch (" +
               std::to_string(call_limit_[index]) + " time(s)); the rows of a comparison are fixed by its first batch");
      return;
    }
    at::Tensor feature = first_tensor(output);
    if (!feature.defined()) {
      reject(codes::kNoTensorOutput, layer,
             "Output of layer '" + name + "' (" + layers_[index].type + ") holds no tensor");
      return;
    }
    if (feature.dim() == 0 || feature.size(0) != n_) {
      reject(codes::kLayerShape, layer,
             "Output of layer '" + name + "' has shape " + shape_string(feature) + "; expected the batch size " +
                 std::to_string(n_) + " as its first dimension");
      return;
    }
    const View& view = view_of(layer);
    std::string why;
    const at::Tensor viewed = apply_view(feature, view, &why);
    if (!viewed.defined()) {
      fail(codes::kViewShape, layer,
           "View '" + view.name() + "' of layer '" + name + "' does not fit its output of shape " +
               shape_string(feature) + ": " + why + " (set another view for this layer with --view" +
               std::to_string(side_) + " or model" + std::to_string(side_) + "Views)");
      return;
    }
    std::vector<int64_t> sizes = viewed.sizes().vec();
    sizes.erase(sizes.begin());
    if (planned_) {
      auto found = row_of_.find({layer, call});
      if (found == row_of_.end()) return;  // a call not chosen (e.g. only "relu#2" was asked for)
      const int64_t row = found->second;
      if (expected_shapes_ != nullptr && static_cast<size_t>(row) < expected_shapes_->size()) {
        const std::vector<int64_t>& expected = (*expected_shapes_)[static_cast<size_t>(row)];
        if (!expected.empty() && expected != sizes) {
          const std::string& module = layers_[index].name;
          std::string message = "Output of layer '" + name + "' has shape " + shape_string(feature);
          if (view.kind != View::Kind::kFlatten) message += " (" + view.name() + ": " + sizes_string(sizes) + ")";
          message += ", but its feature was " + sizes_string(expected) + " in the batch that fixed the rows (view '" +
                     view.name() + "'); a row's feature must keep its size over the batches";
          if (view.kind == View::Kind::kFlatten) {
            message +=
                ". If its token count changes between batches (padding to the longest sequence), compare it "
                "on a view: --view" +
                std::to_string(side_) + " '" + module + "=token-mean' (or token:0; API: model" + std::to_string(side_) +
                "Views: { '" + module + "': 'token-mean' })";
          }
          fail(codes::kLayerShape, layer, message);
          return;
        }
      }
      shapes_[{layer, call}] = sizes;
      const int64_t same = reduced_before(feature, view);
      if (sink_ != nullptr) {
        sink_->on_feature(row, viewed, same);
        if (same >= 0) {
          ++reused_;
        } else {
          remember(feature, view, row);
        }
      } else if (same >= 0) {
        ensure_buffer();
        buffer_.grams[row].copy_(buffer_.grams[same]);
        buffer_.mean_norms[row].copy_(buffer_.mean_norms[same]);
        buffer_.spreads[row].copy_(buffer_.spreads[same]);
        buffer_.row_sums[row].copy_(buffer_.row_sums[same]);
        buffer_.squares[row].copy_(buffer_.squares[same]);
        ++reused_;
      } else {
        ensure_buffer();
        reduce_to_gram(viewed, n_, dtype_, buffer_, row, &workspace_, &reduce_times_);
        remember(feature, view, row);
      }
      filled_[static_cast<size_t>(row)] = true;
    } else {
      shapes_[{layer, call}] = sizes;
      const int64_t same = reduced_before(feature, view);
      if (same >= 0) {
        discovered_[{layer, call}] = same;  // two rows, one slot
        ++reused_;
        return;
      }
      const int64_t slot = next_slot();
      if (sink_ == nullptr) reduce_to_gram(viewed, n_, dtype_, buffer_, slot, &workspace_, &reduce_times_);
      remember(feature, view, slot);
      discovered_[{layer, call}] = slot;
    }
  } catch (const c10::Error& e) {
    fail(codes::kInternal, layer, shorten_message(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    fail(codes::kInternal, layer, e.what());
  } catch (...) {
    fail(codes::kInternal, layer, "unknown error");
  }
}

void GramCollector::check(const std::string& model_label, const std::string& batch_label) const {
  if (!error_code_.empty()) {
    throw CKAError(error_code_, "Model " + model_label + ", " + batch_label + ": " + error_message_);
  }
  for (size_t r = 0; r < filled_.size(); ++r) {
    if (filled_[r]) continue;
    const Row& row = rows_[r];
    throw CKAError(codes::kLayerNotRun, "Layer '" + row.name + "' of model " + model_label + " did not run during " +
                                            batch_label + " (layer '" + layers_[static_cast<size_t>(row.layer)].name +
                                            "' ran " + std::to_string(calls_[static_cast<size_t>(row.layer)]) +
                                            " time(s))");
  }
}

GramBatch GramCollector::take(const std::vector<Row>& rows) {
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& row : rows) {
    auto found = shapes_.find({row.layer, row.call});
    shapes.push_back(found == shapes_.end() ? std::vector<int64_t>() : found->second);
  }
  if (planned_) {
    ensure_buffer();
    GramBatch out = std::move(buffer_);
    out.shapes = std::move(shapes);
    return out;
  }
  GramBatch out;
  out.shapes = std::move(shapes);
  if (sink_ == nullptr && buffer_.grams.defined()) {
    out.grams = buffer_.grams.narrow(0, 0, slots_used_);
    out.mean_norms = buffer_.mean_norms.narrow(0, 0, slots_used_);
    out.spreads = buffer_.spreads.narrow(0, 0, slots_used_);
    out.row_sums = buffer_.row_sums.narrow(0, 0, slots_used_);
    out.squares = buffer_.squares.narrow(0, 0, slots_used_);
  }
  for (const auto& row : rows) out.rows.push_back(discovered_.at({row.layer, row.call}));  // never set-aside layers
  buffer_ = GramBatch();
  discovered_.clear();
  return out;
}

}  // namespace tcka
