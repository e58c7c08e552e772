#include "model_file/zip.h"

#include <caffe2/serialize/crc_alt.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>

namespace tcka::model_file {
namespace {

// The zip64 extra field of a directory entry: the fields that are 0xFFFFFFFF
// in the entry, in order, as 8-byte values.
void read_zip64_extra(const std::string& extra, uint64_t uncompressed, ZipEntry* entry) {
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
      next(&entry->compressed);
      next(&entry->local_offset);
    }
    e += 4 + len;
  }
}

// Where an entry's data starts, or UINT64_MAX if its local header is not there.
uint64_t data_start(const File& file, const ZipEntry& entry) {
  const std::string header = file.read(entry.local_offset, 30);
  if (header.size() < 30 || header.compare(0, 4, "PK\x03\x04") != 0) return UINT64_MAX;
  return entry.local_offset + 30 + le(header, 26, 2) + le(header, 28, 2);
}

}  // namespace

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
    read_zip64_extra(dir.substr(at + 46 + name_len, extra_len), uncompressed, &entry);
    zip.entries.push_back(std::move(entry));
    at += 46 + name_len + extra_len + comment_len;
  }
  return zip;
}

std::string read_stored(const File& file, const ZipEntry& entry, uint64_t limit) {
  if (entry.method != 0) return {};
  const uint64_t start = data_start(file, entry);
  if (start == UINT64_MAX) return {};
  return file.read(start, std::min(entry.compressed, limit));
}

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

RecordReader::RecordReader(const File& file) : file_(file) {}

RecordReader::~RecordReader() = default;

bool RecordReader::read(const ZipEntry& entry, std::string* bytes) {
  if (entry.method == 0) {
    *bytes = read_stored(file_, entry, entry.compressed);
    return true;
  }
  try {
    if (!reader_) reader_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file_.path());
    const size_t slash = entry.name.find('/');
    auto [data, size] = reader_->getRecord(entry.name.substr(slash + 1));
    bytes->assign(static_cast<const char*>(data.get()), size);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace tcka::model_file
