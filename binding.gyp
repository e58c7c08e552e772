{
  "targets": [
    {
      "target_name": "torch_cka",
      "sources": [
        "native/core/bench_kit.cc",
        "native/core/blas.cc",
        "native/core/device.cc",
        "native/core/distributed.cc",
        "native/core/engine.cc",
        "native/core/errors.cc",
        "native/core/full_run.cc",
        "native/core/fullbatch.cc",
        "native/core/gram.cc",
        "native/core/hsic.cc",
        "native/core/layer_select.cc",
        "native/core/model.cc",
        "native/core/model_file/classify.cc",
        "native/core/model_file/file.cc",
        "native/core/model_file/inspect.cc",
        "native/core/model_file/pickle.cc",
        "native/core/model_file/tensors.cc",
        "native/core/model_file/zip.cc",
        "native/core/taps.cc",
        "native/addon/addon.cc",
        "native/addon/bench_wrap.cc",
        "native/addon/cka_wrap.cc",
        "native/addon/convert.cc",
        "native/addon/group_wrap.cc",
        "native/addon/js_errors.cc",
        "native/addon/model_wrap.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/core",
        "<!@(node scripts/find-libtorch.js --include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations", "<!@(node scripts/find-libtorch.js --cflags)"],
      "libraries": ["<!@(node scripts/find-libtorch.js --libs)"],
      "ldflags": ["<!@(node scripts/find-libtorch.js --ldflags)"]
    }
  ]
}
