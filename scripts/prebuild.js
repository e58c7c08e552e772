#!/usr/bin/env node
'use strict';
// npm run prebuild: builds the Node-API binary with prebuildify into
// prebuilds/<platform>-<arch>/ against the system's libtorch (or $LIBTORCH,
// $Torch_DIR), and records that libtorch beside it in
// libtorch.json. scripts/install.js uses the binary only where the libtorch
// found at install time is the same; the addon checks it again at load.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { findLibtorch, FOUND_ENV } = require('./find-libtorch');
const { buildJobs } = require('./install');

const ROOT = path.join(__dirname, '..');

function main() {
  // The system's libtorch unless LIBTORCH names another (a Python torch on
  // PATH would otherwise come first, and its folder would end up in the RPATH).
  if (!process.env.LIBTORCH && !process.env.Torch_DIR) process.env.LIBTORCH = 'system';
  const found = findLibtorch();
  if (!found.version) throw new Error(`Could not read the libtorch version from the headers in ${found.root}`);
  const dir = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
  fs.rmSync(dir, { recursive: true, force: true });
  process.stderr.write(`prebuild: libtorch ${found.version} from ${found.root} (${found.source})\n`);
  const prebuildify = require.resolve('prebuildify/bin.js');
  const run = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc'], {
    cwd: ROOT,
    stdio: 'inherit',
    env: {
      ...process.env,
      PATH: `${path.join(ROOT, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH}`,
      JOBS: buildJobs(), // prebuildify runs node-gyp without --jobs; node-gyp reads JOBS
      [FOUND_ENV]: JSON.stringify(found),
    },
  });
  if (run.status !== 0) throw new Error(`prebuildify failed (exit ${run.status})`);
  const record = {
    version: found.version,
    abi: found.abi,
    cuda: found.cuda,
    source: found.source,
    libDir: found.libDir,
    napi: 8,
    node: process.version,
    date: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(dir, 'libtorch.json'), `${JSON.stringify(record, null, 2)}\n`);
  for (const file of fs.readdirSync(dir)) {
    process.stderr.write(
      `prebuild: ${path.relative(ROOT, path.join(dir, file))} (${fs.statSync(path.join(dir, file)).size} bytes)\n`,
    );
  }
}

try {
  main();
} catch (error) {
  process.stderr.write(`prebuild: ${error.message}\n`);
  process.exit(1);
}
