#include "taps.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/runtime/custom_operator.h>

#include <mutex>
#include <regex>
#include <unordered_set>

namespace tcka {
namespace {

constexpr const char* kOpName = "torch_cka::tap";
constexpr const char* kIdAttribute = "_torch_cka_tap_id";

thread_local TapReceiver* current_receiver = nullptr;
thread_local const std::atomic<bool>* current_cancel = nullptr;
thread_local int64_t current_calls = 0;

void register_tap_operator() {
  static std::once_flag once;
  std::call_once(once, [] {
    // A JIT-only operator: the interpreter calls it directly. CONSERVATIVE
    // alias analysis marks it as having side effects, so no pass removes or
    // reorders it.
    static torch::jit::RegisterOperators registry({torch::jit::Operator(
        std::string(kOpName) + "(Any x, int id) -> ()",
        [](torch::jit::Stack& stack) {
          const int64_t id = stack.back().toInt();
          stack.pop_back();
          c10::IValue value = std::move(stack.back());
          stack.pop_back();
          // A cancelled pass stops at the next tapped module; the caller
          // sees its flag and reports the abort.
          if (current_cancel != nullptr && current_cancel->load(std::memory_order_relaxed)) {
            throw std::runtime_error("cancelled");
          }
          // A model that loops without end (or a damaged one) would record
          // outputs until memory runs out: stop it (see TapScope::over_limit).
          if (++current_calls > kMaxTapCalls) throw std::runtime_error("too many calls");
          if (id >= 0 && current_receiver != nullptr) current_receiver->on_tap(id, value);
        },
        c10::AliasAnalysisKind::CONSERVATIVE)});
  });
}

bool can_hold_tensor(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return true;
  if (auto tuple = type->cast<c10::TupleType>()) {
    for (const auto& element : tuple->elements()) {
      if (can_hold_tensor(element)) return true;
    }
    return false;
  }
  if (auto list = type->cast<c10::ListType>()) return can_hold_tensor(list->getElementType());
  if (auto optional = type->cast<c10::OptionalType>()) return can_hold_tensor(optional->getElementType());
  if (auto dict = type->cast<c10::DictType>()) return can_hold_tensor(dict->getValueType());
  return type->kind() == c10::TypeKind::AnyType;
}

bool is_forward_name(const std::string& name) {
  static const std::regex pattern("^forward[0-9]*$");
  return std::regex_match(name, pattern);
}

void insert_tap(torch::jit::Graph& graph) {
  torch::jit::Node* ret = graph.return_node();
  torch::jit::WithInsertPoint guard(ret);
  torch::jit::Value* self = graph.inputs().at(0);
  torch::jit::Value* id = graph.insertGetAttr(self, kIdAttribute);
  torch::jit::Value* output = graph.outputs().at(0);
  torch::jit::Node* tap = graph.create(c10::Symbol::fromQualString(kOpName), {output, id}, 0);
  graph.insertNode(tap);
}

}  // namespace

TapScope::TapScope(TapReceiver* receiver, const std::atomic<bool>* cancel)
    : previous_(current_receiver), previous_cancel_(current_cancel), previous_calls_(current_calls) {
  current_receiver = receiver;
  current_cancel = cancel;
  current_calls = 0;
}
TapScope::~TapScope() {
  current_receiver = previous_;
  current_cancel = previous_cancel_;
  current_calls = previous_calls_;
}
bool TapScope::over_limit() const { return current_calls > kMaxTapCalls; }

at::Tensor first_tensor(const c10::IValue& value) {
  if (value.isTensor()) return value.toTensor();
  if (value.isTuple()) {
    for (const auto& element : value.toTupleRef().elements()) {
      at::Tensor found = first_tensor(element);
      if (found.defined()) return found;
    }
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toListRef()) {
      at::Tensor found = first_tensor(element);
      if (found.defined()) return found;
    }
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {  // insertion order
      at::Tensor found = first_tensor(entry.value());
      if (found.defined()) return found;
    }
  } else if (value.isTensorList()) {
    auto list = value.toTensorList();
    if (list.size() > 0) return list.get(0);
  }
  return at::Tensor();
}

std::vector<LayerInfo> install_taps(torch::jit::Module& module) {
  register_tap_operator();
  std::vector<LayerInfo> layers;
  std::vector<c10::ClassTypePtr> classes;
  std::unordered_set<const c10::ClassType*> seen;

  int64_t index = 0;
  bool root = true;
  for (const auto& item : module.named_modules()) {
    if (root) {  // named_modules() starts with the root, named ""
      root = false;
      continue;
    }
    torch::jit::Module sub = item.value;
    c10::ClassTypePtr cls = sub.type();
    LayerInfo info;
    info.name = item.name;
    info.type = cls->name() ? cls->name()->name() : cls->str();
    for (torch::jit::Function* method : cls->methods()) info.forward_methods += is_forward_name(method->name()) ? 1 : 0;
    torch::jit::Function* forward = cls->findMethod("forward");
    if (torch::jit::GraphFunction* fn = forward ? torch::jit::tryToGraphFunction(*forward) : nullptr) {
      info.callable = true;
      c10::TypePtr out = fn->graph()->outputs().at(0)->type();
      info.output_type = out->annotation_str();
      info.has_tensor = can_hold_tensor(out);
    }
    // Every instance of a class gets the attribute, so graphs shared by the
    // class can read it whichever instance runs them.
    sub.register_attribute(kIdAttribute, c10::IntType::get(), c10::IValue(info.has_tensor ? index : -1));
    if (info.has_tensor && seen.insert(cls.get()).second) classes.push_back(cls);
    layers.push_back(std::move(info));
    ++index;
  }

  for (const auto& cls : classes) {
    for (torch::jit::Function* method : cls->methods()) {
      if (!is_forward_name(method->name())) continue;
      torch::jit::GraphFunction* fn = torch::jit::tryToGraphFunction(*method);
      if (fn == nullptr) continue;
      insert_tap(*fn->graph());
    }
  }
  return layers;
}

}  // namespace tcka
