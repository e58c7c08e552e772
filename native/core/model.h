// A TorchScript model loaded onto a device, in eval mode, with output taps
// installed on every submodule (see taps.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layer_select.h"
#include "taps.h"
#include "torch_fwd.h"

namespace tcka {

class Model {
 public:
  // Throws CKAError: ERR_MODEL_NOT_FOUND, ERR_MODEL_LOAD, ERR_INVALID_DEVICE,
  // ERR_DEVICE_UNAVAILABLE.
  // `instrument` false loads the model as it is, without taps: the
  // benchmark's forward-pass floor.
  static std::shared_ptr<Model> load(const std::string& path, const std::string& device, bool instrument = true);

  const std::string& path() const { return path_; }
  const c10::Device& device() const { return device_; }
  const std::vector<LayerInfo>& layers() const { return layers_; }
  // Bytes held by parameters and buffers (reported to V8 by the addon).
  int64_t parameter_bytes() const { return parameter_bytes_; }

  // Resolves user layer names ("conv1", "relu#2"); empty = every module that
  // can run. Throws ERR_UNKNOWN_LAYER (with the closest names),
  // ERR_DUPLICATE_LAYER, ERR_NO_TENSOR_OUTPUT, ERR_LAYER_NOT_CALLABLE.
  LayerSelection select(const std::vector<std::string>& names) const;

  // Runs forward on `inputs` (moved to the model's device) with `receiver`
  // installed. `what` names the work for error messages ("batch 3").
  // Throws ERR_DISPOSED, ERR_FORWARD_FAILED, ERR_DEVICE_MISMATCH, and
  // ABORT_ERR when `cancel` turns true during the pass.
  void forward(const std::vector<at::Tensor>& inputs, TapReceiver& receiver, const std::string& what,
               const std::atomic<bool>* cancel = nullptr) const;

  // Runs forward alone, in inference mode, with no receiver installed: what a
  // plain `with torch.inference_mode(): model(x)` costs. Waits for the device.
  void forward_only(const std::vector<at::Tensor>& inputs, const std::string& what) const;

  // Features of the selected layers for one batch, on the CPU, in selection
  // order with repeated calls expanded (name, name#2, ...).
  std::vector<std::pair<std::string, at::Tensor>> extract(const std::vector<at::Tensor>& inputs,
                                                          const std::vector<std::string>& names) const;

  void dispose();
  bool disposed() const;

 private:
  Model(std::string path, c10::Device device, std::shared_ptr<torch::jit::Module> module,
        std::vector<LayerInfo> layers);
  std::shared_ptr<torch::jit::Module> module_or_throw() const;
  // forward() with libtorch's errors turned into ERR_FORWARD_FAILED.
  c10::IValue run(torch::jit::Module& module, std::vector<c10::IValue> args, const std::string& what,
                  const std::atomic<bool>* cancel = nullptr) const;

  std::string path_;
  std::string label_;  // 'base name', for messages
  c10::Device device_;
  std::vector<LayerInfo> layers_;
  int64_t parameter_bytes_ = 0;
  mutable std::mutex mutex_;
  std::shared_ptr<torch::jit::Module> module_;  // null once disposed
};

// The file name without folders and without a .pt/.pth/.ptl extension.
std::string model_base_name(const std::string& path);

}  // namespace tcka
