// A running minibatch-CKA comparison between the layers of two models.
#pragma once

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fullbatch.h"
#include "gram.h"
#include "hsic.h"
#include "model.h"

namespace tcka {

struct CKAConfig {
  std::vector<std::string> layers1, layers2;  // empty: every submodule that runs
  std::string label1, label2;                 // model names for messages
  // Each layer's feature view, indexed like the model's layers(); empty: all flatten.
  std::vector<View> views1, views2;
  at::ScalarType gram_dtype = at::kFloat;
  at::ScalarType pair_dtype = at::kDouble;
  // Intra-op threads (libtorch's and the BLAS's) for each batch's work; 0:
  // 1 on the CPU (the cores go to batches in flight), libtorch's setting on CUDA.
  int threads = 0;
  // Run model 1 and model 2 at once, on two threads (CUDA: two streams).
  bool concurrent = false;
  // Batches in flight at once in steps(), each on a worker thread of its own
  // (both models, its Grams and HSIC terms, `threads` threads), added to the
  // sums in batch order. 0: usable_cores() / threads (CUDA: 2).
  int workers = 0;
  // NaN or Inf in a layer's output: skip that batch with a warning instead of
  // failing with ERR_NON_FINITE.
  bool skip_non_finite = false;
  // The kernels compared, each at most once (docs/measures.md); the first
  // one's self-HSIC tells constant layers in the warnings.
  std::vector<Measure> measures{Measure::kLinear};
  // RBF CKA: σ = rbf_threshold x √(median d²) of the first accumulated batch,
  // per row, unless the row's layer has a user σ here (indexed by the
  // model's layer index; NaN or missing: from the data).
  double rbf_threshold = 0.5;
  std::vector<double> sigmas1, sigmas2;
};

// Where a comparison's time went (milliseconds summed over its batches, and
// over the workers when several batches are in flight), for the benchmark's
// breakdown (docs/performance.md).
struct EngineTimes {
  double forward_ms = 0;  // in the models' forward passes, the taps' own work excluded
  double tap_ms = 0;      // in the taps besides the Gram products: views, casts, means, centring
  double gram_ms = 0;     // Gram products (syrk) and the pass that takes their diagonals, row sums and norms
  double pair_ms = 0;     // pair products and the HSIC terms of every measure
  double wait_ms = 0;     // batches done, waiting for the ones before them to be added
  double wall_ms = 0;     // the steps() calls' wall-clock time (not summed over workers)
  int64_t batches = 0;    // batches timed (skipped ones too)
};

// What a comparison holds and did, for benchmarks.
struct EngineStats {
  int64_t accumulator_bytes = 0;  // float64 sums: (m·p + m + p) x 8 per measure
  int64_t gram_bytes = 0;         // the last step's Gram buffers: (m + p) x n² x element size (once if shared)
  int64_t block_bytes = 0;        // the last step's pair-dtype block copies, at most
  int64_t forwards = 0;           // forward passes run
  int64_t reused_grams = 0;       // Grams copied from an identical tensor instead of computed
  int threads = 0;                // intra-op threads per model in the last step
  bool concurrent = false;        // the last step ran both models at once
  int workers = 1;                // batches in flight at once in the last step
  EngineTimes times;              // since the engine was made (reset() keeps them)
};

// A layer left out of the rows because the selection was the default one
// and the layer did not run or gave nothing to compare.
struct LeftOutLayer {
  int model = 1;       // 1 or 2
  std::string name;    // the module's dotted path
  std::string code;    // what naming it would fail with: ERR_LAYER_NOT_RUN, ERR_NO_TENSOR_OUTPUT, ERR_LAYER_SHAPE
  std::string reason;  // e.g. "it did not run during batch 0"
};

struct StepOutcome {
  int64_t n = 0;
  bool skipped = false;
  std::string skip_reason;             // "small" (n < 4) or "non_finite"
  std::vector<std::string> warnings;   // why the batch was skipped, in words
  std::vector<LeftOutLayer> left_out;  // from the batch that fixed the rows (the first accumulated one)
};

// The accumulated state, for checkpoints: restoring it into an engine for the
// same models and layers continues the sums exactly where they were.
struct EngineState {
  std::vector<Row> rows1, rows2;
  // Per measure of the config in its order, one after another: M x (m x p), M x m, M x p.
  std::vector<double> xy, xx, yy;
  // RBF σ per row (NaN: undefined); empty without rbf_cka.
  std::vector<double> sigma1, sigma2;
  int64_t steps = 0, batches = 0, samples = 0, skipped = 0;
};

struct CKAResult {
  std::vector<std::string> rows1, rows2;
  // One row-major rows1.size() x rows2.size() matrix per measure of the config.
  std::vector<std::vector<std::optional<double>>> matrices;
  std::vector<double> self1, self2;    // summed self-HSIC per row, of the first measure
  std::vector<double> sigma1, sigma2;  // RBF σ per row (NaN: undefined); empty without rbf_cka
  int64_t samples = 0, batches = 0, skipped = 0;
  std::vector<std::string> warnings;
};

// The full-batch mode (issue 16, docs/full-batch.md): the evaluation set is
// appended chunk by chunk (the data's batches as they come), then one run
// makes each layer's N x N Gram over all chunks and computes every measure
// of fullbatch.h on them.
struct FullChunk {
  std::vector<at::Tensor> inputs1, inputs2;  // the chunk's first `n` samples (inputs2 empty: model 2 reads inputs1)
  bool has_inputs2 = false;
  int64_t n = 0;
};

// What a full-batch run held and did (bytes are the estimate made before the
// forward passes past chunk 0; times in milliseconds).
struct FullRunStats {
  int64_t forwards = 0;  // model forward passes run, the discovery pass on chunk 0 included
  int64_t chunks = 0;
  int64_t groups = 0;          // groups of chunks whose features were held at once (> 1: chunks ran again)
  int64_t estimate_bytes = 0;  // inputs + Grams + held features + measures
  int64_t budget_bytes = 0;
  int64_t gram_bytes = 0;     // (layers) x N² x 4 plus the dots, once for shared Grams and tensors
  int64_t feature_bytes = 0;  // the largest group's float32 features plus one layer's working copies
  int64_t measure_bytes = 0;  // full_batch_measure_bytes()
  int64_t input_bytes = 0;    // the appended chunks
  double forward_ms = 0;      // in the models (the taps' own work excluded)
  double gram_ms = 0;         // shifting features and making the Gram blocks
  double measure_ms = 0;      // compute_full_batch()
};

struct FullRunResult {
  std::vector<std::string> rows1, rows2;
  FullBatchMatrices matrices;
  std::vector<int64_t> features1, features2;  // d per row after its view
  int64_t samples = 0;                        // N
  std::vector<LeftOutLayer> left_out;         // from the discovery pass on chunk 0 (default selections)
  std::vector<std::string> warnings;          // constant layers, no RBF σ, in words
  FullRunStats stats;
};

enum class FullPhase { kIdle = 0, kForward = 1, kMeasures = 2 };

struct FullProgress {
  FullPhase phase = FullPhase::kIdle;
  int64_t done = 0, total = 0;  // forward: chunk passes; measures: compute_full_batch's units
};

// Shared by engine.cc and full_run.cc.
namespace detail {
// Hands every tap to two receivers: one forward pass for both sides.
class FanOut : public TapReceiver {
 public:
  FanOut(TapReceiver& a, TapReceiver& b) : a_(a), b_(b) {}
  void on_tap(int64_t layer, const c10::IValue& output) noexcept override {
    a_.on_tap(layer, output);
    b_.on_tap(layer, output);
  }

 private:
  TapReceiver& a_;
  TapReceiver& b_;
};
// Sets libtorch's intra-op threads (an OpenMP setting of the calling thread)
// and the BLAS's own pool.
void use_threads(int threads);
// The first input's batch dimension; ERR_INVALID_BATCH naming `what` when it has none.
int64_t batch_size(const std::vector<at::Tensor>& inputs, const std::string& what);
bool same_selection(const LayerSelection& a, const LayerSelection& b);
}  // namespace detail

// One batch's inputs for steps() (inputs2 empty without has_inputs2: model 2 reads inputs1).
struct BatchInput {
  std::vector<at::Tensor> inputs1, inputs2;
  bool has_inputs2 = false;
};

class CKAEngine {
 public:
  // Resolves the layer names at once (unknown names and the like fail here).
  CKAEngine(std::shared_ptr<Model> model1, std::shared_ptr<Model> model2, CKAConfig config);

  // One step: model 1 on `inputs1`, model 2 on `inputs2` (or on `inputs1`
  // when `inputs2` is null). Batches with n < 4 are skipped. Either the whole
  // step is added to the sums or, on an error, nothing is.
  StepOutcome step(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2);
  // Several steps, up to `workers` of them computed at once, each added in
  // order as soon as it and the ones before it are done: the sums are those
  // of step() on each batch in turn, bit for bit. Returns the outcomes of the
  // batches added (or skipped) before the first failure, which goes to `error`
  // (nothing of that batch or later ones is added).
  std::vector<StepOutcome> steps(const std::vector<BatchInput>& batches, std::exception_ptr* error);
  // Batches in flight at once.
  int workers() const { return workers_; }
  // Frees the Gram buffers kept for the next batches (the end of a compare() call).
  void trim();
  // Runs one batch only to fix the rows and RBF σ as if it were the first
  // accumulated one, adding nothing (a distributed rank other than 0 runs the
  // stream's batch 0 this way, so that every rank uses the same σ). Only
  // before any batch was added.
  StepOutcome calibrate(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2);

  // Throws ERR_NO_DATA before the first accumulated batch.
  CKAResult result() const;

  int64_t steps() const { return steps_; }
  // The RBF σ per row once fixed (NaN: undefined), else empty.
  const std::vector<double>& sigma1() const { return sigma1_; }
  const std::vector<double>& sigma2() const { return sigma2_; }
  EngineStats stats() const;

  // A copy of the sums and counts; ERR_NO_DATA before any batch was added.
  EngineState state() const;
  // Replaces the sums and counts (only before any batch was added). Throws
  // ERR_INVALID_ARG if the rows do not name this engine's layers or the sizes
  // do not match.
  void restore(const EngineState& state);
  // Drops the sums, counts and planned rows: the engine is as new (a
  // distributed compare() sums this call's batches apart from earlier ones).
  void reset();

  // Cancellation of the running step (from another thread): a cancelled step
  // adds nothing and throws ABORT_ERR at its next check. arm() clears the
  // flag; call it before queueing a step.
  void arm() { cancelled_ = false; }
  void cancel() { cancelled_ = true; }

  // Full-batch mode (full_run.cc). Copies the first `count` samples of a
  // chunk: 1 <= count <= n, both sides with the same n, and every chunk with
  // or without its own inputs for model 2.
  void full_append(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2, int64_t count);
  // One comparison over the appended chunks (N = their sample count, >= 4).
  // `budget`: bytes (0: 3/4 of the available memory); a run that cannot
  // hold even one chunk's features throws ERR_MEMORY_BUDGET after the pass
  // on chunk 0. Cancellation (cancel()) throws ABORT_ERR at the next check.
  // `stats`, when given, is filled as far as the run got.
  FullRunResult full_run(const FullBatchSettings& settings, int64_t budget, FullRunStats* stats = nullptr);
  // Where a run is (any thread).
  FullProgress full_progress() const;
  // Drops the appended chunks.
  void full_clear();
  int64_t full_chunks() const { return static_cast<int64_t>(chunks_.size()); }
  // Bytes of the appended chunks' inputs.
  int64_t full_input_bytes() const;

 private:
  struct Side {
    std::shared_ptr<Model> model;
    LayerSelection selection;
    std::vector<Row> rows;                     // fixed by the first accumulated batch
    std::vector<View> views;                   // per layer (empty: all flatten)
    std::vector<std::vector<int64_t>> shapes;  // each row's viewed feature shape, from the batch that fixed it
    std::string label;
    int index = 1;  // 1 or 2
  };

  // `sink`: full-batch features instead of Grams (see GramCollector).
  std::unique_ptr<GramCollector> collector_for(const Side& side, int64_t n, FeatureSink* sink = nullptr) const;
  // After forward: the side's Grams, planning its rows on the first batch.
  GramBatch finish_side(const Side& side, GramCollector& collector, const std::string& batch, std::vector<Row>* planned,
                        std::vector<LeftOutLayer>* left_out) const;
  GramBatch run_side(const Side& side, const std::vector<at::Tensor>& inputs, int64_t n, const std::string& batch,
                     std::vector<Row>* planned, std::vector<LeftOutLayer>* left_out, EngineTimes* times);

  Side sides_[2];
  CKAConfig config_;
  std::vector<std::unique_ptr<HsicAccumulator>> sums_;  // one per measure; empty before the first batch
  std::vector<double> sigma1_, sigma2_;                 // fixed with the rows
  bool has_rbf() const;
  // σ per row: the user's for the row's layer, else from `grams`' median d²; NaN where not positive and finite.
  std::vector<double> row_sigmas(const std::vector<Row>& rows, const GramBatch& grams, int64_t n,
                                 const std::vector<double>& user) const;
  // One batch on its way through steps(): checked, computed (on a worker), committed (in order).
  struct Computed {
    int64_t index = 0, n = 0;
    std::string batch;     // "batch N", for messages
    bool small = false;    // n < 4: skipped
    bool planned = false;  // computed on rows fixed before it started
    bool shared = false;   // one set of Grams for both sides
    StepOutcome outcome;
    std::vector<Row> planned1, planned2;  // the rows it used
    std::vector<std::vector<int64_t>> shapes1, shapes2;
    GramBatch k, l;  // kept until the commit only while its σ may be replaced
    bool own_sigmas = false;
    std::vector<double> sigma1, sigma2;
    std::vector<BatchHsic> terms;  // per measure of the config
    bool finite = true;
    std::string where;  // the first non-finite layer, in words
    EngineStats stats;
    EngineTimes times;
  };
  int threads_per_batch() const;
  Computed prepare(const BatchInput& input, int64_t index) const;
  void compute(Computed& work, const BatchInput& input, int threads, bool calibrate);
  void compute_terms(Computed& work);
  void commit(Computed& work, const BatchInput& input, int threads);
  void merge_times(const Computed& work);
  static bool same_rows(const std::vector<Row>& a, const std::vector<Row>& b);
  // Gram buffers of finished batches, per side, for the next ones.
  at::Tensor take_spare(int side);
  void give_spare(int side, at::Tensor grams);
  std::vector<at::Tensor> spares_[2];
  int workers_ = 1;
  int threads_ = 1;           // per batch
  mutable std::mutex mutex_;  // the rows, shapes and σ as workers read them; spares; stats
  EngineTimes times_;
  int64_t steps_ = 0, batches_ = 0, samples_ = 0, skipped_ = 0;
  std::atomic<int64_t> forwards_{0}, reused_{0};
  std::atomic<bool> cancelled_{false};
  void check_cancelled(const std::string& batch) const;
  EngineStats last_;

  // Full-batch mode.
  struct FullSide;  // one side's plan, Grams and held features during a run (full_run.cc)
  std::vector<FullChunk> chunks_;
  std::atomic<int> full_phase_{0};
  std::atomic<int64_t> full_done_{0}, full_total_{0};
  FullBatchProgress full_measures_;
};

}  // namespace tcka
