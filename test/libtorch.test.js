'use strict';
// Which libtorch the addon runs on: the version check at load, the install
// script's choice between the prebuilt binary and a source build, and the
// message for an addon the loader refuses.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { runtimeInfo, ErrorCodes } = require('..');
const { checkLoadedLibtorch, libtorchVersionOf, loadFailureMessage, releaseOf } = require('../dist/native/libtorch');
const { mismatch } = require('../scripts/install');
const { findLibtorch } = require('../scripts/find-libtorch');

describe('libtorch versions', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-libtorch-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A fake libtorch layout: <root>/lib/libtorch_cpu.so plus a version file. */
  function layout(name, files) {
    const root = path.join(dir, name);
    fs.mkdirSync(path.join(root, 'lib'), { recursive: true });
    fs.writeFileSync(path.join(root, 'lib', 'libtorch_cpu.so'), '');
    for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(root, file), text);
    return path.join(root, 'lib', 'libtorch_cpu.so');
  }

  it('the addon runs on the libtorch it was built for (the version is read from the loaded library)', () => {
    const info = runtimeInfo();
    assert.ok(path.isAbsolute(info.libtorchFile), info.libtorchFile);
    assert.match(path.basename(fs.realpathSync(info.libtorchFile)), /^libtorch_cpu\.so/);
    const loaded = libtorchVersionOf(info.libtorchFile);
    assert.equal(releaseOf(loaded), releaseOf(info.libtorchVersion));
    // The headers find-libtorch.js reads say the same.
    assert.equal(releaseOf(findLibtorch().version), releaseOf(info.libtorchVersion));
  });

  it('reads the version of a Python torch (version.py) and of a pytorch.org folder (build-version)', () => {
    assert.equal(libtorchVersionOf(layout('py', { 'version.py': "__version__ = '2.1.0+cu121'\n" })), '2.1.0+cu121');
    assert.equal(libtorchVersionOf(layout('zip', { 'build-version': '2.3.1+cpu\n' })), '2.3.1+cpu');
    assert.equal(libtorchVersionOf(layout('none', {})), null);
    assert.equal(releaseOf('1.13.0a0'), '1.13.0');
    assert.equal(releaseOf('2.1'), '2.1.0');
  });

  it('another libtorch in the process is ERR_LIBTORCH_VERSION naming both and how to rebuild', () => {
    const file = layout('other', { 'version.py': "__version__ = '2.1.0'\n" });
    assert.throws(() => checkLoadedLibtorch('1.13.0', file), {
      code: ErrorCodes.LIBTORCH_VERSION,
      message: new RegExp(
        `^torch-cka was built for libtorch 1\\.13\\.0, but this process loaded libtorch 2\\.1\\.0 \\(${file.replace(/[.]/g, '\\.')}\\)\\. ` +
          'Rebuild torch-cka from source .*LIBTORCH=/path/to/libtorch npm rebuild torch-cka --build-from-source',
      ),
    });
    assert.doesNotThrow(() => checkLoadedLibtorch('2.1.0', file));
    assert.doesNotThrow(() => checkLoadedLibtorch('2.1.0', layout('unknown', {}))); // unknown: no claim
  });

  it('a prebuilt binary the loader refuses: the message names its libtorch and how to rebuild', () => {
    const prebuilds = path.join(dir, 'prebuilds', 'linux-x64');
    fs.mkdirSync(prebuilds, { recursive: true });
    fs.writeFileSync(
      path.join(prebuilds, 'libtorch.json'),
      JSON.stringify({ version: '2.1.0', abi: '1', cuda: false, source: 'system' }),
    );
    const cause = new Error('libtorch_cpu.so.2.1: cannot open shared object file: No such file or directory');
    const message = loadFailureMessage(cause, path.join(prebuilds, 'node.napi.glibc.node'));
    assert.match(
      message,
      /^Could not load the torch-cka native addon \(.*node\.napi\.glibc\.node\): libtorch_cpu\.so\.2\.1: cannot open/,
    );
    assert.match(
      message,
      /It is a prebuilt binary for libtorch 2\.1\.0 \(CPU\), C\+\+11 ABI 1\. This process has another libtorch/,
    );
    assert.match(message, /LIBTORCH=\/path\/to\/libtorch npm rebuild torch-cka --build-from-source/);
  });

  describe('install: prebuilt binary or source build', () => {
    const found = { version: '1.13.0', abi: '1', cuda: false, source: 'system', root: '/usr' };
    it('uses the prebuilt binary only for the same libtorch release, ABI and CUDA-ness', () => {
      assert.equal(mismatch({ version: '1.13.0', abi: '1', cuda: false }, found), null);
      assert.equal(mismatch({ version: '1.13.0a0', abi: null, cuda: false }, found), null);
      assert.match(
        mismatch({ version: '2.1.0', abi: '1', cuda: false }, found),
        /built for libtorch 2\.1\.0, and this machine has 1\.13\.0/,
      );
      assert.match(mismatch({ version: '1.13.0', abi: '0', cuda: false }, found), /_GLIBCXX_USE_CXX11_ABI=0/);
      assert.match(
        mismatch({ version: '1.13.0', abi: '1', cuda: true }, found),
        /CUDA libtorch, and this one is CPU-only/,
      );
      assert.match(mismatch(null, found), /no libtorch\.json/);
    });
  });
});
