'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const DIST = path.join(__dirname, '..', 'dist');
const REFERENCE = '/// <reference types="node" preserve="true" />';

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

  // What a consumer's tsconfig may leave out (docs/typescript.md): the shipped types load
  // @types/node themselves and declare Symbol.asyncDispose.
  it('dist/index.d.ts and dist/index.d.mts reference @types/node (kept by preserve) and declare Symbol.asyncDispose', () => {
    const dts = fs.readFileSync(path.join(DIST, 'index.d.ts'), 'utf8');
    const dmts = fs.readFileSync(path.join(DIST, 'index.d.mts'), 'utf8');
    assert.ok(dts.startsWith(`${REFERENCE}\n`), dts.slice(0, 200));
    assert.ok(dmts.split('\n').includes(REFERENCE), dmts);
    assert.match(dts, /declare global \{\s*interface SymbolConstructor \{\s*readonly asyncDispose: unique symbol;/);
  });

  it('the consumer type-checks with no `types` entry, lib ES2022 only, nodenext, skipLibCheck off: CommonJS and ES module', () => {
    const tsc = require.resolve('typescript/bin/tsc');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-types-'));
    try {
      const consumer = fs.readFileSync(path.join(__dirname, 'types', 'consumer.ts'), 'utf8');
      // No package.json here: consumer.ts is CommonJS (index.d.ts), consumer.mts an ES module (index.d.mts).
      for (const [file, types] of [
        ['consumer.ts', 'index.d.ts'],
        ['consumer.mts', 'index.d.mts'],
      ]) {
        fs.writeFileSync(path.join(dir, file), consumer);
        const tsconfig = {
          compilerOptions: {
            strict: true,
            target: 'ES2022',
            lib: ['ES2022'],
            module: 'nodenext',
            moduleResolution: 'nodenext',
            types: [],
            skipLibCheck: false,
            noEmit: true,
            paths: { 'torch-cka': [path.join(DIST, types)] },
          },
          files: [file],
        };
        const config = path.join(dir, `tsconfig.${file}.json`);
        fs.writeFileSync(config, JSON.stringify(tsconfig, null, 2));
        const run = spawnSync(process.execPath, [tsc, '--pretty', 'false', '-p', config], { encoding: 'utf8' });
        assert.equal(run.status, 0, `${file} against dist/${types}:\n${run.stdout}${run.stderr}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
