#include "gram.h"

#include <sstream>

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

}  // namespace

void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, at::Tensor gram, at::Tensor stats) {
  at::Tensor x = feature.reshape({n, -1});
  if (x.scalar_type() != dtype) x = x.to(dtype);
  at::Tensor mean = x.mean(0, /*keepdim=*/true);
  at::Tensor centred = x - mean;
  at::mm_out(gram, centred, centred.t());
  stats.select(0, 0).copy_(gram.diagonal().sum());
  stats.select(0, 1).copy_(mean.square().sum() * static_cast<double>(n));
}

GramCollector::GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection, int64_t n,
                             at::ScalarType dtype, c10::Device device)
    : layers_(layers),
      n_(n),
      dtype_(dtype),
      device_(device),
      planned_(false),
      lenient_(selection.all_layers),
      wanted_(layers.size(), false),
      calls_(layers.size(), 0),
      call_limit_(layers.size(), -1) {
  for (const auto& entry : selection.entries) wanted_[static_cast<size_t>(entry.layer)] = true;
}

GramCollector::GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection,
                             const std::vector<Row>& rows, int64_t n, at::ScalarType dtype, c10::Device device)
    : GramCollector(layers, selection, n, dtype, device) {
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
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  const int64_t count = static_cast<int64_t>(rows.size());
  buffer_.grams = at::empty({count, n, n}, options);
  buffer_.stats = at::empty({count, 2}, options);
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
    unusable_.emplace(layer, message);
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
    if (planned_) {
      auto found = row_of_.find({layer, call});
      if (found == row_of_.end()) return;  // a call not chosen (e.g. only "relu#2" was asked for)
      const int64_t row = found->second;
      reduce_to_gram(feature, n_, dtype_, buffer_.grams[row], buffer_.stats[row]);
      filled_[static_cast<size_t>(row)] = true;
    } else {
      const auto options = at::TensorOptions().dtype(dtype_).device(device_);
      GramBatch one{at::empty({n_, n_}, options), at::empty({2}, options)};
      reduce_to_gram(feature, n_, dtype_, one.grams, one.stats);
      discovered_[{layer, call}] = std::move(one);
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
    throw CkaError(error_code_, "Model " + model_label + ", " + batch_label + ": " + error_message_);
  }
  for (size_t r = 0; r < filled_.size(); ++r) {
    if (filled_[r]) continue;
    const Row& row = rows_[r];
    throw CkaError(codes::kLayerNotRun, "Layer '" + row.name + "' of model " + model_label + " did not run during " +
                                            batch_label + " (layer '" + layers_[static_cast<size_t>(row.layer)].name +
                                            "' ran " + std::to_string(calls_[static_cast<size_t>(row.layer)]) +
                                            " time(s))");
  }
}

GramBatch GramCollector::take(const std::vector<Row>& rows) {
  if (planned_) return std::move(buffer_);
  std::vector<at::Tensor> grams, stats;
  for (const auto& row : rows) {  // rows never include set-aside layers
    GramBatch& one = discovered_.at({row.layer, row.call});
    grams.push_back(one.grams);
    stats.push_back(one.stats);
  }
  discovered_.clear();
  return {at::stack(grams), at::stack(stats)};
}

}  // namespace tcka
