// The model file as the checks before loading see it: reads at offsets, each
// bounded by the size found when it was opened, so that a file that lies about
// its own layout (a damaged zip directory, a crafted length) cannot make a
// check read outside it. Plus the little-endian and prefix helpers the zip,
// pickle and classification code share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tcka::model_file {

class File {
 public:
  // Throws ERR_MODEL_NOT_FOUND or ERR_MODEL_UNREADABLE (see classify.h).
  explicit File(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

  // Up to `count` bytes at `offset` (fewer at the end of the file).
  std::string read(uint64_t offset, uint64_t count) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The `width`-byte little-endian number at `at` (the caller checks the bounds).
uint64_t le(const std::string& bytes, size_t at, size_t width);

bool starts_with(const std::string& text, const std::string& prefix);
bool ends_with(const std::string& text, const std::string& suffix);

}  // namespace tcka::model_file
