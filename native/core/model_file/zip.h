// The zip archive a TorchScript file is, read from its central directory
// (zip64 included) with every offset checked against the file's size. libtorch
// trusts the directory and does not check the CRC-32s, so a cut-off download
// or a flipped byte would otherwise be a crash or a wrong weight; the findings
// come back as text for classify.h to turn into an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model_file/file.h"

namespace caffe2::serialize {
class PyTorchStreamReader;
}

namespace tcka::model_file {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0: stored, else compressed (deflated)
  uint32_t crc = 0;
  uint64_t compressed = 0;
  uint64_t local_offset = 0;
};

struct Zip {
  std::vector<ZipEntry> entries;
  std::string problem;  // why the directory could not be read; empty if it was
};

// Reads the central directory. Never reads outside the file.
Zip read_zip_directory(const File& file);

// Up to `limit` bytes of a stored (uncompressed) entry; empty otherwise.
std::string read_stored(const File& file, const ZipEntry& entry, uint64_t limit);

// Checks that every entry's local header is where the directory puts it and
// that its data lies inside the file, and the CRC-32 of every stored entry
// (PyTorch stores all of them). Empty if all is well, else what is wrong.
std::string check_entries(const File& file, const std::vector<ZipEntry>& entries);

// Whole records of the archive: stored ones read directly, compressed ones
// through libtorch's zip reader (opened on first need, and only after the
// checks above have passed).
class RecordReader {
 public:
  explicit RecordReader(const File& file);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // False if libtorch cannot read a compressed record (it reports why itself
  // when it loads the file).
  bool read(const ZipEntry& entry, std::string* bytes);

 private:
  const File& file_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
};

}  // namespace tcka::model_file
