#include "model_file/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "model_file/classify.h"

namespace tcka::model_file {

File::File(const std::string& path) : path_(path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) missing_file(path);
    unreadable_file(path, errno);
  }
  if (S_ISDIR(st.st_mode)) folder_not_file(path);
  if (!S_ISREG(st.st_mode)) special_file(path);
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) unreadable_file(path, errno);
  size_ = static_cast<uint64_t>(st.st_size);
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

std::string File::read(uint64_t offset, uint64_t count) const {
  if (offset >= size_) return {};
  count = std::min(count, size_ - offset);
  std::string out(count, '\0');
  uint64_t done = 0;
  while (done < count) {
    const ssize_t got = ::pread(fd_, &out[done], count - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) unreadable_file(path_, errno);
    if (got == 0) break;  // the file shrank
    done += static_cast<uint64_t>(got);
  }
  out.resize(done);
  return out;
}

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

}  // namespace tcka::model_file
