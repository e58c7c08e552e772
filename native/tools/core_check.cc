// Plain C++ check and bench of the libtorch core, for machines without Node
// (a GPU box, a sanitizer build).
//
//   tcka-core-check selftest [--device cuda]
//   tcka-core-check compare M1.pt M2.pt --shape 3,32,32 [--batch 32] [--batches 4]
//       [--device cpu|cuda] [--check-device cpu] [--layers1 a,b] [--layers2 c,d]
//       [--threads N] [--workers N] [--concurrent 0|1] [--repeat 3] [--check-batches 2] [--json out.json]
//   tcka-core-check bench M1.pt M2.pt --shape 256 [--batch 512] [--batches 2] [--threads 1] [--workers 1]
//       [--layers1 a,b] [--layers2 c,d] [--repeat 3] [--json out.json]
//
// selftest compares the all-pairs HSIC against plain float64 loops of
// eq. 3; compare times the bare forward passes of the models as they are (the
// floor: no taps, inference mode, one after the other) against a whole CKA run
// on the same inputs, and with --check-device compares the matrix with one
// computed on another device over the first --check-batches batches. bench
// (CPU) is the performance breakdown: the floor, our engine (models in turn)
// and the peer-like baseline of bench_kit.h, our time split by EngineTimes,
// and the arithmetic limit from the BLAS rates at the run's sizes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "bench_kit.h"
#include "blas.h"
#include "device.h"
#include "engine.h"
#include "errors.h"
#include "tool_args.h"

using namespace tcka;
using tcka::tools::split;

namespace {

// Eq. 3 of Nguyen et al. written as plainly as possible, in float64 loops.
double naive_hsic(const std::vector<double>& k, const std::vector<double>& l, int64_t n) {
  double trace = 0, sum_k = 0, sum_l = 0, rows = 0;
  for (int64_t i = 0; i < n; ++i) {
    double rk = 0, rl = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      trace += k[i * n + j] * l[j * n + i];
      rk += k[i * n + j];
      rl += l[i * n + j];
    }
    sum_k += rk;
    sum_l += rl;
    rows += rk * rl;
  }
  const double nd = static_cast<double>(n);
  return (trace + sum_k * sum_l / ((nd - 1) * (nd - 2)) - 2.0 / (nd - 2) * rows) / (nd * (nd - 3));
}

std::vector<double> gram64(const at::Tensor& x) {
  at::Tensor xd = x.to(at::kDouble).cpu().reshape({x.size(0), -1});
  at::Tensor g = at::mm(xd, xd.t()).contiguous();
  return std::vector<double>(g.data_ptr<double>(), g.data_ptr<double>() + g.numel());
}

int selftest(const c10::Device& device) {
  at::manual_seed(7);
  int failures = 0;
  auto expect = [&](bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += ok ? 0 : 1;
  };
  const int64_t n = 24;
  std::vector<at::Tensor> xs = {at::randn({n, 10}) + 100.0, at::randn({n, 3, 4}), at::randn({n, 7})};
  at::Tensor q = std::get<0>(at::linalg_qr(at::randn({10, 10}, at::kDouble))).to(at::kFloat);
  std::vector<at::Tensor> ys = {xs[0].matmul(q) * 3.0, at::randn({n, 5}), xs[2] * -2.0 + 5.0};
  auto batch = [&](const std::vector<at::Tensor>& feats) {
    GramBatch b{at::empty({static_cast<int64_t>(feats.size()), n, n}, at::TensorOptions().device(device)),
                at::empty({static_cast<int64_t>(feats.size())}, at::TensorOptions().device(device))};
    for (size_t i = 0; i < feats.size(); ++i) {
      reduce_to_gram(feats[i].to(device), n, at::kFloat, b.grams[i], b.mean_norms[i]);
    }
    return b;
  };
  HsicAccumulator acc(3, 3, device, at::kDouble);
  BatchHsic h = acc.compute(batch(xs), batch(ys), n);
  at::Tensor xy = h.xy.cpu(), xx = h.xx.cpu(), yy = h.yy.cpu();
  double worst = 0;
  for (int a = 0; a < 3; ++a) {
    auto ka = gram64(xs[a]);
    const double ref_xx = naive_hsic(ka, ka, n);
    worst = std::max(worst, std::abs(xx[a].item<double>() - ref_xx) / std::abs(ref_xx));
    for (int b = 0; b < 3; ++b) {
      auto lb = gram64(ys[b]);
      const double ref = naive_hsic(ka, lb, n);
      const double scale = std::sqrt(naive_hsic(ka, ka, n) * naive_hsic(lb, lb, n));
      worst = std::max(worst, std::abs(xy[a][b].item<double>() - ref) / scale);
    }
  }
  expect(worst < 1e-5, "all-pairs HSIC matches float64 loops (worst relative error " + std::to_string(worst) + ")");
  const double cka_q = xy[0][0].item<double>() / std::sqrt(xx[0].item<double>() * yy[0].item<double>());
  expect(std::abs(cka_q - 1) < 1e-5, "CKA(X + 100, 3 X Q) = 1 (got " + std::to_string(cka_q) + ")");
  const double cka_s = xy[2][2].item<double>() / std::sqrt(xx[2].item<double>() * yy[2].item<double>());
  expect(std::abs(cka_s - 1) < 1e-5, "CKA(X, -2 X + 5) = 1 (got " + std::to_string(cka_s) + ")");
  std::vector<at::Tensor> constant = {at::full({n, 6}, 0.1f), at::zeros({n, 2})};
  HsicAccumulator acc2(2, 3, device, at::kDouble);
  BatchHsic c = acc2.compute(batch(constant), batch(ys), n);
  expect(c.xx.cpu().abs().max().item<double>() == 0.0 && c.xy.cpu().abs().max().item<double>() == 0.0,
         "constant layers contribute exactly 0");
  return failures;
}

struct Timing {
  double median = 0, min = 0, max = 0;
};

Timing summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

int compare(std::map<std::string, std::string> opt, const std::vector<std::string>& files) {
  const std::string device = opt.count("device") ? opt["device"] : "cpu";
  const int64_t batch = opt.count("batch") ? std::stoll(opt["batch"]) : 32;
  const int64_t batches = opt.count("batches") ? std::stoll(opt["batches"]) : 4;
  const int repeat = opt.count("repeat") ? std::stoi(opt["repeat"]) : 3;
  const int threads = opt.count("threads") ? std::stoi(opt["threads"]) : at::get_num_threads();
  at::set_num_threads(threads);
  set_blas_threads(threads);
  std::vector<int64_t> shape = {batch};
  for (const auto& s : split(opt.count("shape") ? opt["shape"] : "3,32,32", ',')) shape.push_back(std::stoll(s));

  at::manual_seed(0);
  std::vector<at::Tensor> inputs;
  for (int64_t b = 0; b < batches; ++b) inputs.push_back(at::randn(shape));

  CKAConfig config;
  if (opt.count("layers1")) config.layers1 = split(opt["layers1"], ',');
  if (opt.count("layers2")) config.layers2 = split(opt["layers2"], ',');
  config.threads = threads;
  const bool gpu = device != "cpu";
  config.concurrent = opt.count("concurrent") ? opt["concurrent"] == "1" : gpu;
  if (opt.count("workers")) config.workers = std::stoi(opt["workers"]);

  auto load_pair = [&](const std::string& dev, bool instrument) {
    auto m1 = Model::load(files[0], dev, instrument);
    auto m2 = Model::load(files[1], dev, instrument);
    return std::make_pair(m1, m2);
  };
  // The floor runs the models as they are (no taps), in inference mode, one after the other.
  auto plain = load_pair(device, false);
  auto tapped = load_pair(device, true);
  const c10::Device d = tapped.first->device();
  std::vector<at::Tensor> on_device;
  for (const auto& x : inputs) on_device.push_back(x.to(d));

  auto floor_once = [&] {
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& x : on_device) {
      plain.first->forward_only({x}, "floor");
      plain.second->forward_only({x}, "floor");
    }
    synchronize(d);
    return seconds_since(t0);
  };
  EngineStats last_stats;
  auto compare_once = [&](const std::vector<at::Tensor>& data, std::shared_ptr<Model> m1, std::shared_ptr<Model> m2,
                          CKAResult* out) {
    CKAEngine engine(std::move(m1), std::move(m2), config);
    auto t0 = std::chrono::steady_clock::now();
    // All batches in one call: `workers` of them in flight (on a GPU, each on a stream of its own).
    std::vector<BatchInput> all;
    for (const auto& x : data) all.push_back({{x}, {}, false});
    std::exception_ptr error;
    engine.steps(all, &error);
    if (error) std::rethrow_exception(error);
    *out = engine.result();  // reads the sums back: waits for the device
    last_stats = engine.stats();
    return seconds_since(t0);
  };

  std::vector<double> floor_s, cka_s, ratio;
  CKAResult result;
  floor_once();  // warm-up runs, not counted
  compare_once(on_device, tapped.first, tapped.second, &result);
  for (int r = 0; r < repeat; ++r) {
    const double f = floor_once();
    const double c = compare_once(on_device, tapped.first, tapped.second, &result);
    floor_s.push_back(f);
    cka_s.push_back(c);
    ratio.push_back(c / f);
  }
  const Timing f = summarize(floor_s), c = summarize(cka_s), q = summarize(ratio);
  std::printf("models: %s vs %s, device %s, threads %d, %s, BLAS %s, %lld batches of %lld, layers %zu x %zu\n",
              files[0].c_str(), files[1].c_str(), device.c_str(), threads,
              config.concurrent ? "both models at once" : "models in turn", blas_description().c_str(),
              static_cast<long long>(batches), static_cast<long long>(batch), result.rows1.size(), result.rows2.size());
  std::printf("floor   (forward only) median %.4f s (min %.4f, max %.4f) over %d runs after 1 warm-up\n", f.median,
              f.min, f.max, repeat);
  std::printf("compare (CKA)          median %.4f s (min %.4f, max %.4f)\n", c.median, c.min, c.max);
  std::printf("ratio compare/floor    median %.3f (min %.3f, max %.3f), per run\n", q.median, q.min, q.max);
  {
    const EngineTimes& t = last_stats.times;
    const double per = t.batches > 0 ? 1.0 / static_cast<double>(t.batches) : 0.0;
    std::printf(
        "last run: %d batch(es) in flight, %d thread(s) each; per batch (ms, summed over workers): forward %.2f, taps "
        "%.2f, grams %.2f, pairs %.2f, wait %.2f; wall per batch %.2f\n",
        last_stats.workers, last_stats.threads, t.forward_ms * per, t.tap_ms * per, t.gram_ms * per, t.pair_ms * per,
        t.wait_ms * per, t.wall_ms * per);
  }

  double max_diff = -1;
  if (opt.count("check-device")) {
    // The same batches (the first --check-batches of them) on both devices.
    const int64_t count = std::min<int64_t>(batches, opt.count("check-batches") ? std::stoll(opt["check-batches"]) : 2);
    const std::string other_device = opt["check-device"];
    auto other = load_pair(other_device, true);
    std::vector<at::Tensor> here(on_device.begin(), on_device.begin() + count), there;
    for (const auto& x : here) there.push_back(x.to(other.first->device()));
    CKAResult a, b;
    compare_once(here, tapped.first, tapped.second, &a);
    compare_once(there, other.first, other.second, &b);
    max_diff = 0;
    const auto& va = a.matrices.front();
    const auto& vb = b.matrices.front();
    for (size_t i = 0; i < va.size(); ++i) {
      if (va[i].has_value() != vb[i].has_value()) {
        max_diff = INFINITY;
        break;
      }
      if (va[i]) max_diff = std::max(max_diff, std::abs(*va[i] - *vb[i]));
    }
    std::printf("max |CKA(%s) - CKA(%s)| = %.3g over %lld batch(es), %zu values\n", device.c_str(),
                other_device.c_str(), max_diff, static_cast<long long>(count), va.size());
  }
  if (opt.count("json")) {
    std::ofstream out(opt["json"]);
    out << "{\"device\":\"" << device << "\",\"threads\":" << threads
        << ",\"concurrent\":" << (config.concurrent ? "true" : "false") << ",\"workers\":" << last_stats.workers
        << ",\"forward_ms\":" << last_stats.times.forward_ms << ",\"tap_ms\":" << last_stats.times.tap_ms
        << ",\"gram_ms\":" << last_stats.times.gram_ms << ",\"pair_ms\":" << last_stats.times.pair_ms
        << ",\"wait_ms\":" << last_stats.times.wait_ms << ",\"timed_batches\":" << last_stats.times.batches
        << ",\"batch\":" << batch << ",\"batches\":" << batches << ",\"layers1\":" << result.rows1.size()
        << ",\"layers2\":" << result.rows2.size() << ",\"floor_s\":" << f.median << ",\"compare_s\":" << c.median
        << ",\"ratio\":" << q.median << ",\"ratio_min\":" << q.min << ",\"ratio_max\":" << q.max
        << ",\"max_diff\":" << max_diff << "}\n";
  }
  return max_diff > 1e-4 ? 1 : 0;
}

// The median of each EngineTimes field over the runs.
EngineTimes median_times(const std::vector<EngineTimes>& runs) {
  auto median = [&](double EngineTimes::*field) {
    std::vector<double> v;
    for (const auto& t : runs) v.push_back(t.*field);
    return summarize(v).median;
  };
  EngineTimes out;
  out.forward_ms = median(&EngineTimes::forward_ms);
  out.tap_ms = median(&EngineTimes::tap_ms);
  out.gram_ms = median(&EngineTimes::gram_ms);
  out.pair_ms = median(&EngineTimes::pair_ms);
  out.wait_ms = median(&EngineTimes::wait_ms);
  out.wall_ms = median(&EngineTimes::wall_ms);
  out.batches = runs.empty() ? 0 : runs.front().batches;
  return out;
}

int bench(std::map<std::string, std::string> opt, const std::vector<std::string>& files) {
  const int64_t batch = opt.count("batch") ? std::stoll(opt["batch"]) : 512;
  const int64_t batches = opt.count("batches") ? std::stoll(opt["batches"]) : 2;
  const int repeat = std::max(1, opt.count("repeat") ? std::stoi(opt["repeat"]) : 3);
  const int threads = opt.count("threads") ? std::stoi(opt["threads"]) : 1;
  at::set_num_threads(threads);
  set_blas_threads(threads);
  std::vector<int64_t> shape = {batch};
  for (const auto& s : split(opt.count("shape") ? opt["shape"] : "256", ',')) shape.push_back(std::stoll(s));

  at::manual_seed(0);
  std::vector<at::Tensor> inputs;
  for (int64_t b = 0; b < batches; ++b) inputs.push_back(at::randn(shape));

  CKAConfig config;
  if (opt.count("layers1")) config.layers1 = split(opt["layers1"], ',');
  if (opt.count("layers2")) config.layers2 = split(opt["layers2"], ',');
  config.threads = threads;
  config.concurrent = false;
  config.workers = opt.count("workers") ? std::stoi(opt["workers"]) : 1;

  auto plain1 = Model::load(files[0], "cpu", false), plain2 = Model::load(files[1], "cpu", false);
  auto tapped1 = Model::load(files[0], "cpu", true), tapped2 = Model::load(files[1], "cpu", true);

  auto floor_once = [&] {
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& x : inputs) {
      plain1->forward_only({x}, "floor");
      plain2->forward_only({x}, "floor");
    }
    return seconds_since(t0);
  };
  CKAResult result;
  EngineTimes times;
  int64_t reused = 0;
  auto ours_once = [&] {
    CKAEngine engine(tapped1, tapped2, config);
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& x : inputs) engine.step({x}, nullptr);
    result = engine.result();
    const double s = seconds_since(t0);
    const EngineStats stats = engine.stats();
    times = stats.times;
    reused = stats.reused_grams;
    return s;
  };
  PeerRun peer;
  auto peer_once = [&] {
    peer = peer_baseline(*tapped1, *tapped2, config.layers1, config.layers2, inputs, threads);
    return peer.seconds;
  };

  floor_once();  // warm-up runs, not counted
  ours_once();
  peer_once();
  std::vector<double> floor_s, ours_s, peer_s;
  std::vector<EngineTimes> ours_times;
  for (int r = 0; r < repeat; ++r) {
    floor_s.push_back(floor_once());
    ours_s.push_back(ours_once());
    ours_times.push_back(times);
    peer_s.push_back(peer_once());
  }
  const Timing f = summarize(floor_s), o = summarize(ours_s), p = summarize(peer_s);
  const EngineTimes t = median_times(ours_times);

  // d per row after flattening, from one extract of batch 0 (our rows: every call of a layer).
  const int64_t n = batch;
  std::map<std::string, int64_t> d1, d2;
  for (const auto& [name, x] : tapped1->extract({inputs[0]}, config.layers1)) d1[name] = x.numel() / n;
  for (const auto& [name, x] : tapped2->extract({inputs[0]}, config.layers2)) d2[name] = x.numel() / n;
  const double nn = static_cast<double>(n) * static_cast<double>(n);
  double gram_flops = 0;
  for (const auto& name : result.rows1) gram_flops += nn * static_cast<double>(d1[name]);
  for (const auto& name : result.rows2) gram_flops += nn * static_cast<double>(d2[name]);
  const int64_t m = static_cast<int64_t>(result.rows1.size()), q = static_cast<int64_t>(result.rows2.size());
  // The strict upper triangles of each pair of Grams, 2 FLOPs per multiply-add.
  const double pair_flops =
      static_cast<double>(m) * static_cast<double>(q) * static_cast<double>(n) * static_cast<double>(n - 1);

  const BlasRates rates = measure_blas_rates(n, m, q, threads);
  const double per_run = static_cast<double>(batches);
  const double limit_s = per_run * (gram_flops / (rates.ssyrk_gflops * 1e9) + pair_flops / (rates.dgemm_gflops * 1e9));

  // max |ours - peer| over the cells both have, matched by row name.
  std::map<std::string, size_t> index1, index2;
  for (size_t i = 0; i < result.rows1.size(); ++i) index1[result.rows1[i]] = i;
  for (size_t j = 0; j < result.rows2.size(); ++j) index2[result.rows2[j]] = j;
  const auto& ours = result.matrices.front();
  double max_diff = 0;
  int64_t common = 0, one_sided = 0;
  for (size_t i = 0; i < peer.rows1.size(); ++i) {
    for (size_t j = 0; j < peer.rows2.size(); ++j) {
      if (!index1.count(peer.rows1[i]) || !index2.count(peer.rows2[j])) continue;
      const auto& a = ours[index1[peer.rows1[i]] * result.rows2.size() + index2[peer.rows2[j]]];
      const double b = peer.cka[i * peer.rows2.size() + j];
      if (a.has_value() != !std::isnan(b)) {
        ++one_sided;
      } else if (a) {
        max_diff = std::max(max_diff, std::abs(*a - b));
        ++common;
      }
    }
  }

  const double per_batch = t.batches > 0 ? static_cast<double>(t.batches) : per_run;
  std::printf("models: %s vs %s, cpu, threads %d, BLAS %s, %lld batches of %lld, rows %lld x %lld (peer %zu x %zu)\n",
              files[0].c_str(), files[1].c_str(), threads, blas_description().c_str(), static_cast<long long>(batches),
              static_cast<long long>(batch), static_cast<long long>(m), static_cast<long long>(q), peer.rows1.size(),
              peer.rows2.size());
  std::printf("BLAS at n %lld, m %lld, p %lld, k %lld: ssyrk %.1f, sgemm %.1f, dgemm %.1f GFLOP/s\n",
              static_cast<long long>(rates.n), static_cast<long long>(rates.m), static_cast<long long>(rates.p),
              static_cast<long long>(rates.k), rates.ssyrk_gflops, rates.sgemm_gflops, rates.dgemm_gflops);
  std::printf("floor (forward only)   median %.4f s (min %.4f, max %.4f) over %d runs after 1 warm-up\n", f.median,
              f.min, f.max, repeat);
  std::printf("ours  (CKAEngine)      median %.4f s (min %.4f, max %.4f)\n", o.median, o.min, o.max);
  std::printf("peer  (pytorch-cka way) median %.4f s (min %.4f, max %.4f)\n", p.median, p.min, p.max);
  std::printf("ours/floor %.3f, ours/peer %.3f\n", o.median / f.median, o.median / p.median);
  std::printf(
      "ours per batch (EngineTimes over %lld batches, ms): forward %.2f, taps %.2f, grams %.2f, pairs %.2f, wait "
      "%.2f, wall %.2f\n",
      static_cast<long long>(t.batches), t.forward_ms / per_batch, t.tap_ms / per_batch, t.gram_ms / per_batch,
      t.pair_ms / per_batch, t.wait_ms / per_batch, t.wall_ms / per_batch);
  std::printf("FLOPs per batch: Grams %.4g (n²d summed over the rows; %lld Grams reused), pairs %.4g (m·p·n(n-1))\n",
              gram_flops, static_cast<long long>(reused), pair_flops);
  std::printf("arithmetic limit %.4f s (Grams / ssyrk + pairs / dgemm, %lld batches); (ours - floor)/limit %.3f\n",
              limit_s, static_cast<long long>(batches), (o.median - f.median) / limit_s);
  std::printf("max |CKA ours - CKA peer| = %.3g over %lld cells (%lld undefined on one side only)\n", max_diff,
              static_cast<long long>(common), static_cast<long long>(one_sided));

  if (opt.count("json")) {
    std::ofstream out(opt["json"]);
    out << "{\"threads\":" << threads << ",\"batch\":" << batch << ",\"batches\":" << batches << ",\"rows1\":" << m
        << ",\"rows2\":" << q << ",\"peer_rows1\":" << peer.rows1.size() << ",\"peer_rows2\":" << peer.rows2.size()
        << ",\"blas\":{\"ssyrk_gflops\":" << rates.ssyrk_gflops << ",\"sgemm_gflops\":" << rates.sgemm_gflops
        << ",\"dgemm_gflops\":" << rates.dgemm_gflops << ",\"n\":" << rates.n << ",\"m\":" << rates.m
        << ",\"p\":" << rates.p << ",\"k\":" << rates.k << "},\"floor_s\":" << f.median << ",\"ours_s\":" << o.median
        << ",\"peer_s\":" << p.median << ",\"ours_floor\":" << o.median / f.median
        << ",\"ours_peer\":" << o.median / p.median << ",\"times_ms\":{\"forward\":" << t.forward_ms
        << ",\"tap\":" << t.tap_ms << ",\"gram\":" << t.gram_ms << ",\"pair\":" << t.pair_ms
        << ",\"wait\":" << t.wait_ms << ",\"wall\":" << t.wall_ms << ",\"batches\":" << t.batches
        << "},\"gram_flops_per_batch\":" << gram_flops << ",\"pair_flops_per_batch\":" << pair_flops
        << ",\"limit_s\":" << limit_s << ",\"limit_ratio\":" << (o.median - f.median) / limit_s
        << ",\"max_diff_peer\":" << max_diff << ",\"cells\":" << common << ",\"one_sided\":" << one_sided << "}\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tcka::tools::ToolArgs args = tcka::tools::parse_tool_args(argc, argv);
  std::vector<std::string>& positional = args.positional;
  std::map<std::string, std::string>& opt = args.opt;
  try {
    if (!positional.empty() && positional[0] == "selftest") {
      const int failures = selftest(parse_device(opt.count("device") ? opt["device"] : "cpu"));
      std::printf("%d passed, %d failed\n", 4 - failures, failures);
      return failures == 0 ? 0 : 1;
    }
    if (positional.size() == 3 && positional[0] == "compare") {
      return compare(opt, {positional[1], positional[2]});
    }
    if (positional.size() == 3 && positional[0] == "bench") {
      return bench(opt, {positional[1], positional[2]});
    }
    std::fprintf(stderr,
                 "usage: tcka-core-check selftest | compare M1.pt M2.pt [--shape 3,32,32] ... | "
                 "bench M1.pt M2.pt [--shape 256] [--batch 512] ...\n");
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
