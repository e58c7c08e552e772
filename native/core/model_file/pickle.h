// The pickles in a TorchScript archive (data.pkl, constants.pkl, the
// .debug_pkl records), walked before libtorch unpickles them. libtorch trusts
// its input: a length it allocates before reading (gigabytes for a damaged
// one), a memo index it sizes a table by, an opcode that pops from an empty
// stack or past a MARK (a segfault). The walk checks those without building
// anything, and collects the storages the pickle names for tensors.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tcka::model_file {

// The pickle opcodes libtorch writes and reads (Python's pickletools names).
enum class Opcode : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinString = 'T',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kEmptyList = ']',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kList = 'l',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kSetItems = 'u',
  kEmptyDict = '}',
  kEmptyTuple = ')',
  kProto = 0x80,
  kNewObj = 0x81,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kFrame = 0x95,
  kByteArray8 = 0x96,
};

// A storage a pickle refers to by persistent id:
// ('storage', torch.FloatStorage, key, location, numel).
struct StorageRef {
  std::string key;            // the record's name in the data/ folder
  std::string storage_class;  // the global, e.g. "torch.FloatStorage"
  int64_t numel = 0;
};

// Walks a pickle the way libtorch's unpickler would and returns what is wrong
// (empty if nothing). Appends the storages it names to `storages`. Opcodes it
// does not know end the walk (libtorch rejects those itself).
std::string check_pickle(const std::string& pkl, std::vector<StorageRef>* storages);

}  // namespace tcka::model_file
