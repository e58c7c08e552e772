// Forward declarations of the libtorch types that headers here name only by
// reference or pointer. <torch/script.h> costs about 8 s of compile time per
// file that includes it; only the files that use the JIT (taps.cc, model.cc,
// model_file.cc) include its pieces, and only the ones they use.
#pragma once

namespace c10 {
struct IValue;
}  // namespace c10

namespace torch::jit {
struct Module;
}  // namespace torch::jit
