#include "model_file/tensors.h"

#include <torch/csrc/jit/api/module.h>

#include <set>

#include "model_file.h"
#include "model_file/classify.h"

namespace tcka {
namespace model_file {

size_t storage_element_size(const std::string& storage_class) {
  static const std::pair<const char*, size_t> sizes[] = {
      {"FloatStorage", 4},    {"DoubleStorage", 8}, {"HalfStorage", 2},         {"BFloat16Storage", 2},
      {"LongStorage", 8},     {"IntStorage", 4},    {"ShortStorage", 2},        {"CharStorage", 1},
      {"ByteStorage", 1},     {"BoolStorage", 1},   {"ComplexFloatStorage", 8}, {"ComplexDoubleStorage", 16},
      {"QInt8Storage", 1},    {"QUInt8Storage", 1}, {"QInt32Storage", 4},       {"QUInt4x2Storage", 1},
      {"QUInt2x4Storage", 1}, {"UntypedStorage", 1}};
  for (const auto& [name, bytes] : sizes) {
    if (storage_class == name) return bytes;
  }
  return 0;
}

StorageRecords::StorageRecords(const std::vector<ZipEntry>& entries) {
  for (const auto& entry : entries) {
    const size_t slash = entry.name.find('/');
    if (slash != std::string::npos) by_record_[entry.name.substr(slash + 1)] = &entry;
  }
}

void StorageRecords::check(const ZipEntry& pickle, const std::vector<StorageRef>& storages,
                           const std::string& path) const {
  const std::string base = pickle.name.substr(pickle.name.rfind('/') + 1);
  if (base != "data.pkl" && base != "constants.pkl") return;
  const std::string folder = base.substr(0, base.size() - 4) + "/";
  for (const auto& storage : storages) {
    // "torch.FloatStorage": the class without its module.
    const size_t element = storage_element_size(storage.storage_class.substr(storage.storage_class.rfind('.') + 1));
    if (element == 0 || storage.numel < 0) continue;
    const uint64_t bytes = static_cast<uint64_t>(storage.numel) * element;
    auto found = by_record_.find(folder + storage.key);
    if (found == by_record_.end()) found = by_record_.find(".data/" + folder + storage.key);
    if (found == by_record_.end()) continue;  // libtorch reports a missing record itself
    const ZipEntry& record = *found->second;
    if (record.compressed < bytes && record.method == 0)
      short_storage_record(path, record.name, record.compressed, bytes);
  }
}

namespace {

// Whether a tensor's elements all lie inside its storage.
bool fits_storage(const at::Tensor& t, std::string* why) {
  if (!t.defined() || t.layout() != c10::kStrided || !t.has_storage()) return true;
  if (t.numel() == 0) return true;
  int64_t last = t.storage_offset();
  if (last < 0) {
    *why = "a negative storage offset";
    return false;
  }
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) < 0) {
      *why = "a negative stride";
      return false;
    }
    last += (t.size(d) - 1) * t.stride(d);
  }
  const uint64_t needed = (static_cast<uint64_t>(last) + 1) * t.element_size();
  const uint64_t held = t.storage().nbytes();
  if (needed > held) {
    *why = "shape " + c10::str(t.sizes()) + " needs " + std::to_string(needed) + " bytes but its data has " +
           std::to_string(held);
    return false;
  }
  if (t.storage().data() == nullptr) {
    *why = "shape " + c10::str(t.sizes()) + " needs " + std::to_string(needed) + " bytes but its record is empty";
    return false;
  }
  return true;
}

// Visits the tensors a module holds (each object once) and those its graphs
// hold as constants, naming each by where it was found.
class TensorChecker {
 public:
  explicit TensorChecker(std::string path) : path_(std::move(path)) {}

  void value(const c10::IValue& v, const std::string& where) {
    if (v.isTensor()) {
      tensor(v.toTensor(), where);
    } else if (v.isObject()) {
      const auto object = v.toObject();
      if (!seen_.insert(object.get()).second) return;
      const auto type = object->type();
      for (size_t i = 0; i < object->slots().size(); ++i) {
        const std::string name = i < type->numAttributes() ? type->getAttributeName(i) : std::to_string(i);
        value(object->getSlot(i), where.empty() ? name : where + "." + name);
      }
    } else if (v.isTuple()) {
      const auto& items = v.toTupleRef().elements();
      for (size_t i = 0; i < items.size(); ++i) value(items[i], where + "[" + std::to_string(i) + "]");
    } else if (v.isList()) {
      const auto list = v.toList();
      for (size_t i = 0; i < list.size(); ++i) value(list.get(i), where + "[" + std::to_string(i) + "]");
    } else if (v.isGenericDict()) {
      for (const auto& item : v.toGenericDict()) value(item.value(), where + "[...]");
    }
  }

  void block(torch::jit::Block* b, const std::string& where) {
    for (torch::jit::Node* node : b->nodes()) {
      if (node->kind() == c10::prim::Constant && node->hasAttribute(c10::attr::value) &&
          node->kindOf(c10::attr::value) == torch::jit::AttributeKind::t) {
        tensor(node->t(c10::attr::value), "a constant in " + where);
      }
      for (torch::jit::Block* inner : node->blocks()) block(inner, where);
    }
  }

 private:
  void tensor(const at::Tensor& t, const std::string& where) {
    std::string why;
    if (!fits_storage(t, &why)) tensor_outside_data(path_, where, why);
  }

  std::string path_;
  std::set<const void*> seen_;
};

}  // namespace
}  // namespace model_file

void check_module_tensors(const torch::jit::Module& module, const std::string& path) {
  model_file::TensorChecker checker(path);
  checker.value(module._ivalue(), "");
  std::set<std::string> graphs;
  for (const auto& child : module.modules()) {
    for (const auto& method : child.get_methods()) {
      const std::string name =
          child.type()->name() ? child.type()->name()->qualifiedName() + "." + method.name() : method.name();
      if (!graphs.insert(name).second) continue;
      checker.block(method.graph()->block(), name);
    }
  }
}

}  // namespace tcka
