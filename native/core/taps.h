// Output taps: a custom TorchScript operator, torch_cka::tap(Any x, int id),
// inserted before the return of every submodule's forward graph(s). Each
// module instance carries its own id in an attribute, so instances that share
// a class (and therefore a graph) are told apart. At run time the operator
// hands the output to the TapReceiver installed on the calling thread, if any.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <string>
#include <vector>

#include "torch_fwd.h"

namespace tcka {

class TapReceiver {
 public:
  virtual ~TapReceiver() = default;
  // Called once per call of a tapped module, in call order. Must not throw:
  // receivers record their own errors and report them after forward.
  virtual void on_tap(int64_t layer_index, const c10::IValue& output) noexcept = 0;
};

// Calls of tapped submodules allowed in one forward pass: far beyond real
// models (an RNN unrolled over 1,000 steps makes thousands), it
// stops a model that loops without end before its recorded outputs fill
// memory.
inline constexpr int64_t kMaxTapCalls = 100000;

// Installs `receiver` for the current thread for the scope's lifetime. When
// `cancel` is given and becomes true, the next tap throws, ending the pass.
class TapScope {
 public:
  explicit TapScope(TapReceiver* receiver, const std::atomic<bool>* cancel = nullptr);
  ~TapScope();
  // Whether the pass made more than kMaxTapCalls tapped calls (and was stopped).
  bool over_limit() const;
  TapScope(const TapScope&) = delete;
  TapScope& operator=(const TapScope&) = delete;

 private:
  TapReceiver* previous_;
  const std::atomic<bool>* previous_cancel_;
  int64_t previous_calls_;
};

struct LayerInfo {
  std::string name;             // dotted path, e.g. "layer1.0.conv1"
  std::string type;             // class name, e.g. "Conv2d"
  bool callable = false;        // has a forward method (ModuleList/ModuleDict do not)
  bool has_tensor = false;      // its output type can hold a tensor
  std::string output_type;      // TorchScript type of forward's output, e.g. "Tensor"
  int64_t forward_methods = 0;  // forward, forward1, ...: calls per pass of a traced module (a hint)
};

// Registers the operator (once per process) and instruments every non-root
// submodule of `module`. Returns the submodules in definition order; index i
// in that list is the id the tap reports.
std::vector<LayerInfo> install_taps(torch::jit::Module& module);

// The first tensor in a value: the value itself, or the first tensor found
// depth-first in a tuple, list or dict (values in insertion order). Undefined
// tensor if there is none.
at::Tensor first_tensor(const c10::IValue& value);

}  // namespace tcka
