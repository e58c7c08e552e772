#include "layer_select.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "errors.h"

namespace tcka {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
  return out;
}

// "relu#2" -> ("relu", 2); "relu" -> ("relu", 0). Returns call -1 when the
// suffix is not a positive integer.
std::pair<std::string, int64_t> split_call(const std::string& name) {
  const size_t hash = name.rfind('#');
  if (hash == std::string::npos) return {name, 0};
  const std::string digits = name.substr(hash + 1);
  if (digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
    return {name, -1};
  }
  const int64_t call = std::stoll(digits);
  return {name.substr(0, hash), call >= 1 ? call : -1};
}

}  // namespace

std::string row_name(const std::string& layer, int64_t call) {
  return call <= 1 ? layer : layer + "#" + std::to_string(call);
}

std::vector<std::string> closest_names(const std::vector<LayerInfo>& layers, const std::string& name, size_t count) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& layer : layers) scored.emplace_back(edit_distance(name, layer.name), layer.name);
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < count; ++i) out.push_back(scored[i].second);
  return out;
}

LayerSelection resolve_layers(const std::vector<LayerInfo>& layers, const std::vector<std::string>& names,
                              const std::string& model_label) {
  LayerSelection selection;
  if (names.empty()) {
    selection.all_layers = true;
    for (size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].callable && layers[i].has_tensor) selection.entries.push_back({static_cast<int64_t>(i), 0});
    }
    if (selection.entries.empty()) {
      throw CKAError(codes::kNoLayers,
                     "Model " + model_label + " has no submodule whose output holds a tensor" +
                         (layers.empty() ? " (it has no submodules at all: torch.jit.freeze and "
                                           "optimize_for_inference inline them; save the model before freezing)"
                                         : ""));
    }
    return selection;
  }

  std::unordered_map<std::string, int64_t> index;
  for (size_t i = 0; i < layers.size(); ++i) index.emplace(layers[i].name, static_cast<int64_t>(i));
  std::set<std::string> given;
  for (const auto& requested : names) {
    if (!given.insert(requested).second) {
      throw CKAError(codes::kDuplicateLayer, "Layer '" + requested + "' is listed twice for model " + model_label,
                     ErrorKind::RangeError);
    }
    auto [base, call] = split_call(requested);
    auto found = index.find(base);
    if (found == index.end() || call < 0) {
      const auto near = closest_names(layers, base);
      throw CKAError(codes::kUnknownLayer,
                     "Model " + model_label + " has no layer '" + requested + "'" +
                         (near.empty() ? "" : "; closest names: " + quoted_list(near)) +
                         ". List them with model.layers().",
                     ErrorKind::RangeError);
    }
    const LayerInfo& info = layers[static_cast<size_t>(found->second)];
    if (!info.callable) {
      throw CKAError(codes::kLayerNotCallable,
                     "Layer '" + info.name + "' (" + info.type + ") of model " + model_label +
                         " has no forward method and never runs; choose the "
                         "modules inside it instead",
                     ErrorKind::RangeError);
    }
    if (!info.has_tensor) {
      throw CKAError(codes::kNoTensorOutput,
                     "Layer '" + info.name + "' (" + info.type + ") of model " + model_label + " returns '" +
                         info.output_type + "', which holds no tensor to compare",
                     ErrorKind::RangeError);
    }
    selection.entries.push_back({found->second, call});
  }
  // "relu" already covers "relu#2": listing both would give the same row twice.
  for (const auto& a : selection.entries) {
    for (const auto& b : selection.entries) {
      if (a.layer == b.layer && a.call == 0 && b.call != 0) {
        const auto& name = layers[static_cast<size_t>(a.layer)].name;
        throw CKAError(codes::kDuplicateLayer,
                       "Layer '" + row_name(name, b.call) + "' is already covered by '" + name +
                           "' (every call) for model " + model_label,
                       ErrorKind::RangeError);
      }
    }
  }
  return selection;
}

std::vector<Row> plan_rows(const LayerSelection& selection, const std::vector<LayerInfo>& layers,
                           const std::vector<int64_t>& calls, const std::string& model_label,
                           const std::string& batch_label, std::vector<int64_t>* dropped) {
  std::vector<Row> rows;
  for (const auto& entry : selection.entries) {
    const std::string& name = layers[static_cast<size_t>(entry.layer)].name;
    const int64_t ran = calls[static_cast<size_t>(entry.layer)];
    if (entry.call == 0) {
      if (ran == 0) {
        if (selection.all_layers) {
          if (dropped != nullptr) dropped->push_back(entry.layer);
          continue;
        }
        throw CKAError(codes::kLayerNotRun,
                       "Layer '" + name + "' of model " + model_label + " did not run during " + batch_label);
      }
      for (int64_t k = 1; k <= ran; ++k) rows.push_back({entry.layer, k, row_name(name, k)});
    } else {
      if (ran < entry.call) {
        throw CKAError(codes::kLayerNotRun, "Layer '" + row_name(name, entry.call) + "' of model " + model_label +
                                                " did not run during " + batch_label + ": '" + name + "' ran " +
                                                std::to_string(ran) + " time(s)");
      }
      rows.push_back({entry.layer, entry.call, row_name(name, entry.call)});
    }
  }
  if (rows.empty()) {
    throw CKAError(codes::kNoLayers, "No submodule of model " + model_label +
                                         " gave an output that can be compared during " + batch_label +
                                         " (none ran, or none had the batch as first dimension; calls inlined by "
                                         "torch.jit.freeze never run)");
  }
  return rows;
}

}  // namespace tcka
