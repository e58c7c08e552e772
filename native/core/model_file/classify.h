// What a finding about a model file means for the user: each function here
// throws the CKAError for one kind of finding, with its code (ERR_MODEL_FORMAT,
// ERR_MODEL_NOT_TORCHSCRIPT, ERR_MODEL_VERSION, ...) and a message that says
// what the file is and what to do. The checks beside it only find things; the
// codes and the wording live here, in one place, and tests compare the
// messages byte for byte.
#pragma once

#include <cstdint>
#include <string>

namespace tcka::model_file {

// Opening and reading (ERR_MODEL_NOT_FOUND, ERR_MODEL_UNREADABLE).
[[noreturn]] void missing_file(const std::string& path);
[[noreturn]] void unreadable_file(const std::string& path, int error_number);
[[noreturn]] void folder_not_file(const std::string& path);
[[noreturn]] void special_file(const std::string& path);
[[noreturn]] void empty_file(const std::string& path);  // ERR_MODEL_EMPTY

// Not a zip archive: says what the file is where its first bytes (`head`)
// tell (a pickle, safetensors, HDF5, GGUF, a Git LFS pointer, a web page).
// ERR_MODEL_NOT_TORCHSCRIPT or ERR_MODEL_FORMAT.
[[noreturn]] void not_a_zip(const std::string& path, const std::string& head, uint64_t size);

// A zip archive PyTorch did not write, or wrote but did not finish
// (ERR_MODEL_FORMAT). `problem` and `damage` say what is wrong, as zip.h and
// pickle.h describe it.
[[noreturn]] void cut_off_zip(const std::string& path, uint64_t size, const std::string& problem);
[[noreturn]] void foreign_zip(const std::string& path, const std::string& listed);
[[noreturn]] void damaged_records(const std::string& path, const std::string& damage);
[[noreturn]] void damaged_pickle(const std::string& path, const std::string& record, const std::string& problem);
[[noreturn]] void short_storage_record(const std::string& path, const std::string& record, uint64_t held,
                                       uint64_t needed);
[[noreturn]] void tensor_outside_data(const std::string& path, const std::string& tensor, const std::string& why);

// torch.save output rather than TorchScript (ERR_MODEL_NOT_TORCHSCRIPT);
// `data_pkl` is the start of its data.pkl.
[[noreturn]] void torch_save_output(const std::string& path, const std::string& data_pkl);

// A file format version newer than the linked libtorch reads (ERR_MODEL_VERSION).
[[noreturn]] void format_too_new(const std::string& path, int64_t version, int64_t newest);

}  // namespace tcka::model_file
