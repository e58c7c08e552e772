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

  // Both run on the main thread. While a worker_threads Worker is being
  // terminated its environment can no longer run JS, and every N-API call
  // fails (node-addon-api then throws Napi::Error): nothing is left to tell,
  // so such failures are dropped rather than let escape (which would abort).
  void OnOK() override {
    Napi::Env env = Env();
    Finish();
    try {
      try {
        deferred_.Resolve(to_js_(env, *result_));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      } catch (...) {
        deferred_.Reject(make_error(env, capture_current_exception()).Value());
      }
    } catch (...) {
      // The environment is shutting down.
    }
  }

  void OnError(const Napi::Error&) override {
    Finish();
    try {
      deferred_.Reject(make_error(Env(), error_).Value());
    } catch (...) {
      // The environment is shutting down.
    }
  }

 private:
  void Finish() {
    try {
      if (done_) done_();
    } catch (...) {
      // The environment is shutting down.
    }
  }

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

// A Promise that resolves to undefined once `work` has run off the main thread.
inline Napi::Promise StartVoid(Napi::Env env, std::function<void()> work) {
  return PromiseWorker<bool>::Start(
      env,
      [work = std::move(work)] {
        work();
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

}  // namespace tcka::addon
