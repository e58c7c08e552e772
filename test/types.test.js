'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

describe('public types', () => {
  it('a consumer file type-checks against dist/index.d.ts', () => {
    const tsc = require.resolve('typescript/bin/tsc');
    const run = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stdout + run.stderr);
  });

  it('a type error in a consumer is caught (the check can fail)', () => {
    const tsc = require.resolve('typescript/bin/tsc');
    const bad = 'import { loadModel } from "torch-cka"; loadModel(42);';
    const fs = require('node:fs');
    const file = path.join(__dirname, 'types', 'bad.generated.ts');
    fs.writeFileSync(file, bad);
    try {
      const run = spawnSync(
        process.execPath,
        [
          tsc,
          '--noEmit',
          '--strict',
          '--types',
          'node',
          '--baseUrl',
          path.join(__dirname, 'types'),
          '--paths',
          'null',
          file,
        ],
        { encoding: 'utf8' },
      );
      assert.notEqual(run.status, 0);
    } finally {
      fs.unlinkSync(file);
    }
  });
});
