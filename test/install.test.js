'use strict';
// npm's install step (scripts/install.js): a build that is up to date is
// kept, anything that makes it stale (sources, build files, another libtorch,
// a missing record, a binary that does not load) builds again. The whole
// flow in a fresh clone (npm install, then npx torch-cka, which runs the
// install step again) is test/slow/clone.test.js.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const install = require('../scripts/install');
const { findLibtorch, FOUND_ENV } = require('../scripts/find-libtorch');

describe('install step (scripts/install.js)', () => {
  let work;
  let found;

  before(() => {
    found = findLibtorch();
  });
  beforeEach(() => {
    // A copy of what a source build reads, and of the addon built from it.
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-install-'));
    fs.copyFileSync(path.join(ROOT, 'binding.gyp'), path.join(work, 'binding.gyp'));
    fs.cpSync(path.join(ROOT, 'native'), path.join(work, 'native'), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(work, 'node_modules'));
    fs.mkdirSync(path.join(work, 'build', 'Release'), { recursive: true });
    // The addon this checkout loads: build/Release, or the prebuilt binary
    // (npm run prebuild, as .ci/run builds it, leaves no build/Release).
    fs.copyFileSync(require('node-gyp-build').resolve(ROOT), path.join(work, 'build', 'Release', 'torch_cka.node'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  it('keeps a build made from the same sources against the same libtorch', () => {
    install.writeStamp(found, work);
    assert.equal(install.staleBuild(found, work), null);
  });

  it('builds again when a source file, a header or binding.gyp changed', () => {
    install.writeStamp(found, work);
    for (const file of ['native/core/hsic.cc', 'native/core/taps.h', 'binding.gyp']) {
      const full = path.join(work, file);
      const before = fs.readFileSync(full);
      fs.appendFileSync(full, '\n');
      assert.match(install.staleBuild(found, work), /sources or build files changed/, file);
      fs.writeFileSync(full, before);
      assert.equal(install.staleBuild(found, work), null, file);
    }
    fs.writeFileSync(path.join(work, 'native', 'core', 'new.cc'), '// new\n');
    assert.match(install.staleBuild(found, work), /sources or build files changed/);
  });

  it('builds again for another libtorch (version, ABI, CUDA or library)', () => {
    install.writeStamp(found, work);
    const others = [
      { ...found, version: '2.5.1' },
      { ...found, abi: found.abi === '1' ? '0' : '1' },
      { ...found, cuda: !found.cuda },
      { ...found, libDir: work },
    ];
    for (const other of others) assert.match(install.staleBuild(other, work), /built against libtorch/);
  });

  it('builds again without the record or the binary, or when the binary does not load', () => {
    assert.match(install.staleBuild(found, work), /torch-cka-build\.json is missing/);
    install.writeStamp(found, work);
    fs.writeFileSync(path.join(work, 'build', 'Release', 'torch_cka.node'), 'not a shared object');
    assert.match(install.staleBuild(found, work), /invalid ELF header|not a shared object|file too short/i);
    fs.rmSync(path.join(work, 'build', 'Release', 'torch_cka.node'));
    assert.match(install.staleBuild(found, work), /there is no build\/Release\/torch_cka\.node/);
  });

  it('the record names the libtorch library itself, the Node-API version and a hash of the inputs', () => {
    const key = install.buildKey(found, work);
    assert.equal(key.libtorch.library, fs.realpathSync(path.join(found.libDir, 'libtorch.so')));
    assert.equal(key.libtorch.version, found.version);
    assert.equal(key.napi, 8);
    assert.match(key.sources, /^[0-9a-f]{64}$/);
    assert.deepEqual(install.buildKey(found, work), key);
  });

  it('node-gyp gets JOBS or npm_config_jobs when given, else one job per core that memory allows', () => {
    const saved = { JOBS: process.env.JOBS, npm: process.env.npm_config_jobs };
    try {
      delete process.env.JOBS;
      delete process.env.npm_config_jobs;
      const jobs = Number(install.buildJobs());
      assert.ok(jobs >= 1 && jobs <= os.cpus().length, String(jobs));
      process.env.npm_config_jobs = '3';
      assert.equal(install.buildJobs(), '3');
      process.env.JOBS = 'max';
      assert.equal(install.buildJobs(), 'max');
    } finally {
      for (const [name, value] of [
        ['JOBS', saved.JOBS],
        ['npm_config_jobs', saved.npm],
      ]) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it('run in a built package, it says the build is up to date and compiles nothing', () => {
    install.writeStamp(found, work);
    fs.mkdirSync(path.join(work, 'scripts'));
    for (const script of ['install.js', 'find-libtorch.js']) {
      fs.copyFileSync(path.join(ROOT, 'scripts', script), path.join(work, 'scripts', script));
    }
    // A node-gyp that fails: the step must not get as far as calling it.
    const shim = path.join(work, 'node-gyp-shim.js');
    fs.writeFileSync(shim, 'process.stderr.write("node-gyp was called\\n"); process.exit(7);\n');
    const runInstall = () =>
      spawnSync(process.execPath, [path.join(work, 'scripts', 'install.js')], {
        cwd: work,
        encoding: 'utf8',
        env: { ...process.env, npm_config_node_gyp: shim },
      });
    const run = runInstall();
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /torch-cka: build\/Release\/torch_cka\.node is up to date .*; nothing compiled/);
    assert.doesNotMatch(run.stderr, /node-gyp was called/);
    // Stale: the same step calls node-gyp (the shim, which fails).
    fs.appendFileSync(path.join(work, 'native', 'core', 'hsic.cc'), '\n');
    const stale = runInstall();
    assert.equal(stale.status, 7);
    assert.match(stale.stderr, /building from source .*: there is no prebuilt binary/);
    assert.match(stale.stderr, /node-gyp was called/);
  });

  it('find-libtorch.js takes what the install step found from TORCH_CKA_FOUND_LIBTORCH (no second search)', () => {
    const script = path.join(ROOT, 'scripts', 'find-libtorch.js');
    const given = { ...found, includeDirs: ['/given/include'], libDir: '/given/lib', abi: '0' };
    const run = (value) =>
      spawnSync(process.execPath, [script, '--include'], {
        encoding: 'utf8',
        env: { ...process.env, [FOUND_ENV]: value },
      });
    assert.equal(run(JSON.stringify(given)).stdout.trim(), '/given/include');
    // Anything else in the variable: the usual search.
    const searched = run('not json');
    assert.equal(searched.status, 0, searched.stderr);
    assert.deepEqual(searched.stdout.trim().split('\n'), found.includeDirs);
  });
});
