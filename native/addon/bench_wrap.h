// Benchmark-only exports for `npm run bench`: the BLAS rates and the
// peer-like baseline of bench_kit.h, each run off the main thread.
#pragma once

#include <napi.h>

namespace tcka::addon {

// benchBlasRates(n, m, p, threads): Promise<{ ssyrkGflops, sgemmGflops,
// dgemmGflops, threads, n, m, p, k }>. threads 0: libtorch's current count.
Napi::Value BenchBlasRates(const Napi::CallbackInfo& info);

// peerBaseline(model1, model2, layers1, layers2, batches, threads):
// Promise<{ rows1, rows2, cka, features1, features2, seconds }>, batches an
// array of { data, shape }; cka is rows1 x rows2, null where undefined.
Napi::Value PeerBaseline(const Napi::CallbackInfo& info);

}  // namespace tcka::addon
