// Which layer outputs a run records, and under which row names.
//
// A user names a module ("layer1.0.relu"), meaning every call of it in call
// order (rows "layer1.0.relu", "layer1.0.relu#2", ...), or one call of it
// ("layer1.0.relu#2"). How many times a module runs is only known after a
// forward pass, so a selection is first *planned* from the calls seen in the
// first batch and then checked against every later batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "taps.h"

namespace tcka {

struct SelectionEntry {
  int64_t layer = -1;  // index into the model's layers
  int64_t call = 0;    // 0: every call; k >= 1: only the k-th call
};

struct LayerSelection {
  std::vector<SelectionEntry> entries;
  bool all_layers = false;  // chosen by default, not by the user
};

struct Row {
  int64_t layer;
  int64_t call;  // 1-based
  std::string name;
};

// The feature name of a call: "name" for the first, "name#k" after.
std::string row_name(const std::string& layer, int64_t call);

// Parses and checks names against the model's layers (see Model::select).
LayerSelection resolve_layers(const std::vector<LayerInfo>& layers, const std::vector<std::string>& names,
                              const std::string& model_label);

// Rows of a selection given how many times each layer ran in the first
// batch. Layers picked by default that did not run are left out and their
// indices listed in `dropped`; layers the user named that did not run are an
// error.
std::vector<Row> plan_rows(const LayerSelection& selection, const std::vector<LayerInfo>& layers,
                           const std::vector<int64_t>& calls, const std::string& model_label,
                           const std::string& batch_label, std::vector<int64_t>* dropped);

// Up to `count` layer names closest to `name` (edit distance on the dotted path).
std::vector<std::string> closest_names(const std::vector<LayerInfo>& layers, const std::string& name, size_t count = 3);

}  // namespace tcka
