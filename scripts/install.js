#!/usr/bin/env node
'use strict';
// npm's install step for torch-cka: use the prebuilt binary when it fits the
// libtorch found on this machine, otherwise build from source with node-gyp.
//
// A prebuilt binary fits when there is one for this platform and architecture
// (prebuilds/<platform>-<arch>/), the libtorch it was built for (its
// libtorch.json: version, C++11 ABI, CUDA or not) is the libtorch found here
// (scripts/find-libtorch.js: $LIBTORCH, $Torch_DIR, a Python torch, the
// system), and it loads. --build-from-source (npm_config_build_from_source)
// or TORCH_CKA_BUILD_FROM_SOURCE=1 always builds.
//
// In a clone that was built already, a build that is up to date (the same
// libtorch, the same sources and build files: build/torch-cka-build.json
// records both) is kept: `npx torch-cka` installs the clone into npx's cache,
// which runs this script again, and must not compile a second time.
//
// Every decision is printed on one "torch-cka:" line, so that a log shows
// whether a compiler ran.
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { findLibtorch, FOUND_ENV } = require('./find-libtorch');

const ROOT = path.join(__dirname, '..');
const BUILT = path.join('build', 'Release', 'torch_cka.node');
const STAMP = path.join('build', 'torch-cka-build.json');
// What a source build compiles: a change to any of these makes a build stale.
const BUILD_INPUTS = ['binding.gyp', 'native'];
// Peak memory of one compiler process: 0.62 GB for taps.cc, the largest
// (GNU time's maximum resident size, g++ 12, libtorch 1.13); jobs are capped
// so that they fit, with room for the rest of the machine.
const MEMORY_PER_JOB = 2 ** 30;
const say = (line) => process.stderr.write(`torch-cka: ${line}\n`);
const release = (version) => {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(String(version ?? '').trim());
  return match ? `${match[1]}.${match[2]}.${match[3] ?? '0'}` : null;
};

/** The prebuilt binary for this platform and its libtorch.json, or null. */
function findPrebuild(root = ROOT) {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let files;
  try {
    files = fs.readdirSync(dir);
  } catch {
    return null;
  }
  const binary = files.find((f) => f.endsWith('.node'));
  if (!binary) return null;
  let record = null;
  try {
    record = JSON.parse(fs.readFileSync(path.join(dir, 'libtorch.json'), 'utf8'));
  } catch {
    // a prebuild without its record cannot be matched
  }
  return { file: path.join(dir, binary), record };
}

/**
 * Why the prebuilt binary does not fit the libtorch found, or null if it does.
 * `record` is its libtorch.json, `found` what find-libtorch.js found.
 */
function mismatch(record, found) {
  if (!record) return 'it has no libtorch.json saying which libtorch it was built for';
  if (release(record.version) === null || release(record.version) !== release(found.version)) {
    return `it was built for libtorch ${record.version}, and this machine has ${found.version ?? 'an unknown version'} (${found.source}, ${found.root})`;
  }
  if (record.abi !== null && found.abi !== null && String(record.abi) !== String(found.abi)) {
    return `it was built with _GLIBCXX_USE_CXX11_ABI=${record.abi}, and this libtorch uses ${found.abi}`;
  }
  if (Boolean(record.cuda) !== Boolean(found.cuda)) {
    return `it was built for a ${record.cuda ? 'CUDA' : 'CPU-only'} libtorch, and this one is ${found.cuda ? 'a CUDA' : 'CPU-only'} build`;
  }
  return null;
}

/** Loads the binary in a child process (a failed dlopen must not end this one); null if it loads, else why not. */
function loadError(file) {
  const script = `try { require(${JSON.stringify(file)}).runtimeInfo(); } catch (e) { console.error(e.message); process.exit(1); }`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000 });
  if (run.status === 0) return null;
  return (run.stderr || run.error?.message || `exit ${run.status}`).trim().split('\n')[0];
}

/** Every file under `dir` (relative to `root`), sorted. */
function listFiles(root, dir) {
  const full = path.join(root, dir);
  if (!fs.statSync(full).isDirectory()) return [dir];
  return fs
    .readdirSync(full)
    .sort()
    .flatMap((name) => listFiles(root, path.join(dir, name)));
}

/**
 * What a source build was made from: the libtorch it was compiled and linked
 * against, and a SHA-256 over the sources and build files. Two builds with
 * equal keys are the same build.
 */
function buildKey(found, root = ROOT) {
  const hash = crypto.createHash('sha256');
  for (const file of BUILD_INPUTS.flatMap((entry) => listFiles(root, entry))) {
    hash.update(`${file.split(path.sep).join('/')}\0`);
    hash.update(fs.readFileSync(path.join(root, file)));
    hash.update('\0');
  }
  let nodeAddonApi = null;
  try {
    nodeAddonApi = require(require.resolve('node-addon-api/package.json', { paths: [root] })).version;
  } catch {
    // resolved again by the build, which fails with its own message
  }
  // The library itself, not the folder it was found through: Debian's Python
  // torch links its lib/ to the system's libtorch, so either is the same build.
  let library = path.join(found.libDir, 'libtorch.so');
  try {
    library = fs.realpathSync(library);
  } catch {
    // kept as found
  }
  const { version, abi, cuda } = found;
  return {
    libtorch: { version, library, abi, cuda },
    napi: 8,
    nodeAddonApi,
    sources: hash.digest('hex'),
  };
}

/**
 * Why the build in build/Release cannot be kept, or null if it is up to date:
 * built here from the same sources against the same libtorch, and it loads.
 */
function staleBuild(found, root = ROOT) {
  if (!fs.existsSync(path.join(root, BUILT))) return `there is no ${BUILT}`;
  let recorded;
  try {
    recorded = JSON.parse(fs.readFileSync(path.join(root, STAMP), 'utf8'));
  } catch {
    return `${STAMP} is missing or unreadable`;
  }
  const current = buildKey(found, root);
  if (JSON.stringify(recorded.libtorch) !== JSON.stringify(current.libtorch)) {
    return `it was built against libtorch ${recorded.libtorch?.version} (${recorded.libtorch?.library})`;
  }
  if (recorded.sources !== current.sources || recorded.nodeAddonApi !== current.nodeAddonApi) {
    return 'the sources or build files changed since';
  }
  return loadError(path.join(root, BUILT));
}

/** Records what build/Release was built from (see staleBuild). */
function writeStamp(found, root = ROOT) {
  fs.writeFileSync(path.join(root, STAMP), `${JSON.stringify(buildKey(found, root), null, 2)}\n`);
}

/** node-gyp's --jobs: JOBS or npm's jobs setting if given, else one per core, as many as memory holds. */
function buildJobs() {
  const asked = process.env.JOBS || process.env.npm_config_jobs;
  if (asked) return asked;
  const byMemory = Math.floor(os.totalmem() / MEMORY_PER_JOB);
  return String(Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, byMemory)));
}

function buildFromSource(found) {
  // npm puts its own node-gyp on PATH for install scripts (npm_config_node_gyp names it).
  const nodeGyp = process.env.npm_config_node_gyp;
  const gypArgs = ['rebuild', '--jobs', buildJobs()];
  const [command, args] = nodeGyp
    ? [process.execPath, [nodeGyp, ...gypArgs]]
    : [process.platform === 'win32' ? 'node-gyp.cmd' : 'node-gyp', gypArgs];
  const started = Date.now();
  const run = spawnSync(command, args, {
    cwd: ROOT,
    stdio: 'inherit',
    env: { ...process.env, [FOUND_ENV]: JSON.stringify(found) },
  });
  if (run.error) {
    say(`could not start node-gyp (${run.error.message}); install it with npm install -g node-gyp`);
    return 1;
  }
  if (run.status !== 0) {
    say(
      `the source build failed (node-gyp exit ${run.status}); see the errors above, and Troubleshooting in docs/install.md of the torch-cka repository`,
    );
    return run.status || 1;
  }
  writeStamp(found);
  say(`built ${BUILT} in ${((Date.now() - started) / 1000).toFixed(0)} s with ${gypArgs[2]} parallel jobs`);
  return 0;
}

function main() {
  let found;
  try {
    found = findLibtorch();
  } catch (error) {
    process.stderr.write(`\n${error.message}\n\n`);
    return 1;
  }
  const forced =
    /^(1|true)$/i.test(process.env.TORCH_CKA_BUILD_FROM_SOURCE ?? '') ||
    /^(true|torch-cka)$/i.test(process.env.npm_config_build_from_source ?? '');
  if (!forced) {
    const stale = staleBuild(found);
    if (stale === null) {
      say(`${BUILT} is up to date (libtorch ${found.version} in ${found.root}, the same sources); nothing compiled`);
      return 0;
    }
  }
  const prebuild = forced ? null : findPrebuild();
  let why = forced
    ? 'asked to (--build-from-source)'
    : `there is no prebuilt binary for ${process.platform}-${process.arch}`;
  if (prebuild) {
    why = mismatch(prebuild.record, found);
    if (why === null) {
      const error = loadError(prebuild.file);
      if (error === null) {
        say(
          `using the prebuilt binary ${path.relative(ROOT, prebuild.file)} for libtorch ${found.version} ` +
            `(${found.source}, ${found.libDir}); nothing compiled`,
        );
        return 0;
      }
      why = `it does not load here (${error})`;
    }
    why = `not using the prebuilt binary: ${why}`;
  }
  say(
    `building from source against libtorch ${found.version ?? '(unknown version)'} in ${found.root} (${found.source}): ${why}`,
  );
  return buildFromSource(found);
}

module.exports = { findPrebuild, mismatch, buildKey, staleBuild, buildJobs, writeStamp };

if (require.main === module) process.exit(main());
