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
// Every decision is printed on one "torch-cka:" line, so that a log shows
// whether a compiler ran.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { findLibtorch, HOW_TO_INSTALL } = require('./find-libtorch');

const ROOT = path.join(__dirname, '..');
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

function buildFromSource() {
  // npm puts its own node-gyp on PATH for install scripts (npm_config_node_gyp names it).
  const nodeGyp = process.env.npm_config_node_gyp;
  const [command, args] = nodeGyp
    ? [process.execPath, [nodeGyp, 'rebuild']]
    : [process.platform === 'win32' ? 'node-gyp.cmd' : 'node-gyp', ['rebuild']];
  const run = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit' });
  if (run.error) {
    say(`could not start node-gyp (${run.error.message}); install it with npm install -g node-gyp`);
    return 1;
  }
  if (run.status !== 0) {
    say(
      `the source build failed (node-gyp exit ${run.status}); see the errors above. ${path.join(ROOT, 'README.md')} has a troubleshooting section`,
    );
    return run.status || 1;
  }
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
  return buildFromSource();
}

module.exports = { findPrebuild, mismatch };

if (require.main === module) process.exit(main());
