// Checks a model file before libtorch reads it, and turns libtorch's load
// failures into errors that say what the file is and what to do. TorchScript
// files are zip archives holding data.pkl, constants.pkl, code/ and a version
// record; the checks here read only the file's head, its zip directory and
// the start of data.pkl, with every offset bounded by the file's size.
// The checks live in model_file/, one file per format: zip.h, pickle.h,
// tensors.h, and classify.h for the errors they end in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "torch_fwd.h"

namespace tcka {

struct ModelFileInfo {
  uint64_t size = 0;
  std::vector<std::string> entries;  // zip entry names, in directory order
  int64_t format_version = -1;       // the archive's version record, -1 if unread
};

// Throws CKAError for files libtorch cannot load as TorchScript:
// ERR_MODEL_NOT_FOUND (missing), ERR_MODEL_UNREADABLE (a folder, no
// permission), ERR_MODEL_EMPTY, ERR_MODEL_FORMAT (not a zip, a cut-off or
// damaged zip, a zip PyTorch did not write), ERR_MODEL_NOT_TORCHSCRIPT
// (torch.save output: a state_dict, a checkpoint dict, a pickled module; a
// plain pickle; safetensors) and ERR_MODEL_VERSION (a file format newer than
// the linked libtorch reads). Otherwise returns what it read.
ModelFileInfo inspect_model_file(const std::string& path);

// The CKAError for a libtorch failure to load `path`: ERR_MODEL_VERSION when
// the file uses operators or types this libtorch lacks, else ERR_MODEL_LOAD.
[[noreturn]] void throw_load_error(const std::string& path, const ModelFileInfo& info, const std::string& message);

// Checks that every tensor the loaded module holds (parameters, buffers,
// attributes, constants in its code) lies inside its storage: libtorch does
// not check a tensor's size and strides against the bytes its record
// provides, so a damaged or crafted file would make forward read out of
// bounds. Throws ERR_MODEL_FORMAT naming the tensor.
void check_module_tensors(const torch::jit::Module& module, const std::string& path);

// The version of the linked libtorch, e.g. "1.13.1".
const char* libtorch_version();

}  // namespace tcka
