#include "model.h"

#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <map>

#include "device.h"
#include "errors.h"
#include "model_file.h"

namespace tcka {
namespace {

// Records full outputs for Model::extract.
class FeatureRecorder : public TapReceiver {
 public:
  explicit FeatureRecorder(size_t layer_count) : wanted_(layer_count, false), calls_(layer_count, 0) {}

  void want(int64_t layer) { wanted_[static_cast<size_t>(layer)] = true; }
  const std::vector<int64_t>& calls() const { return calls_; }
  const std::map<std::pair<int64_t, int64_t>, at::Tensor>& features() const { return features_; }
  const std::string& error() const { return error_; }

  void on_tap(int64_t layer, const c10::IValue& output) noexcept override {
    if (layer < 0 || static_cast<size_t>(layer) >= wanted_.size()) return;
    const int64_t call = ++calls_[static_cast<size_t>(layer)];
    if (!wanted_[static_cast<size_t>(layer)] || !error_.empty()) return;
    try {
      at::Tensor tensor = first_tensor(output);
      if (!tensor.defined()) {
        error_ = "holds no tensor";
        error_layer_ = layer;
        return;
      }
      // A copy: later in-place ops in the model must not change what we saw.
      features_[{layer, call}] = tensor.detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true).contiguous();
    } catch (const std::exception& e) {
      error_ = e.what();
      error_layer_ = layer;
    }
  }

  int64_t error_layer() const { return error_layer_; }

 private:
  std::vector<bool> wanted_;
  std::vector<int64_t> calls_;
  std::map<std::pair<int64_t, int64_t>, at::Tensor> features_;
  std::string error_;
  int64_t error_layer_ = -1;
};

}  // namespace

std::string model_base_name(const std::string& path) {
  std::string name = path;
  const size_t slash = name.find_last_of("/\\");
  if (slash != std::string::npos) name = name.substr(slash + 1);
  for (const char* ext : {".pt", ".pth", ".ptl", ".zip"}) {
    const std::string e(ext);
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0) {
      return name.substr(0, name.size() - e.size());
    }
  }
  return name;
}

Model::Model(std::string path, c10::Device device, std::shared_ptr<torch::jit::Module> module,
             std::vector<LayerInfo> layers)
    : path_(std::move(path)),
      label_("'" + model_base_name(path_) + "'"),
      device_(device),
      layers_(std::move(layers)),
      module_(std::move(module)) {
  for (const auto& tensor : module_->parameters()) parameter_bytes_ += tensor.numel() * tensor.element_size();
  for (const auto& tensor : module_->buffers()) parameter_bytes_ += tensor.numel() * tensor.element_size();
}

std::shared_ptr<Model> Model::load(const std::string& path, const std::string& device_spec, bool instrument) {
  const c10::Device device = parse_device(device_spec);
  const ModelFileInfo info = inspect_model_file(path);
  auto module = std::make_shared<torch::jit::Module>();
  try {
    *module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    throw_load_error(path, info, e.what_without_backtrace());
  } catch (const std::exception& e) {  // the TorchScript compiler's ErrorReport, among others
    throw_load_error(path, info, e.what());
  }
  check_module_tensors(*module, path);
  module->eval();
  std::vector<LayerInfo> layers = instrument ? install_taps(*module) : std::vector<LayerInfo>();
  return std::shared_ptr<Model>(new Model(path, device, std::move(module), std::move(layers)));
}

std::shared_ptr<torch::jit::Module> Model::module_or_throw() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!module_) throw CKAError(codes::kDisposed, "Model '" + path_ + "' has been disposed");
  return module_;
}

void Model::dispose() {
  std::lock_guard<std::mutex> lock(mutex_);
  module_.reset();  // work already running keeps its own reference
}

bool Model::disposed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !module_;
}

LayerSelection Model::select(const std::vector<std::string>& names) const {
  return resolve_layers(layers_, names, label_);
}

void Model::forward(const std::vector<at::Tensor>& inputs, TapReceiver& receiver, const std::string& what,
                    const std::atomic<bool>* cancel) const {
  std::shared_ptr<torch::jit::Module> module = module_or_throw();
  // No grad, but not inference mode: tensors keep their version counters, so
  // the Gram of a tensor reduced earlier in the pass can be reused unless an
  // in-place op changed it since.
  at::NoGradGuard no_grad;
  std::vector<c10::IValue> args;
  args.reserve(inputs.size());
  for (const auto& input : inputs) args.emplace_back(input.to(device_));
  TapScope scope(&receiver, cancel);
  try {
    run(*module, std::move(args), what, cancel);
  } catch (const CKAError&) {
    if (!scope.over_limit()) throw;
    throw CKAError(codes::kLayerCallCount,
                   "Model " + label_ + " was stopped on " + what + " after " + std::to_string(kMaxTapCalls) +
                       " calls of its submodules in one forward pass: does it loop without end?");
  }
}

void Model::forward_only(const std::vector<at::Tensor>& inputs, const std::string& what) const {
  std::shared_ptr<torch::jit::Module> module = module_or_throw();
  c10::InferenceMode inference;
  std::vector<c10::IValue> args;
  args.reserve(inputs.size());
  for (const auto& input : inputs) args.emplace_back(input.to(device_));
  TapScope scope(nullptr);
  c10::IValue out = run(*module, std::move(args), what);
  if (device_.is_cuda()) {
    at::Tensor first = first_tensor(out);
    if (first.defined()) first.sum().item();  // waits for the device
  }
}

namespace {

// NumPy-style names, as the JS side uses.
std::string dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(type);
  }
}

// libtorch's ways of saying a forward pass touched a device other than the
// one its inputs are on: code written or traced for a GPU keeps its device.
bool device_trouble(const std::string& message) {
  static const char* signs[] = {"Expected all tensors to be on the same device",
                                "Cannot initialize CUDA without ATen_cuda library",
                                "Torch not compiled with CUDA enabled",
                                "Found no NVIDIA driver",
                                "no CUDA-capable device is detected",
                                "with arguments from the 'CUDA' backend",
                                "is on CPU, different from other tensors on cuda",
                                "Expected object of device type"};
  for (const char* sign : signs) {
    if (message.find(sign) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

c10::IValue Model::run(torch::jit::Module& module, std::vector<c10::IValue> args, const std::string& what,
                       const std::atomic<bool>* cancel) const {
  // "float32 [6, 10]", for messages: most failures are a batch of the wrong shape or dtype.
  std::string given;
  for (const auto& arg : args) {
    if (!arg.isTensor()) continue;
    const at::Tensor& t = arg.toTensor();
    given += (given.empty() ? "" : ", ") + dtype_name(t.scalar_type()) + " " + c10::str(t.sizes());
  }
  auto failed = [&](const std::string& raw) -> CKAError {
    if (cancel != nullptr && cancel->load()) {
      return CKAError(codes::kAborted, "compare() was aborted during " + what + "; nothing from it was added");
    }
    const std::string message = interpreter_error(raw);
    if (device_trouble(raw)) {
      const std::string first = message.substr(0, message.find('\n'));
      return CKAError(codes::kDeviceMismatch,
                      "Model " + label_ + " was loaded on " + device_.str() +
                          ", but its forward uses another device on " + what +
                          " (code written or traced for a GPU keeps that device inside the model). Load it on "
                          "the device it was made for, or export it again on " +
                          device_.str() + ". libtorch said: " + first);
    }
    std::string hint;
    if (raw.find("dtype") != std::string::npos || raw.find("scalar type") != std::string::npos) {
      hint = " (the batch's dtype may not be what the model takes)";
    } else if (raw.find("shape") != std::string::npos || raw.find("size") != std::string::npos ||
               raw.find("Expected") != std::string::npos || raw.find("dimension") != std::string::npos) {
      hint = " (the batch's shape may not be what the model takes)";
    }
    return CKAError(codes::kForwardFailed, "Model " + label_ + " failed on " + what + ", given " +
                                               (given.empty() ? std::string("no tensor") : given) + hint + ": " +
                                               message);
  };
  try {
    return module.forward(std::move(args));
  } catch (const c10::Error& e) {
    throw failed(e.what_without_backtrace());
  } catch (const CKAError&) {
    throw;
  } catch (const std::exception& e) {
    throw failed(e.what());
  }
}

std::vector<std::pair<std::string, at::Tensor>> Model::extract(const std::vector<at::Tensor>& inputs,
                                                               const std::vector<std::string>& names) const {
  const LayerSelection selection = select(names);
  FeatureRecorder recorder(layers_.size());
  for (const auto& entry : selection.entries) recorder.want(entry.layer);
  forward(inputs, recorder, "the batch passed to extract()");
  if (!recorder.error().empty()) {
    const auto& info = layers_[static_cast<size_t>(recorder.error_layer())];
    throw CKAError(codes::kNoTensorOutput,
                   "Output of layer '" + info.name + "' (" + info.type + "): " + recorder.error());
  }
  std::vector<Row> rows = plan_rows(selection, layers_, recorder.calls(), label_, "extract()", nullptr);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& row : rows) out.emplace_back(row.name, recorder.features().at({row.layer, row.call}));
  return out;
}

}  // namespace tcka
