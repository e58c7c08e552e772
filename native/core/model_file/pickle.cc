#include "model_file/pickle.h"

#include <iterator>
#include <set>

#include "model_file/file.h"

namespace tcka::model_file {
namespace {

// The walk over one pickle: libtorch's unpickler's stack, marks and memo,
// holding just enough of each value to read persistent ids (strings, ints,
// globals, tuples). Each opcode group has its method; a method that finds a
// problem records it in problem_, which ends the walk.
class PickleWalker {
 public:
  PickleWalker(const std::string& pkl, std::vector<StorageRef>* storages)
      : pkl_(pkl), end_(pkl.size()), storages_(storages) {}

  std::string walk() {
    while (at_ < end_ && problem_.empty()) {
      const size_t op_at = at_;
      const auto op = static_cast<Opcode>(pkl_[at_++]);
      switch (op) {
        case Opcode::kStop: return stop(op_at);
        case Opcode::kProto:
        case Opcode::kFrame: framing(op); break;
        case Opcode::kNone:
        case Opcode::kNewTrue:
        case Opcode::kNewFalse:
        case Opcode::kBinInt1:
        case Opcode::kBinInt2:
        case Opcode::kBinInt:
        case Opcode::kBinFloat:
        case Opcode::kLong1:
        case Opcode::kLong4: scalar(op); break;
        case Opcode::kShortBinString:
        case Opcode::kShortBinBytes:
        case Opcode::kShortBinUnicode:
        case Opcode::kBinString:
        case Opcode::kBinUnicode:
        case Opcode::kBinBytes:
        case Opcode::kBinUnicode8:
        case Opcode::kBinBytes8:
        case Opcode::kByteArray8: length_prefixed(op); break;
        case Opcode::kGlobal: global(); break;
        case Opcode::kEmptyTuple:
        case Opcode::kEmptyList:
        case Opcode::kEmptyDict:
        case Opcode::kMark:
        case Opcode::kTuple:
        case Opcode::kList:
        case Opcode::kDict:
        case Opcode::kTuple1:
        case Opcode::kTuple2:
        case Opcode::kTuple3:
        case Opcode::kAppend:
        case Opcode::kAppends:
        case Opcode::kSetItem:
        case Opcode::kSetItems: container(op, op_at); break;
        case Opcode::kReduce:
        case Opcode::kBuild:
        case Opcode::kNewObj:
        case Opcode::kBinPersId: object(op, op_at); break;
        case Opcode::kBinPut:
        case Opcode::kLongBinPut:
        case Opcode::kBinGet:
        case Opcode::kLongBinGet: memo(op, op_at); break;
        case Opcode::kPop:
        case Opcode::kPopMark:
        case Opcode::kDup: stack(op, op_at); break;
        default: return {};  // not an opcode libtorch writes: libtorch reports it
      }
    }
    return problem_.empty() ? "it ends without a STOP opcode" : problem_;
  }

 private:
  struct Value {
    enum class Kind { kOther, kString, kInt, kGlobal, kTuple };
    Kind kind = Kind::kOther;
    std::string text;
    int64_t number = 0;
    std::vector<Value> items;
  };

  // STOP: the pickle's one value is complete.
  std::string stop(size_t op_at) const {
    if (stack_.size() != 1 || !marks_.empty()) {
      return "the pickle stops" + where(op_at) + " with " + std::to_string(stack_.size()) +
             " values on its stack instead of 1";
    }
    return {};
  }

  // PROTO, FRAME: a fixed-size argument and nothing on the stack.
  void framing(Opcode op) { need_bytes(op == Opcode::kProto ? 1 : 8, "an argument"); }

  // NONE, NEWTRUE, NEWFALSE, the BININTs, BINFLOAT, LONG1, LONG4.
  void scalar(Opcode op) {
    switch (op) {
      case Opcode::kBinInt1:
        if (need_bytes(1, "an argument")) push(integer(static_cast<unsigned char>(pkl_[at_ - 1])));
        break;
      case Opcode::kBinInt2:
        if (need_bytes(2, "an argument")) push(integer(static_cast<int64_t>(le(pkl_, at_ - 2, 2))));
        break;
      case Opcode::kBinInt:
        if (need_bytes(4, "an argument"))
          push(integer(static_cast<int32_t>(static_cast<uint32_t>(le(pkl_, at_ - 4, 4)))));
        break;
      case Opcode::kBinFloat:
        if (need_bytes(8, "an argument")) push(Value());
        break;
      case Opcode::kLong1:
      case Opcode::kLong4: {  // a length, then that many bytes of two's complement
        const size_t width = op == Opcode::kLong1 ? 1 : 4;
        if (!need_bytes(width, "a length")) break;
        const uint64_t bytes = le(pkl_, at_ - width, width);
        if (!need_bytes(bytes, "a value")) break;
        const bool small = op == Opcode::kLong1 && bytes <= 8;
        push(small ? integer(static_cast<int64_t>(le(pkl_, at_ - bytes, bytes))) : Value());
        break;
      }
      default: push(Value());  // NONE NEWTRUE NEWFALSE
    }
  }

  // The length-prefixed strings, bytes and bytearrays.
  void length_prefixed(Opcode op) {
    size_t width = 4;  // BINSTRING BINUNICODE BINBYTES
    if (op == Opcode::kShortBinString || op == Opcode::kShortBinBytes || op == Opcode::kShortBinUnicode) width = 1;
    if (op == Opcode::kBinUnicode8 || op == Opcode::kBinBytes8 || op == Opcode::kByteArray8) width = 8;
    if (!need_bytes(width, "a length")) return;
    const uint64_t bytes = le(pkl_, at_ - width, width);
    if (need_bytes(bytes, "a value")) push(text(static_cast<size_t>(bytes)));
  }

  // GLOBAL module\nname\n
  void global() {
    Value v;
    v.kind = Value::Kind::kGlobal;
    std::string module, name;
    if (line(&module) && line(&name)) {
      v.text = module + "." + name;
      push(std::move(v));
    }
  }

  // Tuples, lists and dicts: made empty, from a MARK or from the top values,
  // and filled by APPEND(S) and SETITEM(S).
  void container(Opcode op, size_t op_at) {
    switch (op) {
      case Opcode::kEmptyTuple: push(tuple({})); break;
      case Opcode::kEmptyList:
      case Opcode::kEmptyDict: push(Value()); break;
      case Opcode::kMark: marks_.push_back(stack_.size()); break;
      case Opcode::kTuple: {
        std::vector<Value> items;
        if (pop_to_mark(op_at, &items)) push(tuple(std::move(items)));
        break;
      }
      case Opcode::kList:
      case Opcode::kDict:
        if (pop_to_mark(op_at, nullptr)) push(Value());
        break;
      case Opcode::kTuple1:
      case Opcode::kTuple2:
      case Opcode::kTuple3: {
        const size_t count = static_cast<size_t>(op) - static_cast<size_t>(Opcode::kTuple1) + 1;
        if (!need_items(count, op_at)) break;
        std::vector<Value> items(std::make_move_iterator(stack_.end() - static_cast<long>(count)),
                                 std::make_move_iterator(stack_.end()));
        stack_.resize(stack_.size() - count);
        push(tuple(std::move(items)));
        break;
      }
      case Opcode::kAppend: two_into_one(op_at); break;
      case Opcode::kSetItem:
        if (need_items(3, op_at)) stack_.resize(stack_.size() - 2);
        break;
      default: {  // APPENDS SETITEMS: a container below the mark
        std::vector<Value> items;
        if (!pop_to_mark(op_at, &items)) break;
        if (op == Opcode::kSetItems && items.size() % 2 != 0) {
          problem_ = "SETITEMS" + where(op_at) + " has an odd number of values";
          break;
        }
        if (above_mark() < 1) problem_ = "an opcode" + where(op_at) + " has no container to add to";
        break;
      }
    }
  }

  // REDUCE, BUILD, NEWOBJ make objects; BINPERSID names a storage (a
  // tensor's data, in a record of its own).
  void object(Opcode op, size_t op_at) {
    if (op != Opcode::kBinPersId) {
      two_into_one(op_at);
      return;
    }
    if (!need_items(1, op_at)) return;
    const Value id = std::move(stack_.back());
    stack_.back() = Value();
    // ('storage', torch.FloatStorage, key, location, numel)
    if (id.kind == Value::Kind::kTuple && id.items.size() >= 5 && id.items[0].kind == Value::Kind::kString &&
        id.items[0].text == "storage" && id.items[1].kind == Value::Kind::kGlobal &&
        id.items[2].kind == Value::Kind::kString && id.items[4].kind == Value::Kind::kInt) {
      storages_->push_back({id.items[2].text, id.items[1].text, id.items[4].number});
    }
  }

  // BINPUT, LONG_BINPUT, BINGET, LONG_BINGET.
  void memo(Opcode op, size_t op_at) {
    const bool put = op == Opcode::kBinPut || op == Opcode::kLongBinPut;
    const size_t width = op == Opcode::kBinPut || op == Opcode::kBinGet ? 1 : 4;
    if (!need_bytes(width, "an argument")) return;
    const uint64_t index = le(pkl_, at_ - width, width);
    if (put) {
      if (index > end_) {
        problem_ = "a memo index of " + std::to_string(index) + where(op_at) + " is beyond any the record can hold (" +
                   std::to_string(end_) + " bytes)";
        return;
      }
      if (!need_items(1, op_at)) return;
      memo_.insert(index);
    } else {
      if (memo_.count(index) == 0) {
        problem_ = "memo entry " + std::to_string(index) + where(op_at) + " is read before it is written";
        return;
      }
      push(Value());
    }
  }

  // POP, POP_MARK, DUP.
  void stack(Opcode op, size_t op_at) {
    if (op == Opcode::kPopMark) {
      pop_to_mark(op_at, nullptr);
    } else if (need_items(1, op_at)) {
      if (op == Opcode::kPop) {
        stack_.pop_back();
      } else {
        push(stack_.back());
      }
    }
  }

  // APPEND, REDUCE, BUILD, NEWOBJ: two values in, one out.
  void two_into_one(size_t op_at) {
    if (need_items(2, op_at)) {
      stack_.pop_back();
      stack_.back() = Value();
    }
  }

  static std::string where(size_t offset) { return " at offset " + std::to_string(offset); }

  // Steps over an argument of `bytes` bytes, if the record holds them.
  bool need_bytes(uint64_t bytes, const char* what) {
    if (!problem_.empty()) return false;
    if (bytes > end_ - at_) {
      problem_ = std::string(what) + " of " + std::to_string(bytes) + " bytes" + where(at_) +
                 " runs past the end of the record (" + std::to_string(end_) + " bytes)";
      return false;
    }
    at_ += static_cast<size_t>(bytes);
    return true;
  }

  // Steps over a text argument that ends with a newline.
  bool line(std::string* out) {
    const size_t newline = pkl_.find('\n', at_);
    if (newline == std::string::npos) {
      problem_ = "a text argument" + where(at_) + " never ends";
      return false;
    }
    if (out != nullptr) *out = pkl_.substr(at_, newline - at_);
    at_ = newline + 1;
    return true;
  }

  size_t above_mark() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }

  bool need_items(size_t count, size_t op_at) {
    if (above_mark() >= count) return true;
    problem_ = "an opcode" + where(op_at) + " needs " + std::to_string(count) + " value(s) but the stack has " +
               std::to_string(above_mark());
    return false;
  }

  bool pop_to_mark(size_t op_at, std::vector<Value>* out) {
    if (marks_.empty()) {
      problem_ = "an opcode" + where(op_at) + " needs a MARK but there is none";
      return false;
    }
    const size_t mark = marks_.back();
    marks_.pop_back();
    if (out != nullptr)
      out->assign(std::make_move_iterator(stack_.begin() + mark), std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return true;
  }

  void push(Value v) { stack_.push_back(std::move(v)); }

  // The string argument just stepped over.
  Value text(size_t bytes) const {
    Value v;
    v.kind = Value::Kind::kString;
    v.text = pkl_.substr(at_ - bytes, bytes);
    return v;
  }

  static Value integer(int64_t number) {
    Value v;
    v.kind = Value::Kind::kInt;
    v.number = number;
    return v;
  }

  static Value tuple(std::vector<Value> items) {
    Value v;
    v.kind = Value::Kind::kTuple;
    v.items = std::move(items);
    return v;
  }

  const std::string& pkl_;
  const size_t end_;
  std::vector<StorageRef>* storages_;
  size_t at_ = 0;
  std::string problem_;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;  // stack sizes at each open MARK
  std::set<uint64_t> memo_;    // the memo indexes written so far
};

}  // namespace

std::string check_pickle(const std::string& pkl, std::vector<StorageRef>* storages) {
  return PickleWalker(pkl, storages).walk();
}

}  // namespace tcka::model_file
