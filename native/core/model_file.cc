#include "model_file.h"

#include <caffe2/serialize/crc_alt.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/versions.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "errors.h"

namespace tcka {
namespace {

constexpr const char* kExportHint =
    "torch-cka reads TorchScript, which holds a model's code as well as its weights: build the model in Python (load "
    "these weights into it if that is what the file holds) and export it with torch.jit.script(model).save('model.pt') "
    "or torch.jit.trace(model, example_input).save('model.pt')";

[[noreturn]] void fail(const char* code, const std::string& message) { throw CkaError(code, message); }

std::string in_quotes(const std::string& path) { return "'" + path + "'"; }

// A file opened for reads at offsets; every read is bounded by the size.
class File {
 public:
  File(const std::string& path) : path_(path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        fail(codes::kModelNotFound, "Model file " + in_quotes(path) + " does not exist");
      fail(codes::kModelUnreadable, "Model file " + in_quotes(path) + " cannot be read: " + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
      fail(codes::kModelUnreadable,
           "Model path " + in_quotes(path) + " is a folder; give the .pt file that torch.jit.save wrote");
    }
    if (!S_ISREG(st.st_mode)) {
      fail(codes::kModelUnreadable,
           "Model path " + in_quotes(path) + " is not a regular file (a device, pipe or socket); give a .pt file");
    }
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      fail(codes::kModelUnreadable, "Model file " + in_quotes(path) + " cannot be read: " + std::strerror(errno));
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  uint64_t size() const { return size_; }

  // Up to `count` bytes at `offset` (fewer at the end of the file).
  std::string read(uint64_t offset, uint64_t count) const {
    if (offset >= size_) return {};
    count = std::min(count, size_ - offset);
    std::string out(count, '\0');
    uint64_t done = 0;
    while (done < count) {
      const ssize_t got = ::pread(fd_, &out[done], count - done, static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        fail(codes::kModelUnreadable, "Model file " + in_quotes(path_) + " cannot be read: " + std::strerror(errno));
      }
      if (got == 0) break;  // the file shrank
      done += static_cast<uint64_t>(got);
    }
    out.resize(done);
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

uint64_t le(const std::string& bytes, size_t at, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i)
    value |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return value;
}

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }
bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The first bytes as hex and text, for "it starts with ..." messages.
std::string show_head(const std::string& head) {
  static const char* digits = "0123456789abcdef";
  std::string hex, text;
  for (size_t i = 0; i < std::min<size_t>(head.size(), 8); ++i) {
    const auto c = static_cast<unsigned char>(head[i]);
    if (i > 0) hex += ' ';
    hex += digits[c >> 4];
    hex += digits[c & 15];
    text += std::isprint(c) ? static_cast<char>(c) : '.';
  }
  return hex + " (\"" + text + "\")";
}

struct ZipEntry {
  std::string name;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t compressed = 0;
  uint64_t local_offset = 0;
};

struct Zip {
  std::vector<ZipEntry> entries;
  std::string problem;  // why the directory could not be read; empty if it was
};

// Reads the central directory (zip64 included). Never reads outside the file.
Zip read_zip_directory(const File& file) {
  Zip zip;
  const uint64_t size = file.size();
  const uint64_t tail_size = std::min<uint64_t>(size, 22 + 65535);
  const std::string tail = file.read(size - tail_size, tail_size);
  size_t eocd = std::string::npos;
  for (size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;) {
    if (tail.compare(i, 4, "PK\x05\x06") == 0 && i + 22 + le(tail, i + 20, 2) <= tail.size()) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) {
    zip.problem = "its zip directory (at the end of the file) is missing";
    return zip;
  }
  uint64_t count = le(tail, eocd + 10, 2);
  uint64_t dir_size = le(tail, eocd + 12, 4);
  uint64_t dir_offset = le(tail, eocd + 16, 4);
  if (count == 0xFFFF || dir_size == 0xFFFFFFFF || dir_offset == 0xFFFFFFFF) {
    const uint64_t locator_at = size - tail_size + eocd;
    const std::string locator = locator_at >= 20 ? file.read(locator_at - 20, 20) : std::string();
    if (locator.size() < 20 || locator.compare(0, 4, "PK\x06\x07") != 0) {
      zip.problem = "its zip64 directory locator is missing";
      return zip;
    }
    const std::string record = file.read(le(locator, 8, 8), 56);
    if (record.size() < 56 || record.compare(0, 4, "PK\x06\x06") != 0) {
      zip.problem = "its zip64 directory record is missing";
      return zip;
    }
    count = le(record, 32, 8);
    dir_size = le(record, 40, 8);
    dir_offset = le(record, 48, 8);
  }
  if (dir_offset > size || dir_size > size - dir_offset) {
    zip.problem = "its zip directory points past the end of the file";
    return zip;
  }
  if (dir_size > (256ULL << 20) || count > dir_size / 46) {
    zip.problem = "its zip directory is implausibly large (" + std::to_string(count) + " entries)";
    return zip;
  }
  const std::string dir = file.read(dir_offset, dir_size);
  size_t at = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (at + 46 > dir.size() || dir.compare(at, 4, "PK\x01\x02") != 0) {
      zip.problem = "its zip directory is damaged at entry " + std::to_string(i);
      return zip;
    }
    ZipEntry entry;
    entry.method = static_cast<uint16_t>(le(dir, at + 10, 2));
    entry.crc = static_cast<uint32_t>(le(dir, at + 16, 4));
    entry.compressed = le(dir, at + 20, 4);
    const uint64_t uncompressed = le(dir, at + 24, 4);
    const size_t name_len = le(dir, at + 28, 2), extra_len = le(dir, at + 30, 2), comment_len = le(dir, at + 32, 2);
    entry.local_offset = le(dir, at + 42, 4);
    if (at + 46 + name_len + extra_len + comment_len > dir.size()) {
      zip.problem = "its zip directory is damaged at entry " + std::to_string(i);
      return zip;
    }
    entry.name = dir.substr(at + 46, name_len);
    // zip64 extra field: the 0xFFFFFFFF fields, in order, as 8-byte values.
    const std::string extra = dir.substr(at + 46 + name_len, extra_len);
    for (size_t e = 0; e + 4 <= extra.size();) {
      const uint64_t id = le(extra, e, 2), len = le(extra, e + 2, 2);
      if (e + 4 + len > extra.size()) break;
      if (id == 1) {
        size_t field = e + 4;
        auto next = [&](uint64_t* value) {
          if (*value == 0xFFFFFFFF && field + 8 <= e + 4 + len) {
            *value = le(extra, field, 8);
            field += 8;
          }
        };
        uint64_t plain = uncompressed;
        next(&plain);
        next(&entry.compressed);
        next(&entry.local_offset);
      }
      e += 4 + len;
    }
    zip.entries.push_back(std::move(entry));
    at += 46 + name_len + extra_len + comment_len;
  }
  return zip;
}

// Where an entry's data starts, or UINT64_MAX if its local header is not there.
uint64_t data_start(const File& file, const ZipEntry& entry) {
  const std::string header = file.read(entry.local_offset, 30);
  if (header.size() < 30 || header.compare(0, 4, "PK\x03\x04") != 0) return UINT64_MAX;
  return entry.local_offset + 30 + le(header, 26, 2) + le(header, 28, 2);
}

// Up to `limit` bytes of a stored (uncompressed) entry; empty otherwise.
std::string read_stored(const File& file, const ZipEntry& entry, uint64_t limit) {
  if (entry.method != 0) return {};
  const uint64_t start = data_start(file, entry);
  if (start == UINT64_MAX) return {};
  return file.read(start, std::min(entry.compressed, limit));
}

// Element sizes of the storage classes torch.save and torch.jit.save name.
size_t storage_element_size(const std::string& name) {
  static const std::pair<const char*, size_t> sizes[] = {
      {"FloatStorage", 4},    {"DoubleStorage", 8}, {"HalfStorage", 2},         {"BFloat16Storage", 2},
      {"LongStorage", 8},     {"IntStorage", 4},    {"ShortStorage", 2},        {"CharStorage", 1},
      {"ByteStorage", 1},     {"BoolStorage", 1},   {"ComplexFloatStorage", 8}, {"ComplexDoubleStorage", 16},
      {"QInt8Storage", 1},    {"QUInt8Storage", 1}, {"QInt32Storage", 4},       {"QUInt4x2Storage", 1},
      {"QUInt2x4Storage", 1}, {"UntypedStorage", 1}};
  for (const auto& [storage, bytes] : sizes) {
    if (name == storage) return bytes;
  }
  return 0;
}

// A storage a pickle refers to: ('storage', torch.FloatStorage, key, location, numel).
struct StorageRef {
  std::string key;
  uint64_t bytes = 0;
};

// Walks a pickle the way libtorch's unpickler would, without building
// anything, and returns what is wrong (empty if nothing). libtorch trusts
// its input: a length it allocates before reading (gigabytes for a damaged
// one), a memo index it sizes a table by, an opcode that pops from an empty
// stack or past a MARK (a segfault). Those are checked here, for every
// pickle in the file, including the .debug_pkl records that libtorch reads
// only when it formats an error during forward. The storages the pickle
// names are collected in `storages`. Opcodes it does not know end the walk
// (libtorch rejects those itself).
std::string check_pickle(const std::string& pkl, std::vector<StorageRef>* storages) {
  // Just enough of each value to read persistent ids: strings, ints, globals, tuples.
  struct Value {
    char kind = '?';  // 's' string, 'i' int, 'g' global, 't' tuple, '?' other
    std::string text;
    int64_t number = 0;
    std::vector<Value> items;
  };
  std::vector<Value> stack;
  std::vector<size_t> marks;
  size_t memo_size = 0;
  std::set<uint64_t> memo;
  size_t at = 0;
  const size_t end = pkl.size();
  std::string problem;
  auto where = [&](size_t offset) { return " at offset " + std::to_string(offset); };
  auto need_bytes = [&](uint64_t bytes, const char* what) {
    if (!problem.empty()) return false;
    if (bytes > end - at) {
      problem = std::string(what) + " of " + std::to_string(bytes) + " bytes" + where(at) +
                " runs past the end of the record (" + std::to_string(end) + " bytes)";
      return false;
    }
    at += static_cast<size_t>(bytes);
    return true;
  };
  auto line = [&](std::string* out) {
    const size_t newline = pkl.find('\n', at);
    if (newline == std::string::npos) {
      problem = "a text argument" + where(at) + " never ends";
      return false;
    }
    if (out != nullptr) *out = pkl.substr(at, newline - at);
    at = newline + 1;
    return true;
  };
  auto above_mark = [&]() { return stack.size() - (marks.empty() ? 0 : marks.back()); };
  auto need_items = [&](size_t count, size_t op_at) {
    if (above_mark() >= count) return true;
    problem = "an opcode" + where(op_at) + " needs " + std::to_string(count) + " value(s) but the stack has " +
              std::to_string(above_mark());
    return false;
  };
  auto pop_to_mark = [&](size_t op_at, std::vector<Value>* out) {
    if (marks.empty()) {
      problem = "an opcode" + where(op_at) + " needs a MARK but there is none";
      return false;
    }
    const size_t mark = marks.back();
    marks.pop_back();
    if (out != nullptr)
      out->assign(std::make_move_iterator(stack.begin() + mark), std::make_move_iterator(stack.end()));
    stack.resize(mark);
    return true;
  };
  auto text = [&](size_t bytes) {
    Value v;
    v.kind = 's';
    v.text = pkl.substr(at - bytes, bytes);
    return v;
  };
  auto integer = [&](int64_t number) {
    Value v;
    v.kind = 'i';
    v.number = number;
    return v;
  };
  auto tuple = [&](std::vector<Value> items) {
    Value v;
    v.kind = 't';
    v.items = std::move(items);
    return v;
  };
  while (at < end && problem.empty()) {
    const size_t op_at = at;
    const auto op = static_cast<unsigned char>(pkl[at++]);
    switch (op) {
      case '.':  // STOP
        if (stack.size() != 1 || !marks.empty()) {
          return "the pickle stops" + where(op_at) + " with " + std::to_string(stack.size()) +
                 " values on its stack instead of 1";
        }
        return {};
      case 0x80:  // PROTO
        need_bytes(1, "an argument");
        break;
      case 0x95:  // FRAME
        need_bytes(8, "an argument");
        break;
      case 'K':  // BININT1
        if (need_bytes(1, "an argument")) stack.push_back(integer(static_cast<unsigned char>(pkl[at - 1])));
        break;
      case 'M':  // BININT2
        if (need_bytes(2, "an argument")) stack.push_back(integer(static_cast<int64_t>(le(pkl, at - 2, 2))));
        break;
      case 'J':  // BININT
        if (need_bytes(4, "an argument")) {
          stack.push_back(integer(static_cast<int32_t>(static_cast<uint32_t>(le(pkl, at - 4, 4)))));
        }
        break;
      case 'G':  // BINFLOAT
        if (need_bytes(8, "an argument")) stack.emplace_back();
        break;
      case 0x8a: {  // LONG1
        if (!need_bytes(1, "a length")) break;
        const size_t bytes = static_cast<unsigned char>(pkl[at - 1]);
        if (!need_bytes(bytes, "a value")) break;
        stack.push_back(bytes <= 8 ? integer(static_cast<int64_t>(le(pkl, at - bytes, bytes))) : Value());
        break;
      }
      case 'U':
      case 'C':
      case 0x8c: {  // SHORT_BINSTRING SHORT_BINBYTES SHORT_BINUNICODE
        if (!need_bytes(1, "a length")) break;
        const size_t bytes = static_cast<unsigned char>(pkl[at - 1]);
        if (need_bytes(bytes, "a value")) stack.push_back(text(bytes));
        break;
      }
      case 'T':
      case 'X':
      case 'B':
      case 0x8b: {  // BINSTRING BINUNICODE BINBYTES LONG4
        if (!need_bytes(4, "a length")) break;
        const uint64_t bytes = le(pkl, at - 4, 4);
        if (need_bytes(bytes, "a value")) stack.push_back(op == 0x8b ? Value() : text(static_cast<size_t>(bytes)));
        break;
      }
      case 0x8d:
      case 0x8e:
      case 0x96: {  // BINUNICODE8 BINBYTES8 BYTEARRAY8
        if (!need_bytes(8, "a length")) break;
        const uint64_t bytes = le(pkl, at - 8, 8);
        if (need_bytes(bytes, "a value")) stack.push_back(text(static_cast<size_t>(bytes)));
        break;
      }
      case 'c': {  // GLOBAL module\nname\n
        Value v;
        v.kind = 'g';
        std::string module, name;
        if (line(&module) && line(&name)) {
          v.text = module + "." + name;
          stack.push_back(std::move(v));
        }
        break;
      }
      case 'N':
      case 0x88:
      case 0x89:
      case ')':
      case ']':
      case '}':  // NONE NEWTRUE NEWFALSE EMPTY_*
        stack.push_back(op == ')' ? tuple({}) : Value());
        break;
      case '(':  // MARK
        marks.push_back(stack.size());
        break;
      case 't': {  // TUPLE
        std::vector<Value> items;
        if (pop_to_mark(op_at, &items)) stack.push_back(tuple(std::move(items)));
        break;
      }
      case 'l':
      case 'd':  // LIST DICT
        if (pop_to_mark(op_at, nullptr)) stack.emplace_back();
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1 TUPLE2 TUPLE3
        const size_t count = op - 0x84;
        if (!need_items(count, op_at)) break;
        std::vector<Value> items(std::make_move_iterator(stack.end() - static_cast<long>(count)),
                                 std::make_move_iterator(stack.end()));
        stack.resize(stack.size() - count);
        stack.push_back(tuple(std::move(items)));
        break;
      }
      case 'a':
      case 'R':
      case 'b':
      case 0x81:  // APPEND REDUCE BUILD NEWOBJ: two values in, one out
        if (need_items(2, op_at)) {
          stack.pop_back();
          stack.back() = Value();
        }
        break;
      case 's':  // SETITEM
        if (need_items(3, op_at)) stack.resize(stack.size() - 2);
        break;
      case 'e':
      case 'u': {  // APPENDS SETITEMS: a container below the mark
        std::vector<Value> items;
        if (!pop_to_mark(op_at, &items)) break;
        if (op == 'u' && items.size() % 2 != 0) {
          problem = "SETITEMS" + where(op_at) + " has an odd number of values";
          break;
        }
        if (above_mark() < 1) problem = "an opcode" + where(op_at) + " has no container to add to";
        break;
      }
      case 'Q': {  // BINPERSID
        if (!need_items(1, op_at)) break;
        const Value id = std::move(stack.back());
        stack.back() = Value();
        if (id.kind == 't' && id.items.size() >= 5 && id.items[0].kind == 's' && id.items[0].text == "storage" &&
            id.items[1].kind == 'g' && id.items[2].kind == 's' && id.items[4].kind == 'i') {
          const std::string& cls = id.items[1].text;
          const size_t element = storage_element_size(cls.substr(cls.rfind('.') + 1));
          if (element > 0 && id.items[4].number >= 0) {
            storages->push_back({id.items[2].text, static_cast<uint64_t>(id.items[4].number) * element});
          }
        }
        break;
      }
      case 'q':
      case 'r': {  // BINPUT LONG_BINPUT
        if (!need_bytes(op == 'q' ? 1 : 4, "an argument")) break;
        const uint64_t index = le(pkl, at - (op == 'q' ? 1 : 4), op == 'q' ? 1 : 4);
        if (index > end) {
          problem = "a memo index of " + std::to_string(index) + where(op_at) + " is beyond any the record can hold (" +
                    std::to_string(end) + " bytes)";
          break;
        }
        if (!need_items(1, op_at)) break;
        memo.insert(index);
        memo_size = std::max<size_t>(memo_size, static_cast<size_t>(index) + 1);
        break;
      }
      case 'h':
      case 'j': {  // BINGET LONG_BINGET
        if (!need_bytes(op == 'h' ? 1 : 4, "an argument")) break;
        const uint64_t index = le(pkl, at - (op == 'h' ? 1 : 4), op == 'h' ? 1 : 4);
        if (memo.count(index) == 0) {
          problem = "memo entry " + std::to_string(index) + where(op_at) + " is read before it is written";
          break;
        }
        stack.emplace_back();
        break;
      }
      case '0':  // POP
        if (need_items(1, op_at)) stack.pop_back();
        break;
      case '1':  // POP_MARK
        pop_to_mark(op_at, nullptr);
        break;
      case '2':  // DUP
        if (need_items(1, op_at)) stack.push_back(stack.back());
        break;
      default: return {};  // not an opcode libtorch writes: libtorch reports it
    }
  }
  return problem.empty() ? "it ends without a STOP opcode" : problem;
}

// libtorch does not check the zip's CRC-32s, so a corrupted byte in a tensor
// would load as a wrong weight. Checks every stored entry (PyTorch stores all
// of them); an empty string if all match, else what is wrong.
std::string check_entries(const File& file, const std::vector<ZipEntry>& entries) {
  constexpr uint64_t kChunk = 1 << 20;
  for (const auto& entry : entries) {
    const uint64_t start = data_start(file, entry);
    if (start == UINT64_MAX) return "record '" + entry.name + "' is missing from where the zip directory puts it";
    if (start > file.size() || entry.compressed > file.size() - start) {
      return "record '" + entry.name + "' runs past the end of the file";
    }
    if (entry.method != 0) continue;
    uint32_t crc = 0;
    for (uint64_t done = 0; done < entry.compressed;) {
      const std::string chunk = file.read(start + done, std::min(kChunk, entry.compressed - done));
      if (chunk.empty()) return "record '" + entry.name + "' runs past the end of the file";
      crc = crc32_fast(chunk.data(), chunk.size(), crc);
      done += chunk.size();
    }
    if (crc != entry.crc) return "record '" + entry.name + "' does not match its checksum";
  }
  return {};
}

// What a torch.save data.pkl holds, from its first pickle opcodes.
std::string describe_pickle(const std::string& pkl) {
  if (pkl.size() < 3 || static_cast<unsigned char>(pkl[0]) != 0x80) return "a pickled Python object";
  const char op = pkl[2];
  if (op == '}') return "a dict (a training checkpoint?)";
  if (op == ']') return "a list";
  if (op == 'c') {
    const size_t end1 = pkl.find('\n', 3);
    const size_t end2 = end1 == std::string::npos ? end1 : pkl.find('\n', end1 + 1);
    if (end2 != std::string::npos && end2 < 300) {
      const std::string module = pkl.substr(3, end1 - 3), name = pkl.substr(end1 + 1, end2 - end1 - 1);
      if (module == "collections" && name == "OrderedDict") {
        return "a state_dict (the weights, without the model's code)";
      }
      if (module == "torch._utils") return "a tensor";
      return "a pickled object of class " + module + "." + name +
             " (torch.save(model) pickles a module, which needs its Python class to load)";
    }
  }
  return "a pickled Python object";
}

[[noreturn]] void not_torchscript(const std::string& path, const std::string& what) {
  fail(codes::kModelNotTorchScript,
       "Model file " + in_quotes(path) + " is " + what + ", not TorchScript. " + kExportHint);
}

// Files that are not zip archives: say what they are where we can tell.
[[noreturn]] void not_a_zip(const std::string& path, const std::string& head, uint64_t size) {
  static const std::string legacy_magic("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14);
  if (starts_with(head, legacy_magic)) not_torchscript(path, "a file saved with torch.save in the pre-1.6 format");
  const auto byte = [&](size_t i) { return i < head.size() ? static_cast<unsigned char>(head[i]) : 0; };
  if (byte(0) == 0x80 && byte(1) >= 2 && byte(1) <= 5) not_torchscript(path, "a Python pickle");
  if (size >= 10 && byte(8) == '{') {
    const uint64_t header = le(head, 0, 8);
    if (header >= 2 && header <= size - 8) not_torchscript(path, "a safetensors file (weights only)");
  }
  if (starts_with(head, "\x89HDF")) not_torchscript(path, "an HDF5 file (a Keras .h5 model?)");
  if (starts_with(head, "GGUF")) not_torchscript(path, "a GGUF file (llama.cpp weights)");
  if (starts_with(head, "version https://git-lfs")) {
    fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                  " is a Git LFS pointer, not the model itself: fetch the file with `git lfs pull`");
  }
  std::string text = head;
  text.erase(0, std::min(text.find_first_not_of(" \t\r\n"), text.size()));
  text = lower(text);
  if (starts_with(text, "<!doctype html") || starts_with(text, "<html")) {
    fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                  " is an HTML page, not a model (a download that returned a web page, such as a "
                                  "sign-in page?)");
  }
  std::string hint;
  if (path.size() > 5 && lower(path.substr(path.size() - 5)) == ".onnx") {
    hint = " It looks like an ONNX model; export the PyTorch model with torch.jit.script or torch.jit.trace instead.";
  }
  fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                " is not a zip archive, as TorchScript files are (they start with \"PK\"); it starts "
                                "with " +
                                show_head(head) + "." + hint);
}

// Checks every pickle in the archive (see check_pickle), and that each
// storage a pickle names has a record holding at least its bytes: libtorch
// sizes a storage by the pickle and reads the record into it unchecked.
// Deflated records (PyTorch stores all of its own) are read through
// libtorch's zip reader, after the checks on the zip above have passed.
void check_pickles(const File& file, const std::vector<ZipEntry>& entries, const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  std::map<std::string, const ZipEntry*> by_record;
  std::string prefix;
  for (const auto& entry : entries) {
    const size_t slash = entry.name.find('/');
    if (slash != std::string::npos) {
      prefix = entry.name.substr(0, slash + 1);
      by_record[entry.name.substr(slash + 1)] = &entry;
    }
  }
  for (const auto& entry : entries) {
    const bool pickle = ends_with(entry.name, ".pkl") || ends_with(entry.name, ".debug_pkl");
    if (!pickle || entry.compressed > (256ULL << 20)) continue;
    std::string bytes;
    if (entry.method == 0) {
      bytes = read_stored(file, entry, entry.compressed);
    } else {
      try {
        if (!reader) reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
        const size_t slash = entry.name.find('/');
        auto [data, size] = reader->getRecord(entry.name.substr(slash + 1));
        bytes.assign(static_cast<const char*>(data.get()), size);
      } catch (const std::exception&) {
        continue;  // libtorch will report what is wrong with the archive
      }
    }
    std::vector<StorageRef> storages;
    const std::string problem = check_pickle(bytes, &storages);
    if (!problem.empty()) {
      fail(codes::kModelFormat, "Model file " + in_quotes(path) + " is damaged: in record '" + entry.name + "', " +
                                    problem + ". Download or save it again");
    }
    // data.pkl's storages are in data/, constants.pkl's in constants/.
    const std::string base = entry.name.substr(entry.name.rfind('/') + 1);
    if (base != "data.pkl" && base != "constants.pkl") continue;
    const std::string folder = base.substr(0, base.size() - 4) + "/";
    for (const auto& storage : storages) {
      auto found = by_record.find(folder + storage.key);
      if (found == by_record.end()) found = by_record.find(".data/" + folder + storage.key);
      if (found == by_record.end()) continue;  // libtorch reports a missing record itself
      if (found->second->compressed < storage.bytes && found->second->method == 0) {
        fail(codes::kModelFormat, "Model file " + in_quotes(path) + " is damaged: record '" + found->second->name +
                                      "' holds " + std::to_string(found->second->compressed) +
                                      " bytes, but the tensor data it stores needs " + std::to_string(storage.bytes) +
                                      ". Download or save it again");
      }
    }
  }
}

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
    if (fits_storage(t, &why)) return;
    fail(codes::kModelFormat, "Model file " + in_quotes(path_) + " is damaged: tensor '" + where + "' (" + why +
                                  ") does not fit its data. Download or save it again");
  }

  std::string path_;
  std::set<const void*> seen_;
};

}  // namespace

void check_module_tensors(const torch::jit::Module& module, const std::string& path) {
  TensorChecker checker(path);
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

const char* libtorch_version() { return TORCH_VERSION; }

ModelFileInfo inspect_model_file(const std::string& path) {
  File file(path);
  ModelFileInfo info;
  info.size = file.size();
  if (info.size == 0) {
    fail(codes::kModelEmpty,
         "Model file " + in_quotes(path) + " is empty (0 bytes): an interrupted download or save? Write it again");
  }
  const std::string head = file.read(0, 64);
  if (!starts_with(head, "PK\x03\x04")) not_a_zip(path, head, info.size);

  const Zip zip = read_zip_directory(file);
  if (!zip.problem.empty()) {
    fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                  " is cut off or damaged: it starts like a zip archive, but " + zip.problem +
                                  ". It has " + std::to_string(info.size) +
                                  " bytes; an incomplete download or copy does this. Download or save it again");
  }
  // PyTorch writes every record under one folder: <folder>/data.pkl, ...
  std::set<std::string> records;
  const ZipEntry* pickle = nullptr;
  const ZipEntry* version = nullptr;
  bool code = false;
  for (const auto& entry : zip.entries) {
    info.entries.push_back(entry.name);
    const size_t slash = entry.name.find('/');
    const std::string record = slash == std::string::npos ? entry.name : entry.name.substr(slash + 1);
    records.insert(record);
    if (record == "data.pkl") pickle = &entry;
    if (record == "version" || (record == ".data/version" && version == nullptr)) version = &entry;
    if (starts_with(record, "code/")) code = true;
  }
  if (pickle == nullptr || version == nullptr) {
    std::string listed;
    for (size_t i = 0; i < std::min<size_t>(info.entries.size(), 4); ++i) {
      listed += (i > 0 ? ", " : "") + info.entries[i];
    }
    if (info.entries.size() > 4) listed += ", ...";
    fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                  " is a zip archive but not one PyTorch wrote: it has no data.pkl and version "
                                  "records (it holds " +
                                  (listed.empty() ? std::string("nothing") : listed) + ")");
  }
  const std::string damage = check_entries(file, zip.entries);
  if (!damage.empty()) {
    fail(codes::kModelFormat, "Model file " + in_quotes(path) + " is damaged: " + damage +
                                  " (a corrupted download, copy or disk?). Download or save it again");
  }
  check_pickles(file, zip.entries, path);
  if (!code && records.count("constants.pkl") == 0) {
    not_torchscript(path, "torch.save output holding " + describe_pickle(read_stored(file, *pickle, 512)));
  }
  const std::string version_text = read_stored(file, *version, 32);
  if (!version_text.empty() && std::isdigit(static_cast<unsigned char>(version_text[0]))) {
    info.format_version = std::strtoll(version_text.c_str(), nullptr, 10);
  }
  const auto newest = static_cast<int64_t>(caffe2::serialize::kMaxSupportedFileFormatVersion);
  if (info.format_version > newest) {
    fail(codes::kModelVersion,
         "Model file " + in_quotes(path) + " is TorchScript file format version " +
             std::to_string(info.format_version) + ", newer than the linked libtorch " + TORCH_VERSION +
             " reads (up to version " + std::to_string(newest) +
             "): a newer PyTorch saved it. Save it again with PyTorch " + TORCH_VERSION +
             ", or build torch-cka against a newer libtorch (LIBTORCH=/path/to/libtorch npm rebuild torch-cka)");
  }
  return info;
}

void throw_load_error(const std::string& path, const ModelFileInfo& info, const std::string& message) {
  (void)info;
  static const char* newer_signs[] = {"Unknown builtin op", "Unknown type name", "Unknown type constructor",
                                      "Unknown custom class", "Attempted to read a PyTorch file with version"};
  for (const char* sign : newer_signs) {
    const size_t at = message.find(sign);
    if (at == std::string::npos) continue;
    std::string what = message.substr(at, message.find('\n', at) - at);
    while (!what.empty() && (what.back() == '.' || what.back() == ' ')) what.pop_back();
    fail(codes::kModelVersion, "Model file " + in_quotes(path) + " uses what the linked libtorch " + TORCH_VERSION +
                                   " does not have (" + what +
                                   "): a newer PyTorch probably saved it. Save it again with PyTorch " + TORCH_VERSION +
                                   ", or build torch-cka against that PyTorch's libtorch (LIBTORCH=/path/to/libtorch "
                                   "npm rebuild torch-cka)");
  }
  fail(codes::kModelLoad,
       "Could not load " + in_quotes(path) + " as a TorchScript model: " + shorten_message(message, 4));
}

}  // namespace tcka
