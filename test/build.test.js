'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const script = path.join(__dirname, '..', 'scripts', 'find-libtorch.js');
const run = (env) =>
  spawnSync(process.execPath, [script, '--json'], { encoding: 'utf8', env: { ...process.env, ...env } });

describe('finding libtorch (scripts/find-libtorch.js)', () => {
  it('finds the libtorch this package was built with', () => {
    const result = run({});
    assert.equal(result.status, 0, result.stderr);
    const found = JSON.parse(result.stdout);
    assert.ok(found.includeDirs.some((dir) => dir.endsWith('torch/csrc/api/include')));
    assert.match(found.libDir, /\//);
    assert.match(found.version, /^\d+\.\d+\.\d+/);
  });

  it("LIBTORCH=system picks the distribution's libtorch, without -I/usr/include (it would break #include_next)", () => {
    const result = run({ LIBTORCH: 'system' });
    assert.equal(result.status, 0, result.stderr);
    const found = JSON.parse(result.stdout);
    assert.equal(found.source, 'system');
    assert.equal(found.system, true);
    assert.ok(!found.includeDirs.includes('/usr/include'));
    assert.match(found.version, /^\d+\.\d+\.\d+/);
  });

  it('a LIBTORCH that holds no libtorch is an error that says how to install one', () => {
    const result = run({ LIBTORCH: '/nonexistent/libtorch' });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /LIBTORCH=\/nonexistent\/libtorch does not hold include\/torch/);
    assert.match(result.stderr, /apt-get install libtorch-dev/);
    assert.match(result.stderr, /pip install torch/);
  });

  it('a Torch_DIR outside any libtorch is an error too', () => {
    const result = run({ Torch_DIR: '/tmp' });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /Torch_DIR=\/tmp is not inside a libtorch installation/);
  });
});
