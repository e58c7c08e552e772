// The tensors a model file holds, checked against the bytes that hold them.
// libtorch sizes a storage by what the pickle says (its dtype and element
// count) and reads the record into it unchecked, and it does not check a
// tensor's sizes and strides against its storage either: a damaged or crafted
// file would make a load or a forward read out of bounds. The records are
// checked before loading (StorageRecords), the tensors after it
// (check_module_tensors in model_file.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model_file/pickle.h"
#include "model_file/zip.h"

namespace tcka::model_file {

// The bytes per element of a storage class torch.save and torch.jit.save
// name ("FloatStorage": 4), 0 for one it does not know.
size_t storage_element_size(const std::string& storage_class);

// The data/ and constants/ records of an archive, by their names below its
// top folder.
class StorageRecords {
 public:
  explicit StorageRecords(const std::vector<ZipEntry>& entries);

  // The storages of data.pkl are in data/, those of constants.pkl in
  // constants/ (other pickles own none). Throws ERR_MODEL_FORMAT for the first
  // storage whose stored record holds fewer bytes than it needs; a missing
  // record libtorch reports itself.
  void check(const ZipEntry& pickle, const std::vector<StorageRef>& storages, const std::string& path) const;

 private:
  std::map<std::string, const ZipEntry*> by_record_;
};

}  // namespace tcka::model_file
