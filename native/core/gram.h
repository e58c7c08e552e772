// Reduces tapped layer outputs to centred Gram matrices as the model runs:
// flatten after the batch dimension, subtract the per-feature batch mean,
// K = Xc·Xcᵀ, then drop the feature. Memory grows with rows x n², not with
// feature sizes.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "layer_select.h"
#include "taps.h"

namespace tcka {

// Grams of one model on one batch: `grams` (slots, n, n) and `mean_norms`
// (slots), the ||mean||² of each slot's feature, from which
// ||X||² = tr(K) + n·||mean||² tells a constant layer from a varying one.
// Row r of the comparison is slot `rows[r]` (slot r when `rows` is empty):
// the first batch fills slots in call order, and two rows with the same
// tensor share a slot.
// What a layer's feature is before its Gram is made (issue 15): its output
// flattened after the batch dimension (the default), the mean over the
// dimensions after the channel one, the mean over the tokens of an (N, T, D)
// output, or one token of it (negative counts from the end).
struct View {
  enum class Kind { kFlatten, kSpatialMean, kTokenMean, kToken };
  Kind kind = Kind::kFlatten;
  int64_t token = 0;  // kToken only
  bool operator==(const View& other) const { return kind == other.kind && token == other.token; }
  bool operator!=(const View& other) const { return !(*this == other); }
  // "flatten", "spatial-mean", "token-mean", "token:K".
  std::string name() const;
};

// Parses a view's name; throws ERR_INVALID_ARG naming `what` for anything else.
View parse_view(const std::string& text, const std::string& what);

// The feature `output` (first dimension n) gives under `view`, or an undefined
// tensor with `why` set when the view does not fit its shape.
at::Tensor apply_view(const at::Tensor& output, const View& view, std::string* why);

struct GramBatch {
  at::Tensor grams;
  at::Tensor mean_norms;
  std::vector<int64_t> rows;
  // Each taken row's feature shape after its view, without the batch dimension.
  std::vector<std::vector<int64_t>> shapes;
  // Where these are defined, only the Grams' upper triangles (row-major, the
  // diagonal included) are filled in. Per slot, in float64, made with the Gram (hsic.cc makes them when
  // undefined): ||Xc||² from a float64 pass over the feature (how much the
  // layer varies), the row sums K̃1 (slots, n) and ||K̃||² of the Gram without
  // its diagonal.
  at::Tensor spreads, row_sums, squares;
};

// Time spent in reduce_to_gram(), in seconds: the Gram product and the pass
// over the Gram (`gram`), and the rest (`other`: casts, the feature pass, centring).
struct ReduceTimes {
  double gram = 0, other = 0;
};

// A layer whose offset n·||mean||² is at most this many times its spread
// ||Xc||² has its Gram made from the uncentred feature and centred in float64
// afterwards, where that is cheaper (at least 4n features: the centring pass
// costs ~3nd, the Gram pass ~2n²). The float32 rounding of such a Gram,
// relative to the centred one, grows with 1 + offset/spread, so here it is
// at most twice that of an explicitly centred Gram (docs/performance.md
// derives the bound; test/centring.test.js tests both sides of it).
inline constexpr double kMaxUncentredOffset = 1.0;

// Writes the reduction of `feature` (first dimension n) into slot `slot` of
// `out`: its centred Gram (n, n), ||mean||², and, where `out` has them
// allocated, the slot's spread, row sums and square. `workspace`, when given,
// is a scratch buffer reused (and grown) for the centred copy. `uncentred`
// (optional) tells whether the Gram was made from the uncentred feature.
void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, GramBatch& out, int64_t slot,
                    at::Tensor* workspace = nullptr, ReduceTimes* times = nullptr, bool* uncentred = nullptr);
// The same into a bare Gram and ||mean||² (no spread or sums: hsic.cc makes those).
void reduce_to_gram(const at::Tensor& feature, int64_t n, at::ScalarType dtype, at::Tensor gram, at::Tensor mean_norm,
                    at::Tensor* workspace = nullptr);
// A CPU tensor's memory is asked to be backed by huge pages where the kernel
// offers them on request (transparent huge pages in "madvise" mode): a fresh
// Gram buffer of hundreds of megabytes otherwise costs one page fault per 4 KB
// on its first write. Call before anything is written into it; a no-op
// elsewhere and for small tensors.
void advise_huge_pages(const at::Tensor& tensor);
// Allocates `batch`'s per-slot float64 statistics for `slots` slots of n samples.
void allocate_gram_stats(GramBatch& batch, int64_t slots, int64_t n);

// The full-batch mode (fullbatch.h) makes its Grams over chunks itself: the
// collector hands it each planned row's viewed feature instead of reducing
// it, after the same checks (shapes, call counts, views, unusable layers).
class FeatureSink {
 public:
  virtual ~FeatureSink() = default;
  // Called in the tap, once per planned row and pass. `feature` is the row's
  // output after its view (first dimension n); `same` >= 0 says it is the
  // tensor (and view) of row `same`, handed over earlier in this pass (the
  // streaming collector shares a Gram there). Must not throw: a sink keeps
  // its own error for the caller to raise after forward.
  virtual void on_feature(int64_t row, const at::Tensor& feature, int64_t same) noexcept = 0;
};

class GramCollector : public TapReceiver {
 public:
  // Discovery: record every call of the selected layers (the first batch).
  // With a `sink`, no Gram is made: only calls, shapes and shared tensors
  // are recorded (take() then gives rows and shapes without Grams).
  GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection, int64_t n, at::ScalarType dtype,
                c10::Device device, FeatureSink* sink = nullptr);
  // Planned: record exactly `rows`, written straight into one buffer, or
  // handed to `sink` when one is given (no buffer then).
  GramCollector(const std::vector<LayerInfo>& layers, const LayerSelection& selection, const std::vector<Row>& rows,
                int64_t n, at::ScalarType dtype, c10::Device device, FeatureSink* sink = nullptr);

  // Each layer's view, indexed like `layers` (empty: all flatten), and the
  // model's side (1 or 2) for the messages. Set before the forward pass.
  void set_views(const std::vector<View>* views, int side) {
    views_ = views;
    side_ = side;
  }
  // Planned: each row's feature shape after the view (without the batch
  // dimension) from the batch that fixed the rows; an empty entry is not
  // checked. A row whose feature has another shape is ERR_LAYER_SHAPE.
  void set_expected_shapes(const std::vector<std::vector<int64_t>>* shapes) { expected_shapes_ = shapes; }

  void on_tap(int64_t layer, const c10::IValue& output) noexcept override;

  // After forward: throws the first error a tap met (ERR_LAYER_SHAPE,
  // ERR_NO_TENSOR_OUTPUT, ERR_LAYER_CALL_COUNT, ...) or a planned row that
  // never ran (ERR_LAYER_NOT_RUN).
  void check(const std::string& model_label, const std::string& batch_label) const;

  const std::vector<int64_t>& calls() const { return calls_; }
  // Taps whose Gram was copied from an identical tensor reduced earlier (or,
  // with a sink, whose feature was that of an earlier row).
  int64_t reused() const { return reused_; }
  // Seconds spent in on_tap() in all, and in its Gram products and passes over the Grams.
  double tap_seconds() const { return tap_seconds_; }
  double gram_seconds() const { return reduce_times_.gram; }
  // Gram buffers to reuse: planned collectors take `grams` when its shape and
  // dtype fit (a fresh buffer costs a round of page faults).
  void reuse_buffer(at::Tensor grams) { spare_ = std::move(grams); }

  // Discovery over layers picked by default: layers whose output cannot be
  // compared (no tensor, no batch dimension) are set aside with the reason
  // instead of failing the batch.
  // Layers whose output cannot be compared, with the code a named layer would
  // fail with (ERR_NO_TENSOR_OUTPUT, ERR_LAYER_SHAPE) and why.
  struct Unusable {
    std::string code;
    std::string message;
  };
  const std::map<int64_t, Unusable>& unusable() const { return unusable_; }

  // The buffer (with each row's feature shape), with `rows` mapped to their slots (discovery) or in order (planned).
  GramBatch take(const std::vector<Row>& rows);

 private:
  // The slot of a tensor already reduced in this forward pass (a Sequential
  // returns its last child's output; a ResNet block its last ReLU's), or -1.
  // The same live TensorImpl with the same version counter, offset, sizes and
  // strides holds the same values.
  int64_t reduced_before(const at::Tensor& feature, const View& view) const;
  void remember(const at::Tensor& feature, const View& view, int64_t slot);
  const View& view_of(int64_t layer) const;
  // Discovery: the next free slot of the buffer, growing it when full.
  int64_t next_slot();
  // Planned: allocates the buffer (taking the spare one when it fits) on first use.
  void ensure_buffer();

  void fail(const std::string& code, int64_t layer, const std::string& message) noexcept;
  // fail(), or in lenient discovery set the layer aside.
  void reject(const std::string& code, int64_t layer, const std::string& message) noexcept;

  const std::vector<LayerInfo>& layers_;
  int64_t n_;
  at::ScalarType dtype_;
  c10::Device device_;
  FeatureSink* sink_;
  bool planned_;
  bool lenient_;
  std::vector<bool> wanted_;
  std::vector<int64_t> calls_;
  std::vector<int64_t> call_limit_;  // planned, every-call layers: calls seen in the first batch; else -1
  std::map<std::pair<int64_t, int64_t>, int64_t> row_of_;
  std::vector<bool> filled_;
  std::vector<Row> rows_;
  GramBatch buffer_;
  std::map<std::pair<int64_t, int64_t>, int64_t> discovered_;  // (layer, call) -> slot
  int64_t slots_used_ = 0;
  std::map<int64_t, Unusable> unusable_;
  struct Reduced {
    // Weak: the feature's storage is freed as usual, but its TensorImpl's
    // address is not reused while this entry lives.
    c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> impl;
    int64_t version, offset;
    std::vector<int64_t> sizes, strides;
    at::ScalarType dtype;
    View view;  // two rows with one tensor but other views do not share a Gram
    int64_t slot;
  };
  std::vector<Reduced> reduced_;
  std::unordered_multimap<const void*, size_t> reduced_index_;  // TensorImpl address -> reduced_ entry
  at::Tensor workspace_;                                        // centred copies, one layer at a time
  int64_t reused_ = 0;
  double tap_seconds_ = 0;
  ReduceTimes reduce_times_;
  at::Tensor spare_;
  const std::vector<View>* views_ = nullptr;
  int side_ = 1;
  const std::vector<std::vector<int64_t>>* expected_shapes_ = nullptr;
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> shapes_;  // (layer, call) -> feature shape
  std::string error_code_, error_message_;
  int64_t error_layer_ = -1;
};

}  // namespace tcka
