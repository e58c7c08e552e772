// A Promise-returning AsyncWorker: `run` executes off the main thread and
// must not touch JS; `to_js` turns its result into a value on the main
// thread. Errors of every kind reject the Promise with a coded JS error.
#pragma once

#include <napi.h>

#include <functional>
#include <optional>

#include "js_errors.h"

namespace tcka::addon {

template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Run = std::function<Result()>;
  using ToJs = std::function<Napi::Value(Napi::Env, Result&)>;
  using Done = std::function<void()>;

  // Queues the work and returns its Promise. `done` runs on the main thread
  // before the Promise settles, whatever the outcome.
  static Napi::Promise Start(Napi::Env env, Run run, ToJs to_js, Done done = nullptr) {
    auto* worker = new PromiseWorker(env, std::move(run), std::move(to_js), std::move(done));
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      result_.emplace(run_());
    } catch (...) {
      error_ = capture_current_exception();
      SetError(error_.message);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (done_) done_();
    try {
      deferred_.Resolve(to_js_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(make_error(env, capture_current_exception()).Value());
    }
  }

  void OnError(const Napi::Error&) override {
    if (done_) done_();
    deferred_.Reject(make_error(Env(), error_).Value());
  }

 private:
  PromiseWorker(Napi::Env env, Run run, ToJs to_js, Done done)
      : Napi::AsyncWorker(env, "torch-cka"),
        deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)),
        to_js_(std::move(to_js)),
        done_(std::move(done)) {}

  Napi::Promise::Deferred deferred_;
  Run run_;
  ToJs to_js_;
  Done done_;
  std::optional<Result> result_;
  ErrorInfo error_;
};

}  // namespace tcka::addon
