#!/usr/bin/env node
'use strict';
// Finds the libtorch to build against, for binding.gyp (node-gyp) and for
// people. Order: $LIBTORCH (a libtorch folder; `system` for the system's),
// $Torch_DIR (the folder of TorchConfig.cmake), a Python torch
// (torch.utils.cmake_prefix_path), the system (Debian/Ubuntu's libtorch-dev).
//
//   node scripts/find-libtorch.js --include | --cflags | --libs | --ldflags | --json
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const SYSTEM_LIB_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
];

const HOW_TO_INSTALL = `torch-cka needs libtorch (the C++ library of PyTorch). Install one of, then rebuild:
  Debian/Ubuntu:        sudo apt-get install libtorch-dev libgloo-dev && npm rebuild torch-cka
  a libtorch folder:    LIBTORCH=/path/to/libtorch npm rebuild torch-cka      (unzipped from pytorch.org, CPU or CUDA)
  a Python torch:       pip install torch && npm rebuild torch-cka          (found via torch.utils.cmake_prefix_path;
                        PYTHON=/path/to/python3 picks the interpreter)
  a CMake config:       Torch_DIR=/path/to/share/cmake/Torch npm rebuild torch-cka`;

/** TORCH_VERSION from the headers (include/torch/csrc/api/include/torch/version.h), or null. */
function headerVersion(includeDirs) {
  for (const dir of includeDirs) {
    for (const file of [path.join(dir, 'torch/version.h'), path.join(dir, 'torch/csrc/api/include/torch/version.h')]) {
      try {
        const match = /#define\s+TORCH_VERSION\s+\\?\s*"([^"]+)"/.exec(fs.readFileSync(file, 'utf8'));
        if (match) return match[1];
      } catch {
        // not here
      }
    }
  }
  return null;
}

const hasLib = (dir) => fs.existsSync(path.join(dir, 'libtorch.so')) || fs.existsSync(path.join(dir, 'libtorch.dylib'));

function fromRoot(root, source) {
  if (!fs.existsSync(path.join(root, 'include', 'torch'))) return null;
  const libDir = [path.join(root, 'lib'), ...SYSTEM_LIB_DIRS].find(hasLib);
  if (!libDir) return null;
  const configs = [
    path.join(root, 'share/cmake/Torch/TorchConfig.cmake'),
    path.join(libDir, 'cmake/Torch/TorchConfig.cmake'),
  ];
  const config = configs.find((file) => fs.existsSync(file));
  let abi = null;
  if (config) {
    const match = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(fs.readFileSync(config, 'utf8'));
    if (match) abi = match[1];
  }
  const cuda = fs.existsSync(path.join(libDir, 'libtorch_cuda.so'));
  // The compiler searches /usr/include by itself; naming it with -I would break
  // libstdc++'s #include_next.
  const includeDirs = [path.join(root, 'include'), path.join(root, 'include/torch/csrc/api/include')].filter(
    (dir) => dir !== '/usr/include',
  );
  return {
    source,
    root,
    version: headerVersion([path.join(root, 'include'), ...includeDirs]),
    includeDirs,
    libDir,
    abi,
    cuda,
    system: SYSTEM_LIB_DIRS.includes(libDir),
  };
}

function fromCmakeDir(dir, source) {
  // <prefix>/share/cmake/Torch or <prefix>/lib/<arch>/cmake/Torch: walk up to the prefix.
  let current = path.resolve(dir);
  for (let i = 0; i < 5; i += 1) {
    current = path.dirname(current);
    const found = fromRoot(current, source);
    if (found) return found;
  }
  return null;
}

function fromPython() {
  const pythons = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const python of pythons) {
    try {
      const script =
        'import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))';
      const [prefix, abi] = execFileSync(python, ['-c', script], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 60000,
      })
        .trim()
        .split('\n');
      if (prefix) {
        const found = fromRoot(path.resolve(prefix, '..', '..'), `Python torch (${python})`);
        if (found && found.abi === null && (abi === '0' || abi === '1')) found.abi = abi;
        if (found) return found;
      }
    } catch {
      // no torch in this interpreter
    }
  }
  return null;
}

// scripts/install.js and scripts/prebuild.js find libtorch once and hand the
// result to node-gyp's configure step in this variable: binding.gyp asks for
// four lists of flags, and each search would otherwise start Python again
// (about 1.5 s each).
const FOUND_ENV = 'TORCH_CKA_FOUND_LIBTORCH';

function findLibtorch() {
  const cached = process.env[FOUND_ENV];
  if (cached) {
    try {
      const found = JSON.parse(cached);
      if (found && Array.isArray(found.includeDirs) && typeof found.libDir === 'string') return found;
    } catch {
      // not ours: search as usual
    }
  }
  const { LIBTORCH, Torch_DIR: torchDir } = process.env;
  if (LIBTORCH === 'system') {
    // The distribution's libtorch even where a Python torch is on PATH (npm run prebuild).
    const found = fromRoot('/usr', 'system') || fromRoot('/usr/local', 'system');
    if (!found) throw new Error(`LIBTORCH=system, but /usr and /usr/local hold no libtorch.\n\n${HOW_TO_INSTALL}`);
    return found;
  }
  if (LIBTORCH) {
    const found = fromRoot(path.resolve(LIBTORCH), 'LIBTORCH');
    if (!found)
      throw new Error(`LIBTORCH=${LIBTORCH} does not hold include/torch and lib/libtorch.so.\n\n${HOW_TO_INSTALL}`);
    return found;
  }
  if (torchDir) {
    const found = fromCmakeDir(torchDir, 'Torch_DIR');
    if (!found) throw new Error(`Torch_DIR=${torchDir} is not inside a libtorch installation.\n\n${HOW_TO_INSTALL}`);
    return found;
  }
  const found = fromPython() || fromRoot('/usr', 'system') || fromRoot('/usr/local', 'system');
  if (!found) throw new Error(`libtorch was not found.\n\n${HOW_TO_INSTALL}`);
  return found;
}

function flags(found, what) {
  switch (what) {
    case '--include':
      return found.includeDirs;
    case '--cflags':
      return found.abi === null ? [] : [`-D_GLIBCXX_USE_CXX11_ABI=${found.abi}`];
    case '--libs': {
      const libs = [`-L${found.libDir}`, '-ltorch', '-ltorch_cpu', '-lc10'];
      // Nothing in our code refers to torch_cuda: without --no-as-needed the
      // linker would drop it and CUDA would never register.
      if (found.cuda) libs.push('-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed');
      return libs;
    }
    case '--ldflags':
      return found.system ? [] : [`-Wl,-rpath,${found.libDir}`];
    case '--json':
      return [JSON.stringify(found, null, 2)];
    default:
      throw new Error(`Unknown option ${what}; use --include, --cflags, --libs, --ldflags or --json`);
  }
}

module.exports = { findLibtorch, HOW_TO_INSTALL, FOUND_ENV };

if (require.main === module) {
  try {
    process.stdout.write(`${flags(findLibtorch(), process.argv[2] || '--json').join('\n')}\n`);
  } catch (error) {
    process.stderr.write(`\n${error.message}\n\n`);
    process.exit(1);
  }
}
