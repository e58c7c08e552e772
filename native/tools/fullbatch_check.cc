// Plain C++ check and bench of the full-batch measures (fullbatch.h), for
// fullbatch_check.py and for timing on a machine without Node.
//
//   fullbatch_check measures --n N --x a.f64:D1,b.f64:D2 [--y c.f64:D3 | --shared]
//       [--measures cka,svcca,...] [--chunk C] [--threshold 0.5] [--svcca-variance 0.99]
//       [--mknn-k 10] [--cca-ridge 0] [--sigma S] [--device cpu|cuda] [--threads T]
//       [--cancel-after U]
//   fullbatch_check bench --n 1000,2000 [--threads 1] [--device cpu]
//
// `measures` reads each layer's features (N x D float64, raw little-endian,
// row-major), builds the Gram as the engine does (the features rounded to
// float32, shifted by r = the mean of the first --chunk rows, K = (X - r)(X -
// r)ᵀ in float32, dotsᵢ = (xᵢ - r)·r and ||r||² in float64), runs
// compute_full_batch and prints the result as JSON. `bench` times one layer's
// eigendecomposition and one pair's eigen measures at each N (JSON lines).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "blas.h"
#include "device.h"
#include "errors.h"
#include "fullbatch.h"
#include "tool_args.h"

using namespace tcka;
using tcka::tools::split;

namespace {

at::Tensor read_features(const std::string& spec, int64_t n) {
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("expected FILE:D, got " + spec);
  const std::string file = spec.substr(0, colon);
  const int64_t d = std::stoll(spec.substr(colon + 1));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file);
  at::Tensor x = at::empty({n, d}, at::kDouble);
  in.read(reinterpret_cast<char*>(x.data_ptr<double>()), static_cast<std::streamsize>(n * d * 8));
  if (in.gcount() != n * d * 8)
    throw std::runtime_error(file + " holds fewer than " + std::to_string(n * d) + " doubles");
  return x;
}

FullGram make_gram(const at::Tensor& features, int64_t chunk, const c10::Device& device) {
  const at::Tensor x = features.to(at::kFloat);
  const at::Tensor r = x.slice(0, 0, chunk).mean(0);
  const at::Tensor shifted = x - r;
  FullGram g;
  g.gram = at::mm(shifted, shifted.t()).to(device);
  g.dots = at::mv(shifted.to(at::kDouble), r.to(at::kDouble)).to(device);
  g.ref_norm2 = r.to(at::kDouble).square().sum().item<double>();
  g.features = features.size(1);
  return g;
}

// VmRSS or VmHWM of this process, in bytes (Linux; 0 elsewhere).
int64_t memory_status(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::strlen(field) + 1)) * 1024;
  }
  return 0;
}

std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

template <typename T, typename F>
std::string list(const std::vector<T>& values, F&& format) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + format(values[i]);
  return out + "]";
}

int measures(std::map<std::string, std::string>& opt) {
  const int64_t n = std::stoll(opt.at("n"));
  const c10::Device device = parse_device(opt.count("device") ? opt["device"] : "cpu");
  const int64_t chunk = opt.count("chunk") ? std::stoll(opt["chunk"]) : std::min<int64_t>(n, 32);
  std::vector<FullGram> k, l;
  for (const std::string& spec : split(opt.at("x"), ',')) k.push_back(make_gram(read_features(spec, n), chunk, device));
  const bool shared = opt.count("shared") && opt["shared"] != "0";
  if (!shared) {
    for (const std::string& spec : split(opt.at("y"), ','))
      l.push_back(make_gram(read_features(spec, n), chunk, device));
  }
  // --sigma S: a user σ on every layer (rbf measures), as FullGram::sigma.
  if (opt.count("sigma")) {
    for (auto* side : {&k, &l}) {
      for (FullGram& g : *side) g.sigma = std::stod(opt["sigma"]);
    }
  }
  FullBatchSettings settings;
  const std::string ids =
      opt.count("measures")
          ? opt["measures"]
          : "cka,linear_cka_biased,rbf_cka,rbf_cka_biased,dcor,cca_rho,cca_r2,svcca,procrustes,rsa,mknn";
  for (const std::string& id : split(ids, ',')) settings.measures.push_back(parse_full_measure(id, "--measures"));
  if (opt.count("threshold")) settings.rbf_threshold = std::stod(opt["threshold"]);
  if (opt.count("svcca-variance")) settings.svcca_variance = std::stod(opt["svcca-variance"]);
  if (opt.count("mknn-k")) settings.mknn_k = std::stoll(opt["mknn-k"]);
  if (opt.count("cca-ridge")) settings.cca_ridge = std::stod(opt["cca-ridge"]);
  FullBatchProgress progress;
  std::atomic<bool> cancelled{false}, finished{false};
  // --cancel-after U: set `cancelled` once U units are done (a cancel() during the measures).
  const int64_t cancel_after = opt.count("cancel-after") ? std::stoll(opt["cancel-after"]) : -1;
  std::thread watcher([&] {
    while (cancel_after >= 0 && !finished.load()) {
      if (progress.done.load() >= cancel_after) cancelled.store(true);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
  const int64_t rss_before = memory_status("VmRSS:");
  const auto start = std::chrono::steady_clock::now();
  FullBatchMatrices r;
  try {
    r = compute_full_batch(k, shared ? k : l, settings, &progress, &cancelled);
  } catch (...) {
    finished.store(true);
    watcher.join();
    throw;
  }
  finished.store(true);
  watcher.join();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const int64_t peak = memory_status("VmHWM:") - rss_before;
  const size_t m = k.size(), p = shared ? k.size() : l.size();
  auto ints = [](int64_t v) { return std::to_string(v); };
  auto bools = [](bool v) { return std::string(v ? "true" : "false"); };
  std::ostringstream out;
  out << "{\"n\":" << n << ",\"ms\":" << number(ms) << ",\"done\":" << progress.done.load()
      << ",\"total\":" << progress.total.load() << ",\"measure_bytes\":"
      << full_batch_measure_bytes(n, static_cast<int64_t>(m), static_cast<int64_t>(p), shared, settings)
      << ",\"peak_rss_growth\":" << peak << ",\"eigen_tolerance\":" << number(r.eigen_tolerance)
      << ",\"sigma1\":" << list(r.sigma1, number) << ",\"sigma2\":" << list(r.sigma2, number)
      << ",\"rank1\":" << list(r.rank1, ints) << ",\"rank2\":" << list(r.rank2, ints)
      << ",\"svcca_dims1\":" << list(r.svcca_dims1, ints) << ",\"svcca_dims2\":" << list(r.svcca_dims2, ints)
      << ",\"fills1\":" << list(r.fills1, bools) << ",\"fills2\":" << list(r.fills2, bools) << ",\"measures\":{";
  for (size_t s = 0; s < settings.measures.size(); ++s) {
    out << (s ? "," : "") << "\"" << full_measure_id(settings.measures[s]) << "\":{\"values\":[";
    for (size_t i = 0; i < m; ++i) {
      out << (i ? "," : "") << "[";
      for (size_t j = 0; j < p; ++j) {
        const auto& v = r.values[s][i * p + j];
        out << (j ? "," : "") << (v ? number(*v) : "null");
      }
      out << "]";
    }
    out << "],\"reasons\":[";
    for (size_t i = 0; i < m; ++i) {
      out << (i ? "," : "") << "[";
      for (size_t j = 0; j < p; ++j) {
        const std::string& why = r.reasons[s][i * p + j];
        out << (j ? "," : "") << (why.empty() ? "null" : "\"" + why + "\"");
      }
      out << "]";
    }
    out << "]}";
  }
  out << "}}\n";
  std::cout << out.str();
  return 0;
}

// One layer's eigendecomposition and one pair's eigen work at each N, on
// random full-rank Grams (the worst case: r = N - 1), op by op as
// compute_full_batch runs them; then (unless --whole 0) compute_full_batch
// itself for one layer per side with each measure alone.
int bench(std::map<std::string, std::string>& opt) {
  const c10::Device device = parse_device(opt.count("device") ? opt["device"] : "cpu");
  const bool whole = !opt.count("whole") || opt["whole"] != "0";
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  auto clock = [&](auto&& fn) {
    sync();
    const auto start = std::chrono::steady_clock::now();
    fn();
    sync();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  for (const std::string& text : split(opt.count("n") ? opt["n"] : "1000", ',')) {
    const int64_t n = std::stoll(text);
    at::manual_seed(1);
    std::vector<FullGram> k, l;
    k.push_back(make_gram(at::randn({n, n + 8}, at::kDouble), 32, device));
    l.push_back(make_gram(at::randn({n, n + 8}, at::kDouble), 32, device));
    const auto options = at::TensorOptions().dtype(at::kDouble).device(device);
    at::Tensor kc = k[0].gram.to(at::kDouble);
    kc = kc - kc.mean(0, true) - kc.mean(1, true) + kc.mean();
    std::tuple<at::Tensor, at::Tensor> eig;
    const double eigh_ms = clock([&] { eig = at::linalg_eigh(kc); });
    const at::Tensor u = std::get<1>(eig).slice(1, 1, n).contiguous();
    const at::Tensor v = std::get<0>(at::linalg_qr(at::randn({n, n - 1}, options))).contiguous();
    at::Tensor mxy;
    const double mm_ms = clock([&] { mxy = at::mm(u.t(), v); });
    // As singular_values() in fullbatch.cc: eigvalsh of the smaller Gram of Uxᵀ Uy.
    const double svd_ms =
        clock([&] { at::linalg_eigvalsh(at::mm(mxy, mxy.t())).clamp_min_(0.0).sqrt_().sum().item<double>(); });
    std::printf(
        "{\"n\":%lld,\"threads\":%d,\"device\":\"%s\",\"eigh_ms\":%.1f,\"pair_mm_ms\":%.1f,\"pair_singular_values_ms\":"
        "%.1f",
        static_cast<long long>(n), at::get_num_threads(), device.str().c_str(), eigh_ms, mm_ms, svd_ms);
    if (whole) {
      for (FullMeasure measure :
           {FullMeasure::kCka, FullMeasure::kLinearCkaBiased, FullMeasure::kRbfCka, FullMeasure::kRbfCkaBiased,
            FullMeasure::kDcor, FullMeasure::kCcaRho, FullMeasure::kCcaR2, FullMeasure::kSvcca,
            FullMeasure::kProcrustes, FullMeasure::kRsa, FullMeasure::kMknn}) {
        FullBatchSettings settings;
        settings.measures = {measure};
        settings.cca_ridge = 0.1;  // every pair computed (no rank-deficient shortcut)
        const double ms = clock([&] { compute_full_batch(k, l, settings, nullptr, nullptr); });
        std::printf(",\"%s_ms\":%.1f", full_measure_id(measure), ms);
      }
    }
    std::printf("}\n");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tcka::tools::ToolArgs args = tcka::tools::parse_tool_args(argc, argv);
  std::vector<std::string>& positional = args.positional;
  std::map<std::string, std::string>& opt = args.opt;
  try {
    if (opt.count("threads")) {
      at::set_num_threads(std::stoi(opt["threads"]));
      set_blas_threads(std::stoi(opt["threads"]));
    }
    if (!positional.empty() && positional[0] == "measures") return measures(opt);
    if (!positional.empty() && positional[0] == "bench") return bench(opt);
    std::fprintf(stderr,
                 "usage: fullbatch_check measures --n N --x a.f64:D[,...] (--y b.f64:D[,...] | --shared 1) ...\n"
                 "       fullbatch_check bench --n 1000,2000 [--threads 1]\n");
    return 2;
  } catch (const CKAError& e) {
    std::fprintf(stderr, "%s: %s\n", e.code().c_str(), e.what());
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "%s\n", shorten_message(e.what_without_backtrace()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
  }
  return 1;
}
