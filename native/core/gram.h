// Reduces tapped layer outputs to centred Gram matrices as the model runs:
// flatten after the batch dimension, subtract the per-feature batch mean,
// K = Xc·Xcᵀ, then drop the feature. Memory grows with rows x n², not with
// feature sizes.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "layer_select.h"
#include "taps.h"

namespace tcka {

// Grams of one model on one batch: `grams` (rows, n, n) and `stats`
// (rows, 2) holding, per row, tr(K) = ||Xc||² and n·||mean||², from which
// ||X||² = tr(K) + n·||mean||² tells a constant layer from a varying one.
struct GramBatch {
  at::Tensor grams;
  at::Tensor stats;
};

// Writes the reduction of `feature` (first dimension n) into gram (n, n) and stats (2).
void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, at::Tensor gram, at::Tensor stats);

class GramCollector : public TapReceiver {
 public:
  // Discovery: record every call of the selected layers (the first batch).
  GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection, int64_t n, at::ScalarType dtype,
                c10::Device device);
  // Planned: record exactly `rows`, written straight into one buffer.
  GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection, const std::vector<Row>& rows,
                int64_t n, at::ScalarType dtype, c10::Device device);

  void on_tap(int64_t layer, const c10::IValue& output) noexcept override;

  // After forward: throws the first error a tap met (ERR_LAYER_SHAPE,
  // ERR_NO_TENSOR_OUTPUT, ERR_LAYER_CALL_COUNT, ...) or a planned row that
  // never ran (ERR_LAYER_NOT_RUN).
  void check(const std::string& model_label, const std::string& batch_label) const;

  const std::vector<int64_t>& calls() const { return calls_; }

  // Discovery over layers picked by default: layers whose output cannot be
  // compared (no tensor, no batch dimension) are set aside with the reason
  // instead of failing the batch.
  const std::map<int64_t, std::string>& unusable() const { return unusable_; }

  // The Grams of `rows` in order (discovery), or the planned buffer.
  GramBatch take(const std::vector<Row>& rows);

 private:
  void fail(const std::string& code, int64_t layer, const std::string& message) noexcept;
  // fail(), or in lenient discovery set the layer aside.
  void reject(const std::string& code, int64_t layer, const std::string& message) noexcept;

  const std::vector<LayerInfo>& layers_;
  int64_t n_;
  at::ScalarType dtype_;
  c10::Device device_;
  bool planned_;
  bool lenient_;
  std::vector<bool> wanted_;
  std::vector<int64_t> calls_;
  std::vector<int64_t> call_limit_;  // planned, every-call layers: calls seen in the first batch; else -1
  std::map<std::pair<int64_t, int64_t>, int64_t> row_of_;
  std::vector<bool> filled_;
  std::vector<Row> rows_;
  GramBatch buffer_;
  std::map<std::pair<int64_t, int64_t>, GramBatch> discovered_;
  std::map<int64_t, std::string> unusable_;
  std::string error_code_, error_message_;
  int64_t error_layer_ = -1;
};

}  // namespace tcka
