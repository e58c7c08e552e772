#include "gram.h"

#include <ATen/ops/dot.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sub.h>

#include <algorithm>
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

void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, at::Tensor gram, at::Tensor mean_norm,
                    at::Tensor* workspace) {
  at::Tensor x = feature.reshape({n, -1});
  if (x.scalar_type() != dtype) x = x.to(dtype);
  at::Tensor centred;
  if (workspace != nullptr) {
    // One scratch buffer for every layer of a pass: a fresh n x d buffer per
    // layer costs a round of page faults each time for the large ones.
    const int64_t size = x.numel();
    if (!workspace->defined() || workspace->numel() < size || workspace->scalar_type() != dtype ||
        workspace->device() != x.device()) {
      *workspace = at::empty({size}, x.options());
    }
    centred = workspace->narrow(0, 0, size).view(x.sizes());
  } else {
    centred = at::empty_like(x, at::MemoryFormat::Contiguous);
  }
  at::Tensor mean = x.mean(0, /*keepdim=*/true);
  at::sub_out(centred, x, mean);
  gram_product(centred, gram);
  // Only ||mean||² here; tr(K) is taken for all Grams at once later.
  const at::Tensor flat = mean.view({-1});
  mean_norm.copy_(at::dot(flat, flat));
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
  if (sink_ != nullptr) return;  // features go to the sink: no Gram buffer
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  const int64_t count = static_cast<int64_t>(rows.size());
  buffer_.grams = at::empty({count, n, n}, options);
  buffer_.mean_norms = at::empty({count}, options);
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
    GramBatch bigger{at::empty({grown, n_, n_}, options), at::empty({grown}, options), {}, {}};
    if (capacity > 0) {
      bigger.grams.narrow(0, 0, capacity).copy_(buffer_.grams);
      bigger.mean_norms.narrow(0, 0, capacity).copy_(buffer_.mean_norms);
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
        buffer_.grams[row].copy_(buffer_.grams[same]);
        buffer_.mean_norms[row].copy_(buffer_.mean_norms[same]);
        ++reused_;
      } else {
        reduce_to_gram(viewed, n_, dtype_, buffer_.grams[row], buffer_.mean_norms[row], &workspace_);
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
      if (sink_ == nullptr)
        reduce_to_gram(viewed, n_, dtype_, buffer_.grams[slot], buffer_.mean_norms[slot], &workspace_);
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
    GramBatch out = std::move(buffer_);
    out.shapes = std::move(shapes);
    return out;
  }
  GramBatch out;
  out.shapes = std::move(shapes);
  if (sink_ == nullptr) {
    out.grams = buffer_.grams.narrow(0, 0, slots_used_);
    out.mean_norms = buffer_.mean_norms.narrow(0, 0, slots_used_);
  }
  for (const auto& row : rows) out.rows.push_back(discovered_.at({row.layer, row.call}));  // never set-aside layers
  buffer_ = GramBatch();
  discovered_.clear();
  return out;
}

}  // namespace tcka
