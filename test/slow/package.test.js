'use strict';
// The npm package from a clean install (test/package/proof-install.js): npm pack,
// then the tarball installed into fresh projects, once with the prebuilt
// binary (compiler shims on PATH prove that nothing compiles) and once
// without prebuilds/ (a source build). In each: tsc on consumers (TypeScript 5
// and 7 from the registry, several tsconfig set-ups, @types/node not in
// `types`), require() and import(), and `npx torch-cka demo`. Slow (a source
// build): about 6 min.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const proof = require('../package/proof-install');

describe('npm package (pack, clean install, use)', function () {
  this.timeout(30 * 60 * 1000);
  let work;
  let packed;

  before(function () {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-package-'));
    proof.ensurePrebuild();
    packed = proof.pack(work);
  });

  after(() => fs.rmSync(work, { recursive: true, force: true }));

  it('the tarball holds the compiled JS and types, prebuilt binary, native sources and demo, and no tests or caches', () => {
    proof.checkContents(packed.files);
    assert.ok(packed.files.some((f) => /^prebuilds\/linux-x64\/.+\.node$/.test(f)));
    assert.ok(packed.files.includes('prebuilds/linux-x64/libtorch.json'));
    // Well under the size of libtorch (which is not shipped).
    assert.ok(packed.size < 10 * 2 ** 20, `${packed.size} bytes`);
    console.log(`      tarball: ${(packed.size / 1024).toFixed(0)} KB packed, ${packed.files.length} files`);
  });

  it('with the prebuilt binary: installs without any compiler, type-checks, require/import, demo', () => {
    const seen = proof.provePrebuilt(work, packed.tarball);
    assert.match(seen.binary, /^prebuilds\/linux-x64\/.+\.node$/);
    assert.equal(seen.compilerCalls, 0);
    assert.ok(seen.typecheck.length >= 2, seen.typecheck.join('; '));
    console.log(`      ${seen.installLine} (install ${(seen.installMs / 1000).toFixed(1)} s)`);
    console.log(`      types checked: ${seen.typecheck.join('; ')}`);
  });

  it('without prebuilds: builds from source, then the same checks pass', () => {
    const seen = proof.proveSource(work, packed.tarball);
    assert.equal(seen.binary, path.join('build', 'Release', 'torch_cka.node'));
    assert.ok(seen.typecheck.length >= 2, seen.typecheck.join('; '));
    console.log(`      ${seen.installLine} (install ${(seen.installMs / 1000).toFixed(1)} s)`);
    console.log(`      types checked: ${seen.typecheck.join('; ')}`);
  });
});
