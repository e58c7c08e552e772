// inspect_model_file (model_file.h): the order of the checks before libtorch
// reads a model file, cheapest and most telling first: what the file is from
// its first bytes, its zip directory, the records PyTorch writes, their
// checksums, the pickles and the tensor records they name, whether it is
// TorchScript at all, and its format version. The checks live beside this
// file; the errors they end in, in classify.cc.
#include <caffe2/serialize/versions.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#include "model_file.h"
#include "model_file/classify.h"
#include "model_file/file.h"
#include "model_file/pickle.h"
#include "model_file/tensors.h"
#include "model_file/zip.h"

namespace tcka {
namespace model_file {
namespace {

// Checks every pickle in the archive (pickle.h), and that each storage a
// pickle names has a record holding at least its bytes (tensors.h).
// Compressed records (PyTorch stores all of its own) are read through
// libtorch's zip reader, after the checks on the zip have passed.
void check_pickles(const File& file, const std::vector<ZipEntry>& entries) {
  RecordReader records(file);
  const StorageRecords storage_records(entries);
  for (const auto& entry : entries) {
    const bool pickle = ends_with(entry.name, ".pkl") || ends_with(entry.name, ".debug_pkl");
    if (!pickle || entry.compressed > (256ULL << 20)) continue;
    std::string bytes;
    if (!records.read(entry, &bytes)) continue;  // libtorch will report what is wrong with the archive
    std::vector<StorageRef> storages;
    const std::string problem = check_pickle(bytes, &storages);
    if (!problem.empty()) damaged_pickle(file.path(), entry.name, problem);
    storage_records.check(entry, storages, file.path());
  }
}

}  // namespace
}  // namespace model_file

const char* libtorch_version() { return TORCH_VERSION; }

ModelFileInfo inspect_model_file(const std::string& path) {
  using namespace model_file;
  File file(path);
  ModelFileInfo info;
  info.size = file.size();
  if (info.size == 0) empty_file(path);
  const std::string head = file.read(0, 64);
  if (!starts_with(head, "PK\x03\x04")) not_a_zip(path, head, info.size);

  const Zip zip = read_zip_directory(file);
  if (!zip.problem.empty()) cut_off_zip(path, info.size, zip.problem);
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
    foreign_zip(path, listed);
  }
  const std::string damage = check_entries(file, zip.entries);
  if (!damage.empty()) damaged_records(path, damage);
  check_pickles(file, zip.entries);
  if (!code && records.count("constants.pkl") == 0) torch_save_output(path, read_stored(file, *pickle, 512));
  const std::string version_text = read_stored(file, *version, 32);
  if (!version_text.empty() && std::isdigit(static_cast<unsigned char>(version_text[0]))) {
    info.format_version = std::strtoll(version_text.c_str(), nullptr, 10);
  }
  const auto newest = static_cast<int64_t>(caffe2::serialize::kMaxSupportedFileFormatVersion);
  if (info.format_version > newest) format_too_new(path, info.format_version, newest);
  return info;
}

}  // namespace tcka
