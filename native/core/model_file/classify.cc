#include "model_file/classify.h"

#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "errors.h"
#include "model_file.h"
#include "model_file/file.h"
#include "model_file/pickle.h"

namespace tcka {
namespace model_file {
namespace {

constexpr const char* kExportHint =
    "torch-cka reads TorchScript, which holds a model's code as well as its weights: build the model in Python (load "
    "these weights into it if that is what the file holds) and export it with torch.jit.script(model).save('model.pt') "
    "or torch.jit.trace(model, example_input).save('model.pt')";

[[noreturn]] void fail(const char* code, const std::string& message) { throw CKAError(code, message); }

std::string in_quotes(const std::string& path) { return "'" + path + "'"; }

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

bool is(char byte, Opcode op) { return static_cast<unsigned char>(byte) == static_cast<uint8_t>(op); }

// What a torch.save data.pkl holds, from its first pickle opcodes.
std::string describe_pickle(const std::string& pkl) {
  if (pkl.size() < 3 || !is(pkl[0], Opcode::kProto)) return "a pickled Python object";
  const char op = pkl[2];
  if (is(op, Opcode::kEmptyDict)) return "a dict (a training checkpoint?)";
  if (is(op, Opcode::kEmptyList)) return "a list";
  if (is(op, Opcode::kGlobal)) {
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
  fail(codes::kModelNotTorchscript,
       "Model file " + in_quotes(path) + " is " + what + ", not TorchScript. " + kExportHint);
}

[[noreturn]] void damaged(const std::string& path, const std::string& what) {
  fail(codes::kModelFormat, "Model file " + in_quotes(path) + " is damaged: " + what);
}

}  // namespace

void missing_file(const std::string& path) {
  fail(codes::kModelNotFound, "Model file " + in_quotes(path) + " does not exist");
}

void unreadable_file(const std::string& path, int error_number) {
  fail(codes::kModelUnreadable, "Model file " + in_quotes(path) + " cannot be read: " + std::strerror(error_number));
}

void folder_not_file(const std::string& path) {
  fail(codes::kModelUnreadable,
       "Model path " + in_quotes(path) + " is a folder; give the .pt file that torch.jit.save wrote");
}

void special_file(const std::string& path) {
  fail(codes::kModelUnreadable,
       "Model path " + in_quotes(path) + " is not a regular file (a device, pipe or socket); give a .pt file");
}

void empty_file(const std::string& path) {
  fail(codes::kModelEmpty,
       "Model file " + in_quotes(path) + " is empty (0 bytes): an interrupted download or save? Write it again");
}

void not_a_zip(const std::string& path, const std::string& head, uint64_t size) {
  static const std::string legacy_magic("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14);
  if (starts_with(head, legacy_magic)) not_torchscript(path, "a file saved with torch.save in the pre-1.6 format");
  const auto byte = [&](size_t i) { return i < head.size() ? static_cast<unsigned char>(head[i]) : 0; };
  if (byte(0) == static_cast<uint8_t>(Opcode::kProto) && byte(1) >= 2 && byte(1) <= 5) {
    not_torchscript(path, "a Python pickle");
  }
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

void cut_off_zip(const std::string& path, uint64_t size, const std::string& problem) {
  fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                " is cut off or damaged: it starts like a zip archive, but " + problem + ". It has " +
                                std::to_string(size) +
                                " bytes; an incomplete download or copy does this. Download or save it again");
}

void foreign_zip(const std::string& path, const std::string& listed) {
  fail(codes::kModelFormat, "Model file " + in_quotes(path) +
                                " is a zip archive but not one PyTorch wrote: it has no data.pkl and version "
                                "records (it holds " +
                                (listed.empty() ? std::string("nothing") : listed) + ")");
}

void damaged_records(const std::string& path, const std::string& damage) {
  damaged(path, damage + " (a corrupted download, copy or disk?). Download or save it again");
}

void damaged_pickle(const std::string& path, const std::string& record, const std::string& problem) {
  damaged(path, "in record '" + record + "', " + problem + ". Download or save it again");
}

void short_storage_record(const std::string& path, const std::string& record, uint64_t held, uint64_t needed) {
  damaged(path, "record '" + record + "' holds " + std::to_string(held) +
                    " bytes, but the tensor data it stores needs " + std::to_string(needed) +
                    ". Download or save it again");
}

void tensor_outside_data(const std::string& path, const std::string& tensor, const std::string& why) {
  damaged(path, "tensor '" + tensor + "' (" + why + ") does not fit its data. Download or save it again");
}

void torch_save_output(const std::string& path, const std::string& data_pkl) {
  not_torchscript(path, "torch.save output holding " + describe_pickle(data_pkl));
}

void format_too_new(const std::string& path, int64_t version, int64_t newest) {
  fail(codes::kModelVersion,
       "Model file " + in_quotes(path) + " is TorchScript file format version " + std::to_string(version) +
           ", newer than the linked libtorch " + TORCH_VERSION + " reads (up to version " + std::to_string(newest) +
           "): a newer PyTorch saved it. Save it again with PyTorch " + TORCH_VERSION +
           ", or build torch-cka against a newer libtorch (LIBTORCH=/path/to/libtorch npm rebuild torch-cka)");
}

}  // namespace model_file

void throw_load_error(const std::string& path, const ModelFileInfo& info, const std::string& message) {
  (void)info;
  static const char* newer_signs[] = {"Unknown builtin op", "Unknown type name", "Unknown type constructor",
                                      "Unknown custom class", "Attempted to read a PyTorch file with version"};
  for (const char* sign : newer_signs) {
    const size_t at = message.find(sign);
    if (at == std::string::npos) continue;
    std::string what = message.substr(at, message.find('\n', at) - at);
    while (!what.empty() && (what.back() == '.' || what.back() == ' ')) what.pop_back();
    model_file::fail(codes::kModelVersion,
                     "Model file " + model_file::in_quotes(path) + " uses what the linked libtorch " + TORCH_VERSION +
                         " does not have (" + what +
                         "): a newer PyTorch probably saved it. Save it again with PyTorch " + TORCH_VERSION +
                         ", or build torch-cka against that PyTorch's libtorch (LIBTORCH=/path/to/libtorch npm "
                         "rebuild torch-cka)");
  }
  model_file::fail(codes::kModelLoad, "Could not load " + model_file::in_quotes(path) +
                                          " as a TorchScript model: " + shorten_message(message, 4));
}

}  // namespace tcka
