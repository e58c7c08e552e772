// A running minibatch-CKA comparison between the layers of two models.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hsic.h"
#include "model.h"

namespace tcka {

struct CkaConfig {
  std::vector<std::string> layers1, layers2;  // empty: every submodule that runs
  std::string label1, label2;                 // model names for messages
  at::ScalarType gram_dtype = at::kFloat;
  at::ScalarType pair_dtype = at::kDouble;
};

struct StepOutcome {
  int64_t n = 0;
  bool skipped = false;
  std::vector<std::string> warnings;
};

struct CkaResult {
  std::vector<std::string> rows1, rows2;
  std::vector<std::optional<double>> cka;  // row-major, rows1.size() x rows2.size()
  std::vector<double> self1, self2;        // summed self-HSIC per row
  int64_t samples = 0, batches = 0, skipped = 0;
  std::vector<std::string> warnings;
};

class CkaEngine {
 public:
  // Resolves the layer names at once (unknown names and the like fail here).
  CkaEngine(std::shared_ptr<Model> model1, std::shared_ptr<Model> model2, CkaConfig config);

  // One step: model 1 on `inputs1`, model 2 on `inputs2` (or on `inputs1`
  // when `inputs2` is null). Batches with n < 4 are skipped. Either the whole
  // step is added to the sums or, on an error, nothing is.
  StepOutcome step(const std::vector<at::Tensor>& inputs1, const std::vector<at::Tensor>* inputs2);

  // Throws ERR_NO_DATA before the first accumulated batch.
  CkaResult result() const;

  int64_t steps() const { return steps_; }

 private:
  struct Side {
    std::shared_ptr<Model> model;
    LayerSelection selection;
    std::vector<Row> rows;  // fixed by the first accumulated batch
    std::string label;
  };

  GramBatch run_side(const Side& side, const std::vector<at::Tensor>& inputs, int64_t n, const std::string& batch,
                     std::vector<Row>* planned, std::vector<std::string>* warnings) const;

  Side sides_[2];
  CkaConfig config_;
  std::unique_ptr<HsicAccumulator> sums_;
  int64_t steps_ = 0, batches_ = 0, samples_ = 0, skipped_ = 0;
};

}  // namespace tcka
